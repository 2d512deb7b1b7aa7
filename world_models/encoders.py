"""Perception: observation -> latent state encoders, and the latent normalisation they share.

Latent normalisation (used at the encoder output AND after every predictor step):
a LayerNorm over the latent dimensions with no learned affine. Every latent then has zero mean
and unit second moment over its D dimensions, i.e. lies on a sphere of radius sqrt(D). Why:

- L2 distances mean the same thing everywhere (between 0 and 2*sqrt(D)), so a planner's
  "distance to the goal latent" cannot shrink just because the encoder shrank its outputs;
- the cheapest collapse of a latent predictive loss, scaling all latents towards zero, is
  impossible; what remains (all inputs mapped to the same point) is what the variance and
  covariance terms and the EMA target guard against, and ``collapse_diagnostics`` measures;
- activations stay O(1) through long predicted rollouts (a residual step followed by the same
  normalisation cannot drift in scale), which keeps training and gradient planning stable.
No affine parameters: a learned per-dim gain would let the model rescale distances again.
SimNorm (softmax groups) would also bound distances, but squashes them into a simplex where
L2 distances saturate; LayerNorm keeps a smooth Euclidean geometry for the planners.

Encoders are built by name through a small registry (``make_encoder("mlp", cfg)``) so a pixel
(conv) encoder can be registered beside the state MLP later without touching the world model.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from world_models.config import WorldModelConfig


def normalize_latent(z: Tensor) -> Tensor:
    """Project latents onto the normalised latent space (LayerNorm over the last dim, no affine)."""
    return F.layer_norm(z, z.shape[-1:])


def mlp(in_dim: int, hidden_dim: int, out_dim: int, hidden_layers: int) -> nn.Sequential:
    """``hidden_layers`` x (Linear -> LayerNorm -> SiLU), then a Linear to ``out_dim``."""
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(hidden_layers):
        layers += [nn.Linear(dim, hidden_dim), nn.LayerNorm(hidden_dim), nn.SiLU()]
        dim = hidden_dim
    layers.append(nn.Linear(dim, out_dim))
    return nn.Sequential(*layers)


class RunningNormalizer(nn.Module):
    """Running per-feature mean/variance of the inputs (exact, merged batch by batch: Chan et al.).

    The statistics are buffers, so they are saved in ``state_dict`` and restored from
    checkpoints, and they move with ``.to(device)``. Until the first update the normaliser is the
    identity (mean 0, var 1). The std is clamped below by ``min_std`` so constant features never
    divide by ~0, and normalised values are clipped to +-``clip``.
    """

    def __init__(self, dim: int, min_std: float = 1e-2, clip: float = 10.0):
        super().__init__()
        self.min_std = float(min_std)
        self.clip = float(clip)
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("var", torch.ones(dim))
        self.register_buffer("count", torch.zeros(()))

    @torch.no_grad()
    def update(self, x: Tensor) -> None:
        """Merge the statistics of ``x`` ([..., dim]; all leading dims are samples)."""
        x = x.detach().reshape(-1, self.mean.shape[0]).to(self.mean.device, torch.float64)
        n = x.shape[0]
        if n == 0:
            return
        batch_mean = x.mean(0)
        batch_var = x.var(0, unbiased=False)
        count = self.count.double()
        total = count + n
        delta = batch_mean - self.mean.double()
        mean = self.mean.double() + delta * (n / total)
        # Before any data the stored var is the identity placeholder, not a statistic: weight 0.
        m2 = self.var.double() * count + batch_var * n + delta.square() * (count * n / total)
        self.mean.copy_(mean)
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def std(self) -> Tensor:
        """The per-feature std that ``forward`` divides by (clamped below by ``min_std``)."""
        return self.var.sqrt().clamp_min(self.min_std)

    def forward(self, x: Tensor) -> Tensor:
        return ((x - self.mean) / self.std()).clamp(-self.clip, self.clip)


class Encoder(nn.Module):
    """Base class: ``forward(obs [..., *obs_shape]) -> z [..., latent_dim]`` in the normalised latent space."""

    latent_dim: int

    def update_normalizer(self, obs: Tensor) -> None:
        """Update input statistics (no-op for encoders without a data-dependent input normaliser)."""


class MLPEncoder(Encoder):
    """State-vector encoder: running input normalisation -> MLP -> latent LayerNorm."""

    def __init__(self, cfg: WorldModelConfig):
        super().__init__()
        self.obs_dim = cfg.obs_dim
        self.latent_dim = cfg.latent_dim
        self.normalizer = RunningNormalizer(cfg.obs_dim, cfg.norm_min_std, cfg.norm_clip)
        self.net = mlp(cfg.obs_dim, cfg.hidden_dim, cfg.latent_dim, cfg.encoder_layers)
        # per-feature weights on the normalised input (cfg.input_weights), from the config: not in the state dict
        weights = torch.tensor(cfg.input_weights, dtype=torch.float32) if cfg.input_weights else None
        self.register_buffer("input_weights", weights, persistent=False)

    def forward(self, obs: Tensor) -> Tensor:
        if obs.shape[-1] != self.obs_dim:
            raise ValueError(f"obs has last dim {obs.shape[-1]}, the encoder expects obs_dim={self.obs_dim}")
        x = self.normalizer(obs)
        if self.input_weights is not None:
            x = x * self.input_weights
        return normalize_latent(self.net(x))

    def update_normalizer(self, obs: Tensor) -> None:
        self.normalizer.update(obs)


ENCODERS: dict[str, Callable[[WorldModelConfig], Encoder]] = {"mlp": MLPEncoder}


def register_encoder(name: str) -> Callable[[type[Encoder]], type[Encoder]]:
    """Class decorator adding an encoder to ``ENCODERS`` (e.g. a pixel conv encoder)."""

    def decorator(cls: type[Encoder]) -> type[Encoder]:
        if name in ENCODERS:
            raise ValueError(f"encoder {name!r} is already registered")
        ENCODERS[name] = cls
        return cls

    return decorator


def make_encoder(name: str, cfg: WorldModelConfig) -> Encoder:
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; available: {sorted(ENCODERS)}")
    return ENCODERS[name](cfg)
