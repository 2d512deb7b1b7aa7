"""A pretrained image encoder the user has on disk, frozen (issue 7; DINO-WM's use of DINOv2).

``encoder: pretrained`` with ``pretrained_path: DIR``, where DIR is a Hugging Face model folder
(``config.json`` + ``*.safetensors``, e.g. a DINOv2, ViT or ResNet backbone saved with
``save_pretrained``). The backbone is loaded with ``transformers`` (``pip install '.[pretrained]'``)
from that folder only: no download, no remote code, and safetensors only (a folder that holds only
pickled ``*.bin`` weights is refused). It stays frozen and in evaluation mode; each frame of a stack
goes through it separately (resized to the backbone's input size and normalised with its
preprocessor's mean and std), and a trainable MLP maps the concatenated features to the JEPA latent.

The backbone is not part of the model's parameters or checkpoints: the online and EMA target
encoders share one copy, the optimiser never sees it, and a checkpoint records the folder and the
SHA-256 of its weights, so that loading it with other weights fails by name instead of feeding a
trained head the wrong features.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from world_models.config import WorldModelConfig
from world_models.encoders import Encoder, mlp, normalize_latent, register_encoder
from world_models.pixel_encoder import checked_frame_shape, frames

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_BACKBONES: dict[tuple[str, str], nn.Module] = {}  # (folder, sha256) -> the frozen backbone, shared


def weights_digest(folder: Path) -> str:
    """SHA-256 over the folder's ``*.safetensors`` files (sorted by name); refuses pickled weights."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        pickled = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
        raise ValueError(f"pretrained encoder {folder}: no *.safetensors weights"
                         + (f" (found {pickled}: pickled weights are never loaded; convert them to safetensors)"
                            if pickled else ""))
    digest = hashlib.sha256()
    for path in files:
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _load_backbone(folder: Path) -> nn.Module:
    try:
        from transformers import AutoModel
    except ImportError as exc:
        raise ImportError("encoder 'pretrained' loads its backbone with transformers: pip install "
                          "'oda[pretrained]' (or pip install transformers)") from exc
    try:
        model = AutoModel.from_pretrained(str(folder), local_files_only=True, use_safetensors=True,
                                          trust_remote_code=False)
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"pretrained encoder {folder}: transformers could not load it ({exc})") from exc
    return model.requires_grad_(False).eval()


def _preprocessing(folder: Path, backbone: nn.Module, image_size: int) -> tuple[int, Tensor, Tensor]:
    """(input size, mean [3], std [3]) from the config and ``preprocessor_config.json`` when present."""
    extra: dict[str, Any] = {}
    pre = folder / "preprocessor_config.json"
    if pre.is_file():
        extra = json.loads(pre.read_text())
    size = image_size or int(getattr(backbone.config, "image_size", 0) or 224)
    mean = torch.tensor(extra.get("image_mean", IMAGENET_MEAN), dtype=torch.float32)
    std = torch.tensor(extra.get("image_std", IMAGENET_STD), dtype=torch.float32)
    if mean.shape != (3,) or std.shape != (3,) or bool((std <= 0).any()):
        raise ValueError(f"pretrained encoder {folder}: preprocessor_config.json has a bad image_mean/image_std")
    return size, mean, std


@register_encoder("pretrained")
class PretrainedImageEncoder(Encoder):
    def __init__(self, cfg: WorldModelConfig):
        super().__init__()
        shape = checked_frame_shape(cfg, "pretrained")
        folder = Path(cfg.pretrained_path).expanduser()
        if not cfg.pretrained_path or not (folder / "config.json").is_file():
            raise ValueError(f"pretrained_path {cfg.pretrained_path!r} is not a model folder with a config.json")
        digest = weights_digest(folder)
        if cfg.pretrained_sha256 and cfg.pretrained_sha256 != digest:
            raise ValueError(f"the weights in {folder} are not the ones this model was trained with (sha256 "
                             f"{digest[:12]}..., expected {cfg.pretrained_sha256[:12]}...)")
        cfg.pretrained_sha256 = digest  # recorded in the checkpoint's config
        self._key = (str(folder.resolve()), digest)
        if self._key not in _BACKBONES:
            _BACKBONES[self._key] = _load_backbone(folder)
        self.frame_shape = shape
        self.latent_dim = cfg.latent_dim
        size, mean, std = _preprocessing(folder, self.backbone, cfg.pretrained_image_size)
        self.size = size
        self.register_buffer("mean", mean.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", std.view(1, 3, 1, 1), persistent=False)
        stack = shape[0] if len(shape) == 4 else 1
        with torch.no_grad():
            features = self._features(torch.zeros(1, 3, size, size)).shape[-1]
        self.head = mlp(stack * features, cfg.hidden_dim, cfg.latent_dim, 1)

    @property
    def backbone(self) -> nn.Module:
        return _BACKBONES[self._key]

    @torch.no_grad()
    def _features(self, images: Tensor) -> Tensor:
        """images [N, 3, S, S], normalised -> features [N, F] (pooled output, else mean token)."""
        backbone = self.backbone
        if next(backbone.parameters()).device != images.device:
            backbone.to(images.device)
        out = backbone(pixel_values=images)
        pooled = getattr(out, "pooler_output", None)
        return (pooled if pooled is not None else out.last_hidden_state.mean(1)).flatten(1)

    def forward(self, obs: Tensor) -> Tensor:
        lead, x = frames(obs, self.frame_shape)  # [N, K, H, W, 3] in [-0.5, 0.5]
        n, k = x.shape[:2]
        images = (x + 0.5).reshape(n * k, *x.shape[2:]).permute(0, 3, 1, 2)  # [N*K, 3, H, W] in [0, 1]
        if images.shape[-1] != self.size or images.shape[-2] != self.size:
            images = F.interpolate(images, size=(self.size, self.size), mode="bilinear", align_corners=False)
        features = self._features((images - self.mean) / self.std).reshape(n, -1)
        return normalize_latent(self.head(features)).reshape(*lead, self.latent_dim)
