"""The raw outputs of the heads, one type per output family, each naming the decoder that turns it into candidates.

A head's ``forward`` returns one of these; its ``loss`` and its decoder (:mod:`lofi.postprocess.decoders`) take
it; prediction picks the decoder from the type (``type(outputs).decoder``), not from the head's name.

::

    ProposalMapOutputs          G-TAD and BMN: boundary probabilities, a confidence map, class scores
      StartEndMapOutputs        confidence indexed [ts, te]      -> decoder "gtad"
      DurationStartMapOutputs   confidence indexed [d, ts]       -> decoder "bmn"
    PointOutputs                ActionFormer: per-point class logits and boundary offsets -> decoder "actionformer"

Each is a dataclass that also reads as a mapping of its present tensors (``outputs["start"]``, ``"video_logits" in
outputs``, ``dict(outputs)``; absent optional outputs are None and not keys), so code and saved files that use the
old dict keys keep working. They are registered as pytree nodes, so ``DistributedDataParallel`` (and anything else
that flattens outputs) finds their tensors as it does a dict's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Callable, ClassVar, TypeVar

import torch
import torch.utils._pytree as pytree

_R = TypeVar("_R", bound="RawOutputs")


class RawOutputs(Mapping[str, torch.Tensor]):
    """Base of the raw-output dataclasses: a read (and item-assign) view of the fields that hold a tensor."""

    #: The key of the decoder in :data:`lofi.postprocess.decode.DECODERS`.
    decoder: ClassVar[str]

    def __getitem__(self, key: str) -> torch.Tensor:
        value = getattr(self, key, None) if key in self._field_names() else None
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value: torch.Tensor) -> None:
        if key not in self._field_names():
            raise KeyError(f"{type(self).__name__} has no output {key!r}; outputs: {', '.join(self._field_names())}")
        setattr(self, key, value)

    def __iter__(self) -> Iterator[str]:
        return (name for name in self._field_names() if getattr(self, name) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}={list(v.shape)}" for k, v in self.items())
        return f"{type(self).__name__}({shapes})"

    @classmethod
    def _field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]

    def map(self: _R, fn: Callable[[torch.Tensor], torch.Tensor]) -> _R:
        """The same outputs with ``fn`` applied to every tensor (e.g. ``lambda v: v.float().cpu()``)."""
        return dataclasses.replace(self, **{k: fn(v) for k, v in self.items()})  # type: ignore[type-var]


@dataclasses.dataclass(eq=False, repr=False)
class ProposalMapOutputs(RawOutputs):
    """G-TAD and BMN: boundary probabilities, a two-channel confidence map over candidate proposals, class scores.

    Exactly one of ``snippet_logits`` (``proposal_labels="snippet"``: labelled candidates) and ``video_logits``
    (``proposal_labels="video"``: class-agnostic candidates, classified by the window's top classes) is set.
    """

    start: torch.Tensor  # [B, T] probability of a start at t/T
    end: torch.Tensor  # [B, T] probability of an end at (t+1)/T
    confidence: torch.Tensor  # [B, 2, *map] probabilities (channel 0 classification, 1 regressed IoU; 0 off-grid)
    snippet_logits: torch.Tensor | None = None  # [B, C, T] multi-label logits per snippet
    video_logits: torch.Tensor | None = None  # [B, C] window-level class logits


@dataclasses.dataclass(eq=False, repr=False)
class StartEndMapOutputs(ProposalMapOutputs):
    """G-TAD's outputs: ``confidence`` ``[B, 2, T, T]`` indexed ``[ts, te]`` (the proposal ``[ts/T, (te+1)/T]``)."""

    decoder: ClassVar[str] = "gtad"


@dataclasses.dataclass(eq=False, repr=False)
class DurationStartMapOutputs(ProposalMapOutputs):
    """BMN's outputs: ``confidence`` ``[B, 2, Dmax, T]`` indexed ``[d, ts]`` (the proposal ``[ts/T, (ts+d+1)/T]``)."""

    decoder: ClassVar[str] = "bmn"


@dataclasses.dataclass(eq=False, repr=False)
class PointOutputs(RawOutputs):
    """ActionFormer's anchor-free outputs over the points of every pyramid level, concatenated level by level."""

    decoder: ClassVar[str] = "actionformer"

    cls_logits: torch.Tensor  # [B, P, C] class logits per point
    offsets: torch.Tensor  # [B, P, 2] distances to start and end, in point strides (>= 0)
    points: torch.Tensor  # [P, 4] centre, stride, regression min and max, as window fractions (float32)


#: Every concrete raw-output type, by the decoder it names.
RAW_OUTPUT_TYPES: dict[str, type[RawOutputs]] = {
    cls.decoder: cls for cls in (StartEndMapOutputs, DurationStartMapOutputs, PointOutputs)
}

for _cls in RAW_OUTPUT_TYPES.values():
    pytree.register_dataclass(_cls)

__all__ = ["DurationStartMapOutputs", "PointOutputs", "ProposalMapOutputs", "RAW_OUTPUT_TYPES", "RawOutputs",
           "StartEndMapOutputs"]
