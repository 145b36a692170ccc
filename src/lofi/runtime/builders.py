"""The models and caches a run builds from its config, for training (``lofi.train``) and inference (``lofi.infer``)
alike: the encoder with its weights, the detector, the encoder file every stage hands on, the frame cache."""

from __future__ import annotations

from pathlib import Path

import torch

from lofi.core.fidelity import Fidelity
from lofi.data.frame_cache import FrameCache
from lofi.io import atomic_torch_save
from lofi.models import Detector, create_encoder, create_model
from lofi.models.options import encoder_kwargs, head_kwargs
from lofi.runtime.context import RunContext
from lofi.runtime.distributed import barrier


def build_encoder(context: RunContext, weights: str | Path | None, **options: object) -> torch.nn.Module:
    """The configured encoder, with ``weights`` (any published layout, or a lofi stage's ``encoder.pt``);
    ``options`` override the encoder's ``model.encoder_options`` (e.g. a stage's ``frozen_bn``).

    Built by the public :func:`lofi.models.create_encoder` (the encoder half of :func:`lofi.create_model`)."""
    model_config = context.config.model
    return create_encoder(model_config.encoder, weights=weights, **{**encoder_kwargs(model_config), **options})


def build_detector(context: RunContext, encoder_weights: str | Path | None) -> Detector:
    """Encoder (with ``encoder_weights``) and a fresh head built at the full snippet count, by the public
    :func:`lofi.create_model` from the config's names and options (what a user building the same model gets)."""
    model = context.config.model
    frozen_bn = {"frozen_bn": True} if context.config.train.frozen_bn else {}
    return create_model(encoder=model.encoder, head=model.head, num_classes=len(context.classes),
                        num_snippets=context.config.fidelity.num_snippets,
                        encoder_options={**encoder_kwargs(model), **frozen_bn}, head_options=head_kwargs(model),
                        encoder_weights=encoder_weights)


def save_encoder(context: RunContext, encoder: torch.nn.Module, path: Path) -> Path:
    """Write the encoder's weights (rank 0, atomically) where every process can read them next; returns ``path``."""
    if context.is_main:
        atomic_torch_save(encoder.state_dict(), path)
    barrier()
    return path


def frame_cache(context: RunContext, fidelities: dict[str, Fidelity]) -> FrameCache | None:
    """The pre-decoded frame cache at the full snippet count and the largest frame size used, if configured; with
    ``data.windows``, at its snippet rate (each video's ``T`` snippets, sliced into windows)."""
    data = context.config.data
    if data.cache_dir is None:
        return None
    full = context.config.fidelity
    size = max([full.frame_size_px] + [f.frame_size_px for f in fidelities.values()])
    snippets = max([full.num_snippets] + [f.num_snippets for f in fidelities.values()])
    rate = None if data.windows is None else data.windows.snippets_per_sec
    return FrameCache(data.cache_dir, num_snippets=snippets, frames_per_snippet=data.frames_per_snippet,
                      short_side_px=size, frame_stride=data.frame_stride, snippets_per_sec=rate)
