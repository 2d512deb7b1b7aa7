"""Pixel perception (issue 7): a small conv net from camera frames to the JEPA latent.

Frames arrive as uint8 ``[..., H, W, 3]`` (one frame) or ``[..., K, H, W, 3]`` (the last K frames,
``env.frame_stack``, so that velocities are visible); the K frames are stacked on the channel axis.
The net is the shape pixel RL uses at 64x64 (DrQ, TD-MPC2): four 3x3 convolutions, the first
three with stride 2, then one linear layer to the latent, LayerNorm-ed like every latent here.

Augmentation: while training, each frame stack is shifted by up to ``image_shift`` pixels
(replicate padding, then a random crop back to H x W: DrQ's random shift). Planning and
evaluation (the module in evaluation mode) see the frames as they are. The online and target encoders draw
their shifts independently, so the JEPA loss also asks for latents that ignore small shifts.

Speed on a CPU (a pixel update is most of a pixel run's time): the uint8 frames are put in channel order
before they become floats, the input normaliser is applied as one multiply-add in that order, the shift is
two gathers, and the convolutions run channels-last (oneDNN's fast layout; the weights stay contiguous, so
checkpoints and optimiser states are as before). The same latents as the plain sequence of steps, in a
quarter to a third less time per update of `launch/pointmaze-2x2-pixels.yaml` (BENCHMARKS.md, "Speed").
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from world_models.config import WorldModelConfig
from world_models.encoders import Encoder, RunningNormalizer, normalize_latent, register_encoder


def random_shift(x: Tensor, pad: int) -> Tensor:
    """x [N, C, H, W] -> each image shifted by an integer in [-pad, pad] per axis (replicate edges): the crop
    of the replicate-padded image at a random offset, done as a gather of whole rows, then one of columns
    (on a CPU faster than padding and slicing image by image, and than one 2-d gather)."""
    n, c, h, w = x.shape
    dev = x.device
    dx = torch.randint(0, 2 * pad + 1, (n,), device=dev) - pad
    dy = torch.randint(0, 2 * pad + 1, (n,), device=dev) - pad
    rows = (torch.arange(h, device=dev) + dy[:, None]).clamp_(0, h - 1)  # [N, H]: source row of each row
    first = torch.arange(n * c, device=dev).view(n, c, 1) * h  # where each image channel's rows start
    x = x.reshape(n * c * h, w).index_select(0, (first + rows[:, None]).reshape(-1)).view(n, c, h, w)
    cols = (torch.arange(w, device=dev) + dx[:, None]).clamp_(0, w - 1)  # [N, W]
    return torch.gather(x, 3, cols[:, None, None].expand(n, c, h, w))


def checked_frame_shape(cfg: WorldModelConfig, encoder: str) -> tuple[int, ...]:
    """``cfg.obs_shape`` as a frame [H, W, 3] or a stack [K, H, W, 3]; anything else is an error."""
    shape = tuple(cfg.obs_shape)
    if len(shape) not in (3, 4) or shape[-1] != 3:
        raise ValueError(f"the {encoder} encoder takes frames [H, W, 3] or stacks [K, H, W, 3], got obs_shape "
                         f"{list(shape)}")
    return shape


def _leading_shape(obs: Tensor, frame_shape: tuple[int, ...]) -> tuple[int, ...]:
    k = len(frame_shape)
    if tuple(obs.shape[-k:]) != tuple(frame_shape):
        raise ValueError(f"obs has trailing shape {tuple(obs.shape[-k:])}, the pixel encoder expects "
                         f"{tuple(frame_shape)}")
    return tuple(obs.shape[:-k])


def frames(obs: Tensor, frame_shape: tuple[int, ...]) -> tuple[tuple[int, ...], Tensor]:
    """uint8 frames ``[..., (K,) H, W, 3]`` -> (the leading shape, float frames [N, K, H, W, 3] in
    [-0.5, 0.5], K = 1 for single frames); a trailing shape other than ``frame_shape`` is an error."""
    lead = _leading_shape(obs, frame_shape)
    x = obs.reshape(math.prod(lead), *frame_shape).float() / 255.0 - 0.5
    return lead, x if len(frame_shape) == 4 else x[:, None]


def channels_first(x: Tensor, frame_shape: tuple[int, ...]) -> Tensor:
    """Frames or stacks ``[..., *frame_shape]`` (or flat per-feature values in that order) -> [N, 3K, H, W],
    channel 3k + c being colour c of frame k: the conv net's input order. Each frame is a channels-last
    image, so this is one fast layout copy (do it on uint8, before the frames become floats)."""
    h, w = frame_shape[-3], frame_shape[-2]
    k = frame_shape[0] if len(frame_shape) == 4 else 1
    return x.reshape(-1, h, w, 3).permute(0, 3, 1, 2).contiguous().view(-1, 3 * k, h, w)


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
            raise ValueError(f"frames of {shape[-3]}x{shape[-2]} are too small for the conv encoder (>= 31x31)")
        self.head = nn.Linear(width * h * w, cfg.latent_dim)
        self.normalizer = (RunningNormalizer(math.prod(shape), cfg.norm_min_std, cfg.norm_clip)
                           if cfg.image_normalize else None)

    def update_normalizer(self, obs: Tensor) -> None:
        if self.normalizer is not None:
            self.normalizer.update(frames(obs, self.frame_shape)[1].flatten(1))

    def forward(self, obs: Tensor) -> Tensor:
        lead = _leading_shape(obs, self.frame_shape)
        x = channels_first(obs, self.frame_shape).float()  # [N, 3K, H, W], from a uint8 copy
        norm = self.normalizer
        if norm is None:
            x = x.mul_(1 / 255.0).sub_(0.5)
        else:  # x / 255 - 0.5, then the normaliser (its features in the observation's order), as one multiply-add
            std = norm.std()
            scale = channels_first(1 / (255.0 * std), self.frame_shape)[0]
            offset = channels_first(-(0.5 + norm.mean) / std, self.frame_shape)[0]
            x = torch.addcmul(offset, x, scale).clamp_(-norm.clip, norm.clip)
        if self.training and self.shift > 0:
            x = random_shift(x, self.shift)
        z = self.head(self.conv(x.contiguous(memory_format=torch.channels_last)).flatten(1))
        return normalize_latent(z).reshape(*lead, self.latent_dim)
