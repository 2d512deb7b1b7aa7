"""The coarse world model of hierarchical planning (issue 6): k steps at once, in the same latent.

Its high-level action is a **subgoal latent** ``g``: ``F(z_t, g)`` predicts the latent ``z_{t+k}``
that k steps of heading for ``g`` lead to. It learns from the agent's own replay, without any
privileged state: for a window ``o_t .. o_{t+j}`` (``k <= j <= 2k``) the subgoal is the encoded
``o_{t+j}`` and the target the EMA-encoded ``o_{t+k}``, i.e. where the data actually was k steps
into a trip to a state that it reached j steps later. Like the goal value it reads detached
latents: it never shapes the JEPA latent.

The hierarchical planner (``planners.hierarchical``) uses it to look at a subgoal from afar:
where k steps toward it lead (drawn by ``oda record``, and checked by guardrails at the high level
when their readouts apply), whether it leads somewhere at all.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from world_models.encoders import mlp, normalize_latent


class CoarseModel(nn.Module):
    def __init__(self, latent_dim: int, hidden_dim: int, k: int, hidden_layers: int = 2):
        super().__init__()
        if k < 1:
            raise ValueError(f"the coarse model's step k must be >= 1, got {k}")
        self.k = k
        self.latent_dim = latent_dim
        self.net = mlp(3 * latent_dim, hidden_dim, latent_dim, hidden_layers)
        nn.init.zeros_(self.net[-1].weight)  # untrained: stays where it is (z_{t+k} = z_t)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, z: Tensor, g: Tensor) -> Tensor:
        """z [..., D], subgoal g [..., D] or [D] -> the latent k steps later [..., D]."""
        if z.shape[-1] != self.latent_dim or g.shape[-1] != self.latent_dim:
            raise ValueError(f"the coarse model expects latents of size {self.latent_dim}, "
                             f"got z {tuple(z.shape)} and g {tuple(g.shape)}")
        g = g.expand_as(z)
        return normalize_latent(z + self.net(torch.cat([z, g, g - z], dim=-1)))

    def rollout(self, z0: Tensor, subgoals: Tensor) -> Tensor:
        """z0 [N, D], subgoals [N, M, D] -> latents after each k-step leg [N, M, D]."""
        z, out = z0, []
        for m in range(subgoals.shape[1]):
            z = self(z, subgoals[:, m])
            out.append(z)
        return torch.stack(out, dim=1)

    def loss(self, z: Tensor, z_k: Tensor, g: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """MSE of F(z, g) against z_k on detached latents [B, D] (z_k from the target encoder)."""
        error = F.mse_loss(self(z.detach(), g.detach()), z_k.detach())
        with torch.no_grad():  # how far the k steps moved, for scale: the error of "stays put"
            still = F.mse_loss(z.detach(), z_k.detach())
        return error, {"coarse/loss": error.detach(), "coarse/loss_rel": error.detach() / still.clamp_min(1e-8)}


def sample_coarse_windows(obs: Tensor, k: int, generator: torch.Generator | None = None
                          ) -> tuple[Tensor, Tensor, Tensor]:
    """From replay windows obs [B, W+1, ...] with W >= k: (o_t, o_{t+k}, o_{t+j}) with j drawn
    uniformly in [k, W] per window."""
    b, w1 = obs.shape[:2]
    if w1 - 1 < k:
        raise ValueError(f"coarse windows need at least k + 1 = {k + 1} observations, got {w1}")
    j = torch.randint(k, w1, (b,), generator=generator, device=obs.device)
    rows = torch.arange(b, device=obs.device)
    return obs[:, 0], obs[:, k], obs[rows, j]
