"""Decision-time correction of the world model from the episode's own steps: a local residual memory.

A world model learned from a few thousand episodes is wrong where its data is thin, and the planner
trusts it there: in PointMaze the ball pushed into a wall corner that the model lets it pass stands still
for hundreds of steps while every new plan predicts the same move (BENCHMARKS.md, "The model's error,
seen and corrected at decision time"). The agent can see that: the latent it observes after an action is
not the one the model predicted. ``ResidualMemory`` keeps the last ``size`` such misses, as
``(z, a, z_observed - predict(z, a))``, and corrects every predicted step by the misses made from a
similar latent with a similar action (a Gaussian kernel over the latent and action distances, scaled by
``latent_scale`` and ``action_scale``):

    z' = normalize(predict(z, a) + sum_k w_k r_k / max(1, sum_k w_k)),   w_k = exp(-d_k^2 / 2)

Far from every remembered step the model is unchanged; where a move failed, the same move is predicted
to fail and a different one (down, round the corner) is not, so the planner tries that. The weights
stay fixed: nothing is trained at decision time, and the memory is cleared with every episode.
It uses only the agent's own observations and actions, as the actor may.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from planners.base import check_float, check_int
from world_models.encoders import normalize_latent
from world_models.predictor import rollout


@dataclass
class AdaptationConfig:
    size: int = 64              # remembered steps (the most recent), cleared every episode
    latent_scale: float = 0.05  # latent distance at which a remembered miss weighs exp(-1/2)
    action_scale: float = 0.5   # action distance (in [-1, 1] units) at which it weighs exp(-1/2)

    def __post_init__(self) -> None:
        check_int("size", self.size, 1)
        check_float("latent_scale", self.latent_scale, 0.0, low_open=True)
        check_float("action_scale", self.action_scale, 0.0, low_open=True)


class ResidualMemory:
    """``predict``/``rollout`` of a world model, corrected by the misses it made this episode."""

    def __init__(self, predict: Callable[[Tensor, Tensor], Tensor], config: AdaptationConfig,
                 project: Callable[[Tensor], Tensor] | None = normalize_latent):
        self._predict = predict
        self._project = project or (lambda z: z)  # back onto the latent space after a correction
        self.config = config
        self._z: Tensor | None = None  # [K, D] latents the remembered actions were taken from
        self._a: Tensor | None = None  # [K, A]
        self._r: Tensor | None = None  # [K, D] observed minus predicted next latent
        self._keys: Tensor | None = None  # [K, D + A] (z, a) in kernel units, and their squared norms [K]
        self._keys_sq: Tensor | None = None

    def __len__(self) -> int:
        return 0 if self._z is None else int(self._z.shape[0])

    def clear(self) -> None:
        self._z = self._a = self._r = self._keys = self._keys_sq = None

    def _scaled(self, z: Tensor, a: Tensor) -> Tensor:
        """(z, a) in the kernel's units: [..., D + A] float32."""
        return torch.cat([z.float() / self.config.latent_scale, a.float() / self.config.action_scale], dim=-1)

    @torch.no_grad()
    def observe(self, z: Tensor, a: Tensor, z_next: Tensor) -> float:
        """Remember one executed step: latent ``z`` [D], action ``a`` [A], observed next latent [D].
        Returns the model's miss on it (the L2 norm of the residual)."""
        z, a, z_next = z.reshape(1, -1), a.reshape(1, -1).to(z), z_next.reshape(1, -1).to(z)
        r = z_next - self._predict(z, a)
        size = self.config.size
        if self._z is None:
            self._z, self._a, self._r = z, a, r
        else:
            self._z = torch.cat([self._z, z])[-size:]
            self._a = torch.cat([self._a, a])[-size:]
            self._r = torch.cat([self._r, r])[-size:]
        self._keys = self._scaled(self._z, self._a)  # fixed until the next step: computed once, not per query
        self._keys_sq = self._keys.square().sum(-1)
        return float(r.norm())

    def correction(self, z: Tensor, a: Tensor) -> Tensor:
        """The kernel-weighted remembered residual for latents ``z`` [..., D] and actions ``a`` [..., A]."""
        with torch.autocast(device_type=z.device.type, enabled=False):  # distances by expansion need float32
            q = self._scaled(z, a).reshape(-1, z.shape[-1] + a.shape[-1])
            d2 = torch.addmm(self._keys_sq, q, self._keys.T, alpha=-2.0).add_(q.square().sum(-1, keepdim=True))
            # w = exp(-d2 / 2), d2 >= 0. exp of arguments below about -87 (weights that underflow) takes a CPU
            # ~100x longer than of ordinary ones: clamped at -80 such weights are 1.8e-35 instead of 0, and an
            # evaluation through the memory takes 30% less time (BENCHMARKS.md, "Speed")
            w = torch.exp(d2.mul_(-0.5).clamp_(-80.0, 0.0))  # [M, K]
            corr = (w @ self._r.float()) / w.sum(dim=-1, keepdim=True).clamp(min=1.0)  # one miss weighs at most 1
        return corr.reshape(z.shape).to(z.dtype)

    def predict(self, z: Tensor, a: Tensor) -> Tensor:
        """One corrected step: z [..., D], a [..., A] -> z' [..., D] (the model's own when nothing is remembered)."""
        nxt = self._predict(z, a)
        if self._z is None:
            return nxt
        return self._project(nxt + self.correction(z, a))

    def rollout(self, z0: Tensor, actions: Tensor) -> Tensor:
        """z0 [N, D], actions [N, H, A] -> corrected latents [N, H, D], as ``JEPAWorldModel.rollout``."""
        return rollout(self.predict, z0, actions)
