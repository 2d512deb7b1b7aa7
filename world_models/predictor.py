"""Action-conditioned latent predictor: z_{t+1} = normalize(z_t + f([z_t, a_t]))."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from world_models.config import WorldModelConfig
from world_models.encoders import mlp, normalize_latent


class ResidualPredictor(nn.Module):
    """Residual MLP in latent space, output re-normalised into the encoder's latent space.

    The last layer starts at zero, so the untrained predictor is the identity (z_{t+1} = z_t):
    long imagined rollouts start stable and the model only has to learn the change.
    ``forward`` is pure and batched over any leading dims; ``rollout`` loops it over a horizon
    and stays differentiable w.r.t. the actions (gradient planners backprop through it).
    """

    def __init__(self, cfg: WorldModelConfig):
        super().__init__()
        self.latent_dim = cfg.latent_dim
        self.action_dim = cfg.action_dim
        width = cfg.predictor_hidden or cfg.hidden_dim
        self.net = mlp(cfg.latent_dim + cfg.action_dim, width, cfg.latent_dim, cfg.predictor_layers)
        last = self.net[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, z: Tensor, a: Tensor) -> Tensor:
        if z.shape[-1] != self.latent_dim or a.shape[-1] != self.action_dim:
            raise ValueError(f"predict expects z [..., {self.latent_dim}] and a [..., {self.action_dim}], "
                             f"got z {tuple(z.shape)} and a {tuple(a.shape)}")
        if z.shape[:-1] != a.shape[:-1]:
            raise ValueError(f"z {tuple(z.shape)} and a {tuple(a.shape)} must share their leading dims")
        return normalize_latent(z + self.net(torch.cat([z, a], dim=-1)))

    def rollout(self, z0: Tensor, actions: Tensor) -> Tensor:
        """z0 [N, D], actions [N, H, A] -> predicted latents [N, H, D] (z_1 .. z_H; z0 not included)."""
        return rollout(self, z0, actions)


def rollout(step: Callable[[Tensor, Tensor], Tensor], z0: Tensor, actions: Tensor) -> Tensor:
    """Loop a one-step latent model ``step(z [N, D], a [N, A]) -> z'`` over actions [N, H, A] from z0 [N, D]
    -> latents [N, H, D] (z_1 .. z_H); differentiable w.r.t. the actions and z0."""
    if z0.dim() != 2 or actions.dim() != 3 or actions.shape[0] != z0.shape[0]:
        raise ValueError(f"rollout expects z0 [N, D] and actions [N, H, A] with the same N, "
                         f"got z0 {tuple(z0.shape)} and actions {tuple(actions.shape)}")
    z = z0
    out = []
    for t in range(actions.shape[1]):
        z = step(z, actions[:, t])
        out.append(z)
    if not out:
        return z0.new_zeros(z0.shape[0], 0, z0.shape[1])
    return torch.stack(out, dim=1)
