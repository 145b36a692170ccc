"""The registry of encoders and heads, and the factory that builds a detector from names.

Entries name their builder as ``"module:function"`` and are imported on first use, so listing the registry is
cheap and importing :mod:`lofi` never builds a model. Every name here is tested by ``tests/models``.
"""

from __future__ import annotations

import difflib
import importlib
import os
from dataclasses import dataclass
from typing import Any, Callable, Literal

from torch import nn

Kind = Literal["encoder", "head"]


@dataclass(frozen=True)
class ModelEntry:
    """One registered encoder or head."""

    name: str
    kind: Kind
    target: str  # "module:function"; the function takes keyword-only options and returns the module
    description: str
    fixed_options: tuple[str, ...] = ()  # keywords of the built class that the builder sets itself (not options)

    def builder(self) -> Callable[..., nn.Module]:
        module, _, function = self.target.partition(":")
        return getattr(importlib.import_module(module), function)


_ENTRIES: tuple[ModelEntry, ...] = (
    ModelEntry("tsm_resnet18", "encoder", "lofi.models.encoders.tsm_resnet:tsm_resnet18",
               "TSM-ResNet18: 2-D ResNet18, residual temporal shift (1/8 channels each way); the paper's encoder",
               fixed_options=("depth",)),
    ModelEntry("tsm_resnet18_slim", "encoder", "lofi.models.encoders.tsm_resnet:tsm_resnet18_slim",
               "TSM-ResNet18 at 1/4 width (D = 128), for CPUs: the synthetic demo's encoder",
               fixed_options=("depth",)),
    ModelEntry("tsm_resnet34", "encoder", "lofi.models.encoders.tsm_resnet:tsm_resnet34",
               "TSM-ResNet34", fixed_options=("depth",)),
    ModelEntry("tsm_resnet50", "encoder", "lofi.models.encoders.tsm_resnet:tsm_resnet50",
               "TSM-ResNet50 (bottleneck blocks)", fixed_options=("depth",)),
    ModelEntry("r2plus1d_18", "encoder", "lofi.models.encoders.r2plus1d:r2plus1d_18",
               "R(2+1)D-18: factorised 3-D ResNet18 over the frames of a snippet"),
    ModelEntry("gtad", "head", "lofi.models.heads.gtad:GTADHead",
               "G-TAD: GCNeXt graph blocks, sub-graph alignment, start/end/matching losses; the paper's head"),
    ModelEntry("bmn", "head", "lofi.models.heads.bmn:BMNHead",
               "BMN: boundary-matching network, boundary and confidence-map losses"),
    ModelEntry("actionformer", "head", "lofi.models.heads.actionformer:ActionFormerHead",
               "ActionFormer: multi-scale local transformer, anchor-free classification + regression"),
)

REGISTRY: dict[str, ModelEntry] = {entry.name: entry for entry in _ENTRIES}


def list_models(kind: Kind | None = None) -> list[ModelEntry]:
    """Registered entries, encoders first, in registration order (``kind`` filters)."""
    return [e for e in _ENTRIES if kind is None or e.kind == kind]


def get_entry(name: str, kind: Kind) -> ModelEntry:
    """The registered ``kind`` called ``name``; a ValueError that suggests the closest name and lists them all."""
    entry = REGISTRY.get(name)
    if entry is None or entry.kind != kind:
        known = [e.name for e in list_models(kind)]
        close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValueError(f"unknown {kind} {name!r}; {hint}registered {kind}s: {', '.join(known)} (`lofi models`)")
    return entry


def create_encoder(name: str, *, weights: str | os.PathLike | None = None, **options: Any) -> nn.Module:
    """Build the registered encoder ``name`` with its keyword options, and load ``weights`` if given.

    ``weights`` is a local file in a published layout (torchvision ImageNet ResNet or Kinetics R(2+1)D, the official
    TSM release, or a lofi checkpoint such as a stage's ``encoder.pt``), loaded strictly: a missing or unexpected
    tensor raises, naming it.
    """
    encoder = get_entry(name, "encoder").builder()(**options)
    if weights is not None:
        from lofi.models.encoders.checkpoints import load_encoder_weights

        load_encoder_weights(encoder, weights, strict=True)
    return encoder


def create_head(name: str, *, in_dim: int, num_classes: int, num_snippets: int, **options: Any) -> nn.Module:
    """Build the registered head ``name`` for ``[B, in_dim, num_snippets]`` features and ``num_classes``."""
    return get_entry(name, "head").builder()(in_dim=in_dim, num_classes=num_classes, num_snippets=num_snippets,
                                          **options)
