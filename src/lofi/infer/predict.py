"""A trained head's raw outputs -> saved raw candidates -> detections -> metrics; every step replayable.

``collect_candidates`` decodes raw outputs window by window into candidates in seconds (labelled candidates for
ActionFormer, and for G-TAD and BMN with their default ``proposal_labels="snippet"``; class-agnostic proposals with
the windows' video-level class scores for G-TAD and BMN with ``proposal_labels="video"``).
``write_raw`` saves them as ActivityNet results files (``raw_predictions.json`` and, for proposals,
``video_scores.json``) so that ``lofi postprocess`` can redo the suppression with other settings, without the
model; ``finish_predictions`` does that suppression here.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch

from lofi.core.raw_outputs import RawOutputs
from lofi.data.annotations import Detection
from lofi.data.detection_table import DetectionTable
from lofi.data.formats import write_results
from lofi.postprocess import PostprocessConfig
from lofi.postprocess.decode import decode_raw
from lofi.postprocess.replay import postprocess_table

#: The label of class-agnostic proposals in raw prediction files (their classes come from video_scores.json).
PROPOSAL_LABEL = "proposal"


@dataclass
class RawPredictions:
    """Decoded, unsuppressed candidates of many videos, in seconds."""

    detections: dict[str, list[Detection]] = field(default_factory=dict)  # video -> candidates
    video_scores: dict[str, dict[str, float]] = field(default_factory=dict)  # video -> class -> sigmoid score
    class_agnostic: bool = False


def collect_candidates(outputs: RawOutputs, *, video_ids: Sequence[str], durations_sec: Sequence[float],
                       classes: Sequence[str], into: RawPredictions, top_k: int = 200,
                       window_starts_sec: Sequence[float] | None = None,
                       window_ends_sec: Sequence[float] | None = None,
                       keep_sec: Sequence[tuple[float, float]] | None = None) -> None:
    """Decode one batch of raw ``outputs`` with the decoder their type names and add its candidates to ``into``.

    Without window bounds each item is one whole-video window (its candidates replace the video's). With
    ``window_starts_sec`` / ``window_ends_sec`` (sliding windows) each item is one window of a video: its
    candidates are shifted to video time, clipped to the video, and added to the video's, so that one suppression
    per video (:func:`finish_predictions`) merges the windows; with ``keep_sec`` a window keeps only the candidates
    whose centre lies in its ``[from, to)`` (the span it owns, :func:`lofi.core.windows.window_cores`). A video's
    class scores (proposals) are the highest of its windows'.
    """
    if (window_starts_sec is None) != (window_ends_sec is None):
        raise ValueError("collect_candidates: give both window_starts_sec and window_ends_sec, or neither")
    windowed = window_starts_sec is not None
    for b, cand in enumerate(decode_raw(outputs, top_k=top_k)):
        video_id, duration = video_ids[b], float(durations_sec[b])
        start_sec, end_sec = ((float(window_starts_sec[b]), float(window_ends_sec[b]))  # type: ignore[index]
                              if windowed else (0.0, duration))
        segments = cand.to_seconds(window_start_sec=start_sec, window_end_sec=end_sec).clamp(0.0, duration).tolist()
        scores = cand.scores.tolist()
        if cand.labels is None:
            into.class_agnostic = True
            labels = [PROPOSAL_LABEL] * len(scores)
            probs = torch.sigmoid(outputs["video_logits"][b].float()).tolist()
            seen = into.video_scores.get(video_id) if windowed else None
            into.video_scores[video_id] = {c: max(float(p), seen[c]) if seen else float(p)
                                           for c, p in zip(classes, probs)}
        else:
            labels = [classes[i] for i in cand.labels.tolist()]
        found = [Detection(start_sec=s, end_sec=max(s, e), label=label, score=float(p))
                 for (s, e), label, p in zip(segments, labels, scores)]
        if keep_sec is not None:
            lo, hi = keep_sec[b]
            found = [d for d in found if lo <= (d.start_sec + d.end_sec) / 2 < hi or
                     (hi >= duration and (d.start_sec + d.end_sec) / 2 >= lo)]
        if windowed:
            into.detections.setdefault(video_id, []).extend(found)
        else:
            into.detections[video_id] = found


def write_raw(raw: RawPredictions, out_dir: str | os.PathLike) -> list[Path]:
    """``raw_predictions.json`` (+ ``video_scores.json`` for proposals) in ``out_dir``; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "raw_predictions.json"]
    write_results(raw.detections, paths[0])
    if raw.class_agnostic:
        paths.append(out / "video_scores.json")
        scores = {v: [{"label": c, "score": s} for c, s in per.items()] for v, per in raw.video_scores.items()}
        paths[1].write_text(json.dumps({"results": scores}, indent=1) + "\n", encoding="utf-8")
    return paths


def finish_predictions(raw: RawPredictions, config: PostprocessConfig, *, video_top_k: int = 2
                       ) -> dict[str, list[Detection]]:
    """Suppress (and, for proposals, classify with the video scores) as ``lofi postprocess`` would."""
    table = DetectionTable.from_mapping(raw.detections)
    return postprocess_table(table, config, video_scores=raw.video_scores if raw.class_agnostic else None,
                             video_top_k=video_top_k)


@torch.no_grad()
def predict_features(head: torch.nn.Module, batches: Iterable[Mapping[str, object]], *,
                     classes: Sequence[str], device: torch.device, top_k: int = 200) -> RawPredictions:
    """Run ``head`` over feature batches (``features [B, D, T]``, ``video_ids``, ``durations_sec``, and for
    sliding windows ``window_starts_sec`` / ``window_ends_sec``: then the windows of a video are merged)."""
    head.eval()
    raw = RawPredictions()
    for batch in batches:
        features = batch["features"].to(device)  # type: ignore[union-attr]
        outputs = head(features).map(lambda v: v.float().cpu())
        bounds: dict[str, object] = {}
        if "window_starts_sec" in batch:
            bounds = {key: np.asarray(batch[key], dtype=float).tolist() for key in ("window_starts_sec",
                                                                                    "window_ends_sec")}
            if "keep_from_sec" in batch:
                bounds["keep_sec"] = list(zip(np.asarray(batch["keep_from_sec"], dtype=float).tolist(),
                                              np.asarray(batch["keep_to_sec"], dtype=float).tolist()))
        collect_candidates(outputs, video_ids=list(batch["video_ids"]),  # type: ignore[arg-type]
                           durations_sec=np.asarray(batch["durations_sec"], dtype=float).tolist(),
                           classes=classes, into=raw, top_k=top_k, **bounds)
    return raw
