"""The models and caches a run builds from its config, for training (``lofi.train``) and inference (``lofi.infer``)
alike: the encoder with its weights, the detector, the encoder file every stage hands on, the frame cache."""

from __future__ import annotations

from pathlib import Path

import torch

from lofi.core.fidelity import Fidelity
from lofi.data.frame_cache import FrameCache
from lofi.io import atomic_torch_save
from lofi.models import create_encoder, create_head
from lofi.models.detector import Detector
from lofi.models.encoders.checkpoints import load_encoder_weights
from lofi.runtime.context import RunContext
from lofi.runtime.distributed import barrier


def build_encoder(context: RunContext, weights: str | Path | None, **options: object) -> torch.nn.Module:
    """The configured encoder, with ``weights`` (any published layout, or a lofi stage's ``encoder.pt``);
    ``options`` override the encoder's ``model.encoder_options`` (e.g. a stage's ``frozen_bn``)."""
    model_config = context.config.model
    encoder = create_encoder(model_config.encoder, **{**model_config.encoder_kwargs(), **options})
    if weights is not None:
        load_encoder_weights(encoder, weights, strict=True)
    return encoder


def build_detector(context: RunContext, encoder_weights: str | Path | None) -> Detector:
    """Encoder (with ``encoder_weights``) and a fresh head built at the full snippet count."""
    model = context.config.model
    frozen_bn = {"frozen_bn": True} if context.config.train.frozen_bn else {}
    encoder = build_encoder(context, encoder_weights, **frozen_bn)
    head = create_head(model.head, in_dim=encoder.feature_dim, num_classes=len(context.classes),
                       num_snippets=context.config.fidelity.num_snippets, **model.head_kwargs())
    return Detector(encoder=encoder, head=head)


def save_encoder(context: RunContext, encoder: torch.nn.Module, path: Path) -> Path:
    """Write the encoder's weights (rank 0, atomically) where every process can read them next; returns ``path``."""
    if context.is_main:
        atomic_torch_save(encoder.state_dict(), path)
    barrier()
    return path


def frame_cache(context: RunContext, fidelities: dict[str, Fidelity]) -> FrameCache | None:
    """The pre-decoded frame cache at the full snippet count and the largest frame size used, if configured."""
    data = context.config.data
    if data.cache_dir is None:
        return None
    full = context.config.fidelity
    size = max([full.frame_size_px] + [f.frame_size_px for f in fidelities.values()])
    snippets = max([full.num_snippets] + [f.num_snippets for f in fidelities.values()])
    return FrameCache(data.cache_dir, num_snippets=snippets, frames_per_snippet=data.frames_per_snippet,
                      short_side_px=size, frame_stride=data.frame_stride)
