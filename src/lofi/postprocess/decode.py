"""From a head's raw outputs to detections in seconds: decode (per head), then classify and suppress.

``decode_outputs(head_name, outputs)`` picks the head's decoder (:mod:`lofi.postprocess.decoders`) and returns one
:class:`Candidates` per window; ``window_detections`` places a window's candidates in the video's time line and
runs :func:`postprocess_video`. Class-agnostic candidates (G-TAD, BMN with ``proposal_labels="video"``) take the
video's top classes from ``video_logits`` (sigmoid scores), the ActivityNet recipe; labelled candidates
(ActionFormer; G-TAD and BMN by default, from their per-snippet class scores) keep their labels.
Both are pure functions of saved raw outputs.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from lofi.data.annotations import Detection
from lofi.postprocess.candidates import Candidates
from lofi.postprocess.decoders.actionformer import decode_actionformer
from lofi.postprocess.decoders.bmn import decode_bmn
from lofi.postprocess.decoders.gtad import decode_gtad
from lofi.postprocess.nms import FuseMode, PostprocessConfig, label_and_suppress

#: The decoder of each registered head.
DECODERS: dict[str, Callable[..., list[Candidates]]] = {
    "gtad": decode_gtad,
    "bmn": decode_bmn,
    "actionformer": decode_actionformer,
}


def decode_outputs(head: str, outputs: dict[str, torch.Tensor], **options: Any) -> list[Candidates]:
    """One :class:`Candidates` per window of the batch, with the decoder of ``head`` and its ``options``."""
    if head not in DECODERS:
        raise ValueError(f"no decoder for head {head!r}; decoders exist for {', '.join(DECODERS)}")
    return DECODERS[head](outputs, **options)


def window_detections(candidates: Candidates, *, window_start_sec: float, window_end_sec: float,
                      classes: Sequence[str], config: PostprocessConfig,
                      video_logits: torch.Tensor | None = None, video_top_k: int = 2,
                      fuse: FuseMode = "multiply", duration_sec: float | None = None) -> list[Detection]:
    """Detections (seconds) of one window spanning ``[window_start_sec, window_end_sec]`` of its video.

    Class-agnostic ``candidates`` need ``video_logits`` ``[C]``: each becomes one detection per top video class
    (``video_top_k``), scored ``candidate x sigmoid(logit)`` (or its square root with ``fuse="geometric"``).
    """
    if not window_end_sec > window_start_sec:
        raise ValueError(f"window end {window_end_sec} must be after its start {window_start_sec}")
    segments = candidates.to_seconds(window_start_sec=window_start_sec,
                                     window_end_sec=window_end_sec).to(torch.float64)  # [N, 2]
    class_scores = None
    if candidates.labels is None:
        if video_logits is None:
            raise ValueError("class-agnostic candidates (G-TAD, BMN with proposal_labels='video') need the window's "
                             "video_logits to be labelled")
        if video_logits.shape != (len(classes),):
            raise ValueError(f"video_logits: expected [{len(classes)}] (one per class), "
                             f"got {tuple(video_logits.shape)}")
        class_scores = torch.sigmoid(video_logits.to(torch.float64))  # [C]
    return label_and_suppress(segments, candidates.scores.to(torch.float64), candidates.labels, config,
                              classes=classes, video_class_scores=class_scores, video_top_k=video_top_k, fuse=fuse,
                              duration_sec=duration_sec)
