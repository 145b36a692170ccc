"""From a head's raw outputs to detections in seconds: decode (per head), then classify and suppress.

``decode_raw(outputs)`` picks the decoder that the type of a head's raw outputs names
(:mod:`lofi.core.raw_outputs`, ``type(outputs).decoder``) and returns one :class:`Candidates` per window;
``decode_outputs(decoder, outputs)`` does the same for outputs held as a plain dict, by decoder name;
``window_detections`` places a window's candidates in the video's time line and runs :func:`postprocess_video`.
Class-agnostic candidates (G-TAD, BMN with ``proposal_labels="video"``) take the video's top classes from
``video_logits`` (sigmoid scores), the ActivityNet recipe; labelled candidates (ActionFormer; G-TAD and BMN by
default, from their per-snippet class scores) keep their labels.
Both are pure functions of saved raw outputs.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch

from lofi.core.raw_outputs import RAW_OUTPUT_TYPES, RawOutputs
from lofi.data.annotations import Detection
from lofi.postprocess.candidates import Candidates
from lofi.postprocess.decoders.actionformer import decode_actionformer
from lofi.postprocess.decoders.bmn import decode_bmn
from lofi.postprocess.decoders.gtad import decode_gtad
from lofi.postprocess.nms import FuseMode, PostprocessConfig, label_and_suppress

#: The decoders, by the name a raw-output type gives (``RawOutputs.decoder``; the same as its head's registered name).
DECODERS: dict[str, Callable[..., list[Candidates]]] = {
    "gtad": decode_gtad,
    "bmn": decode_bmn,
    "actionformer": decode_actionformer,
}

#: The option of each decoder that caps the candidates of a window.
TOP_K_OPTIONS: dict[str, str] = {"gtad": "top_k", "bmn": "top_k", "actionformer": "top_k_per_window"}

assert set(DECODERS) == set(RAW_OUTPUT_TYPES) == set(TOP_K_OPTIONS), "every raw-output type needs its decoder"


def decode_raw(outputs: RawOutputs, *, top_k: int | None = None, **options: Any) -> list[Candidates]:
    """One :class:`Candidates` per window of the batch, with the decoder ``type(outputs)`` names and its ``options``;
    ``top_k`` (when given) caps each window's candidates under the decoder's own option name."""
    if not isinstance(outputs, RawOutputs):
        raise TypeError(f"decode_raw: expected a head's raw outputs (lofi.core.raw_outputs), got "
                        f"{type(outputs).__name__}; for a plain dict use decode_outputs(decoder, outputs)")
    if top_k is not None:
        options[TOP_K_OPTIONS[outputs.decoder]] = top_k
    return DECODERS[outputs.decoder](outputs, **options)


def decode_outputs(head: str, outputs: Mapping[str, torch.Tensor], **options: Any) -> list[Candidates]:
    """One :class:`Candidates` per window of the batch, with the decoder called ``head`` and its ``options``."""
    if head not in DECODERS:
        raise ValueError(f"no decoder for head {head!r}; decoders exist for {', '.join(DECODERS)}")
    if isinstance(outputs, RawOutputs) and outputs.decoder != head:
        raise ValueError(f"decode_outputs: {type(outputs).__name__} are decoded by {outputs.decoder!r}, not {head!r}")
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
