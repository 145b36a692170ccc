"""A detector: an encoder and a head, trained end to end; raw outputs only (decoding and NMS come after)."""

from __future__ import annotations

import os
from typing import Any, Mapping

import torch
from torch import nn

from lofi.core.raw_outputs import RawOutputs
from lofi.core.targets import SegmentTargets
from lofi.models.encoders.base import VideoEncoder, normalize_frames
from lofi.models.heads.base import TALHead
from lofi.models.partial_backprop import partial_backprop_features
from lofi.models.registry import create_encoder, create_head


class Detector(nn.Module):
    """``frames [B, T, F, 3, H, W]`` -> the head's raw outputs, through ``encoder`` (features ``[B, D, T]``).

    uint8 frames (what :func:`lofi.data.sampling.sample_snippets` returns) are normalised with the encoder's
    ImageNet statistics; float frames are taken as already normalised. ``grad_mask`` (``[B, T]`` bool) keeps
    gradients only through those snippets' features (:mod:`lofi.models.partial_backprop`); None: through all.
    """

    def __init__(self, *, encoder: VideoEncoder, head: TALHead) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def features(self, frames: torch.Tensor, *, grad_mask: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, T, F, 3, H, W]`` frames -> ``[B, D, T]`` encoder features (``grad_mask``: see the class)."""
        if frames.dim() != 6:
            raise ValueError(f"Detector expects frames [B, T, F, 3, H, W], got {tuple(frames.shape)}")
        if grad_mask is not None:
            return partial_backprop_features(self.encoder, frames, grad_mask, prepare=_normalized)  # [B, D, T]
        return self.encoder(_normalized(frames))  # [B, D, T]

    def forward(self, frames: torch.Tensor, *, grad_mask: torch.Tensor | None = None) -> RawOutputs:
        return self.head(self.features(frames, grad_mask=grad_mask))

    def loss(self, outputs: RawOutputs, targets: SegmentTargets) -> dict[str, torch.Tensor]:
        """The head's loss dict (``"loss"`` is the total)."""
        return self.head.loss(outputs, targets)


def _normalized(frames: torch.Tensor) -> torch.Tensor:
    """uint8 frames normalised, float frames as they are."""
    return normalize_frames(frames) if frames.dtype == torch.uint8 else frames


def create_model(*, encoder: str, head: str, num_classes: int, num_snippets: int,
                 encoder_options: Mapping[str, Any] | None = None, head_options: Mapping[str, Any] | None = None,
                 encoder_weights: str | os.PathLike | None = None) -> Detector:
    """Build a :class:`Detector` from registered names (``lofi models`` lists them).

    ``num_snippets`` is the window length T the head is built for; ``encoder_options`` and ``head_options`` go to
    the builders (e.g. ``{"checkpoint_stages": True}``, ``{"hidden_dim": 128}``). ``encoder_weights`` is a local
    file in a published layout (torchvision ImageNet ResNet or Kinetics R(2+1)D, the official TSM release, or a
    lofi checkpoint), loaded strictly: a missing or unexpected tensor raises, naming it.

    Training builds its models through here too (:mod:`lofi.runtime.builders`), so a model a user builds with the
    names and options of a run's config is the model that run trains.
    """
    built_encoder = create_encoder(encoder, weights=encoder_weights, **dict(encoder_options or {}))
    built_head = create_head(head, in_dim=built_encoder.feature_dim, num_classes=num_classes,
                             num_snippets=num_snippets, **dict(head_options or {}))
    return Detector(encoder=built_encoder, head=built_head)


def count_parameters(module: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (optionally only those with ``requires_grad``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
