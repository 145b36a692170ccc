"""The encoder contract: snippets of frames in, one feature vector per snippet out."""

from __future__ import annotations

import torch
from torch import nn

#: ImageNet normalisation, what torchvision ResNet weights and the official TSM release expect (RGB, 0..1 input).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


class VideoEncoder(nn.Module):
    """Base class of every registered encoder.

    ``forward(frames)``: ``frames`` is ``[B, T, F, 3, H, W]`` float, already normalised (see
    :func:`normalize_frames`): ``T`` snippets of ``F`` frames each. Returns ``[B, D, T]`` features, ``D =
    feature_dim``: per-frame features averaged within each snippet. Subclasses set ``feature_dim`` and implement
    ``forward``; options that change memory (checkpointing, frozen parts) are constructor arguments.
    """

    feature_dim: int

    def forward(self, frames: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError


def normalize_frames(frames: torch.Tensor, *, mean: tuple[float, float, float] = IMAGENET_MEAN,
                     std: tuple[float, float, float] = IMAGENET_STD,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 ``[..., 3, H, W]`` frames (as :func:`lofi.data.sampling.sample_snippets` returns them, batched) ->
    normalised float ``[..., 3, H, W]``. Memory format (channels-last) is kept."""
    if frames.dtype != torch.uint8:
        raise ValueError(f"normalize_frames expects uint8 frames, got {frames.dtype}; float frames are taken as "
                         f"already normalised")
    if frames.dim() < 3 or frames.shape[-3] != 3:
        raise ValueError(f"normalize_frames expects [..., 3, H, W] frames, got {tuple(frames.shape)}")
    shape = (3, 1, 1)
    mean_t = torch.tensor(mean, dtype=dtype, device=frames.device).view(shape) * 255.0
    std_t = torch.tensor(std, dtype=dtype, device=frames.device).view(shape) * 255.0
    return (frames.to(dtype) - mean_t) / std_t
