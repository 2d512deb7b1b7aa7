"""A learned cost-to-go between latent states: how many steps from ``z`` to the goal ``g``.

The planner's L2 distance to the goal latent only sees straight lines: behind a wall, or for an arm
whose observation carries things it cannot change, it ranks plans badly. ``GoalValue`` learns the
number of steps between latent states from the agent's own experience, without rewards:

- cost-to-go in normalised discounted units, ``c(z, g) = 1 - gamma**steps`` in [0, 1]: 0 at the
  goal, ``c = (1 - gamma) + gamma * c(z', g)`` one step before;
- trained by temporal differences against a slowly updated target copy (Polyak ``tau``) on
  hindsight goals from the replay (the state itself, a later state of the same episode, or any
  stored state); an *expectile* ``expectile > 0.5`` weighs residuals where the prediction is
  too high more, so ``c`` tracks the shortest paths seen in the data, not the average behaviour
  of an exploring policy (as in IQL / HIQL);
- ``steps(z, g) = -log(1 - c) / -log(gamma)``, read exactly from the network's logit:
  ``c = sigmoid(f)`` gives ``steps = softplus(f) / -log(gamma)``.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from world_models.encoders import mlp


class GoalValue(nn.Module):
    def __init__(self, latent_dim: int, hidden_dim: int, gamma: float = 0.98, expectile: float = 0.9,
                 tau: float = 0.005, hidden_layers: int = 2):
        super().__init__()
        if not 0.0 < gamma < 1.0:
            raise ValueError(f"gamma must be in (0, 1), got {gamma}")
        if not 0.5 <= expectile < 1.0:
            raise ValueError(f"expectile must be in [0.5, 1), got {expectile}")
        if not 0.0 < tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {tau}")
        self.gamma, self.expectile, self.tau = float(gamma), float(expectile), float(tau)
        self.net = mlp(3 * latent_dim, hidden_dim, 1, hidden_layers)
        self.target = copy.deepcopy(self.net).requires_grad_(False)

    @staticmethod
    def _features(z: Tensor, g: Tensor) -> Tensor:
        g = g.expand_as(z)
        return torch.cat([z, g, z - g], dim=-1)

    def logit(self, z: Tensor, g: Tensor, target: bool = False) -> Tensor:
        """z [..., D], g [..., D] or [D] -> logit f [...] with c = sigmoid(f)."""
        return (self.target if target else self.net)(self._features(z, g)).squeeze(-1)

    def steps(self, z: Tensor, g: Tensor) -> Tensor:
        """Predicted number of steps from z [..., D] to the goal g ([..., D] or [D]), >= 0."""
        return F.softplus(self.logit(z, g).float()) / -math.log(self.gamma)

    def loss(self, z: Tensor, z_next: Tensor, g: Tensor, reached: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """Expectile TD loss on detached latents z, z_next, g [B, D] and reached [B] (z is the goal)."""
        z, z_next, g = z.detach().float(), z_next.detach().float(), g.detach().float()
        with torch.no_grad():
            c_next = torch.sigmoid(self.logit(z_next, g, target=True).float())
            target = torch.where(reached, torch.zeros_like(c_next), (1 - self.gamma) + self.gamma * c_next)
        logit = self.logit(z, g).float()
        residual = torch.sigmoid(logit) - target            # > 0: predicted cost above the backed-up one
        weight = torch.where(residual > 0, self.expectile, 1.0 - self.expectile)
        loss = (weight * residual.pow(2)).mean() / (1 - self.gamma) ** 2  # in squared steps near the goal
        steps = F.softplus(logit.detach()) / -math.log(self.gamma)
        return loss, {"value/loss": loss.detach(), "value/steps_mean": steps.mean()}

    @torch.no_grad()
    def update_target(self) -> None:
        for p_t, p in zip(self.target.parameters(), self.net.parameters(), strict=True):
            p_t.lerp_(p, self.tau)
