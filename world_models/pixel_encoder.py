"""Pixel perception (issue 7): a small conv net from camera frames to the JEPA latent.

Frames arrive as uint8 ``[..., H, W, 3]`` (one frame) or ``[..., K, H, W, 3]`` (the last K frames,
``env.frame_stack``, so that velocities are visible); the K frames are stacked on the channel axis.
The net is the shape pixel RL uses at 64x64 (DrQ, TD-MPC2): four 3x3 convolutions, the first
three with stride 2, then one linear layer to the latent, LayerNorm-ed like every latent here.

Augmentation: while training, each frame stack is shifted by up to ``image_shift`` pixels
(replicate padding, then a random crop back to H x W: DrQ's random shift). Planning and
evaluation (the module in evaluation mode) see the frames as they are. The online and target encoders draw
their shifts independently, so the JEPA loss also asks for latents that ignore small shifts.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from world_models.config import WorldModelConfig
from world_models.encoders import Encoder, RunningNormalizer, normalize_latent, register_encoder


def random_shift(x: Tensor, pad: int) -> Tensor:
    """x [N, C, H, W] -> each image shifted by an integer in [-pad, pad] per axis (replicate edges)."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    dx = torch.randint(0, 2 * pad + 1, (n,), device=x.device).tolist()
    dy = torch.randint(0, 2 * pad + 1, (n,), device=x.device).tolist()
    # one slice per image: on a CPU this is about 1.6x faster than one advanced-indexing gather
    return torch.stack([padded[i, :, y:y + h, c:c + w] for i, (y, c) in enumerate(zip(dy, dx, strict=True))])


def checked_frame_shape(cfg: WorldModelConfig, encoder: str) -> tuple[int, ...]:
    """``cfg.obs_shape`` as a frame [H, W, 3] or a stack [K, H, W, 3]; anything else is an error."""
    shape = tuple(cfg.obs_shape)
    if len(shape) not in (3, 4) or shape[-1] != 3:
        raise ValueError(f"the {encoder} encoder takes frames [H, W, 3] or stacks [K, H, W, 3], got obs_shape "
                         f"{list(shape)}")
    return shape


def frames(obs: Tensor, frame_shape: tuple[int, ...]) -> tuple[tuple[int, ...], Tensor]:
    """uint8 frames ``[..., (K,) H, W, 3]`` -> (the leading shape, float frames [N, K, H, W, 3] in
    [-0.5, 0.5], K = 1 for single frames); a trailing shape other than ``frame_shape`` is an error."""
    k = len(frame_shape)
    if tuple(obs.shape[-k:]) != tuple(frame_shape):
        raise ValueError(f"obs has trailing shape {tuple(obs.shape[-k:])}, the pixel encoder expects "
                         f"{tuple(frame_shape)}")
    lead = tuple(obs.shape[:-k])
    x = obs.reshape(math.prod(lead), *frame_shape).float() / 255.0 - 0.5
    return lead, x if k == 4 else x[:, None]


@register_encoder("conv")
class ConvEncoder(Encoder):
    def __init__(self, cfg: WorldModelConfig):
        super().__init__()
        shape = self.frame_shape = checked_frame_shape(cfg, "conv")
        self.latent_dim = cfg.latent_dim
        self.shift = cfg.image_shift
        channels = 3 * (shape[0] if len(shape) == 4 else 1)
        width = cfg.conv_channels
        layers: list[nn.Module] = []
        for i, stride in enumerate((2, 2, 2, 1)):
            layers += [nn.Conv2d(channels if i == 0 else width, width, 3, stride=stride), nn.SiLU()]
        self.conv = nn.Sequential(*layers)
        h, w = shape[-3], shape[-2]
        for stride in (2, 2, 2, 1):
            h, w = (h - 3) // stride + 1, (w - 3) // stride + 1
        if h < 1 or w < 1:
            raise ValueError(f"frames of {shape[-3]}x{shape[-2]} are too small for the conv encoder (>= 24x24)")
        self.head = nn.Linear(width * h * w, cfg.latent_dim)
        self.normalizer = (RunningNormalizer(math.prod(shape), cfg.norm_min_std, cfg.norm_clip)
                           if cfg.image_normalize else None)

    def update_normalizer(self, obs: Tensor) -> None:
        if self.normalizer is not None:
            self.normalizer.update(frames(obs, self.frame_shape)[1].flatten(1))

    def forward(self, obs: Tensor) -> Tensor:
        lead, x = frames(obs, self.frame_shape)  # [N, K, H, W, 3] in [-0.5, 0.5]
        if self.normalizer is not None:
            x = self.normalizer(x.flatten(1)).view(x.shape)
        x = x.permute(0, 2, 3, 1, 4).reshape(x.shape[0], *x.shape[2:4], -1).permute(0, 3, 1, 2)  # [N, 3K, H, W]
        if self.training and self.shift > 0:
            x = random_shift(x, self.shift)
        z = self.head(self.conv(x).flatten(1))
        return normalize_latent(z).reshape(*lead, self.latent_dim)
