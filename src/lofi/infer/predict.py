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
                       classes: Sequence[str], into: RawPredictions, top_k: int = 200) -> None:
    """Decode one batch of raw ``outputs`` (one whole-video window per item) with the decoder their type names and
    add its candidates to ``into``."""
    for b, cand in enumerate(decode_raw(outputs, top_k=top_k)):
        video_id, duration = video_ids[b], float(durations_sec[b])
        segments = cand.to_seconds(window_start_sec=0.0, window_end_sec=duration).clamp(0.0, duration).tolist()
        scores = cand.scores.tolist()
        if cand.labels is None:
            into.class_agnostic = True
            labels = [PROPOSAL_LABEL] * len(scores)
            probs = torch.sigmoid(outputs["video_logits"][b].float()).tolist()
            into.video_scores[video_id] = {c: float(p) for c, p in zip(classes, probs)}
        else:
            labels = [classes[i] for i in cand.labels.tolist()]
        into.detections[video_id] = [Detection(start_sec=s, end_sec=max(s, e), label=label, score=float(p))
                                     for (s, e), label, p in zip(segments, labels, scores)]


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
    """Run ``head`` over feature batches (``features [B, D, L]``, ``video_ids``, ``durations_sec``)."""
    head.eval()
    raw = RawPredictions()
    for batch in batches:
        features = batch["features"].to(device)  # type: ignore[union-attr]
        outputs = head(features).map(lambda v: v.float().cpu())
        collect_candidates(outputs, video_ids=list(batch["video_ids"]),  # type: ignore[arg-type]
                           durations_sec=np.asarray(batch["durations_sec"], dtype=float).tolist(),
                           classes=classes, into=raw, top_k=top_k)
    return raw
