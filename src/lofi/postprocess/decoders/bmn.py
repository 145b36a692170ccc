"""Decode BMN raw outputs (start/end probabilities, duration-start confidence map, class scores) into candidates.

Cell ``[d, ts]`` of the ``[B, 2, Dmax, T]`` map is the segment ``[ts/T, (ts+d+1)/T]`` (window fractions); the map is
re-indexed to start-end and decoded by :func:`lofi.postprocess.decoders.gtad.decode_start_end` (score
``start[ts] * end[ts+d] * confidence_cls * confidence_reg``, BMN's boundary filter, top-k; labelled by the pooled
``snippet_logits`` when the outputs hold them).

The outputs: a head's :class:`~lofi.core.raw_outputs.DurationStartMapOutputs`, or a plain dict with the same keys.
"""

from __future__ import annotations

from typing import Mapping

import torch

from lofi.core.proposal_grid import duration_start_to_start_end, start_end_valid_mask
from lofi.postprocess.candidates import Candidates
from lofi.postprocess.decoders.gtad import decode_start_end, snippet_class_probs


def decode_bmn(outputs: Mapping[str, torch.Tensor], *, top_k: int | None = 100,
               boundary_filter: bool = True) -> list[Candidates]:
    """One :class:`Candidates` per window from BMN outputs (``start``, ``end`` ``[B, T]``, ``confidence``
    ``[B, 2, Dmax, T]``, and ``snippet_logits`` ``[B, C, T]`` for labelled candidates); candidates are the cells
    with ``ts + d < T``.

    Any ``T``: ``T`` and ``Dmax`` are read from the map (a head run at another length than its ``num_snippets``
    outputs ``Dmax = BMNHead.max_duration_at(T)`` rows), so no option needs to match the head."""
    confidence = outputs["confidence"]  # [B, 2, Dmax, T]
    max_duration, t = confidence.shape[-2:]
    if max_duration > t:
        raise ValueError(f"decode_bmn: confidence map has Dmax={max_duration} > T={t} durations")
    return decode_start_end(outputs["start"], outputs["end"], duration_start_to_start_end(confidence.detach()),
                            valid=start_end_valid_mask(t, max_duration=max_duration), top_k=top_k,
                            boundary_filter=boundary_filter, class_probs=snippet_class_probs(outputs))


__all__ = ["decode_bmn"]
