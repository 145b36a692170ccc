"""Ideal features: what an encoder could at best deliver, computed from the annotations (the head-ceiling check).

For each of the ``L`` snippets of a video (snippet ``t`` covers ``[t, t+1) * duration / L``), channel ``c < C`` is
the share of the snippet covered by instances of class ``c``; channel ``C`` is 1 where the snippet holds an
instance start, channel ``C + 1`` where it holds an instance end. With ``dim > C + 2`` the remaining channels are a
fixed random linear mix of those (one matrix for every video, from ``seed``), so that grouped input convolutions
see the information in every group; nothing is added that the annotations do not say. Gaussian noise
(``noise_std``) is added to every channel, drawn from ``(seed, video index)``. Files are stage-3 feature files
(:func:`lofi.data.features.write_features`, ``duration_sec`` in the meta), so ``lofi train-head`` trains on them
unchanged: a head that cannot reach a high mAP on these cannot on real features either.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Sequence

import torch

from lofi.core.windows import video_num_snippets
from lofi.data.annotations import AnnotationSet, VideoAnnotation
from lofi.data.features import feature_path, write_features

#: The feature-file meta's ``encoder`` for ideal features.
IDEAL_ENCODER = "ideal"


def ideal_channels(video: VideoAnnotation, classes: Sequence[str], *, num_snippets: int,
                   span_sec: float | None = None) -> torch.Tensor:
    """The noiseless ideal channels of one video -> ``[C + 2, T]`` float32 (class coverage, start, end).

    The ``L`` snippets cover ``[0, span_sec)`` (default: the video's duration; at a fixed snippet rate, ``L / rate``,
    which may pass the video's end).

    Coverage of overlapping instances of one class adds up, clipped to 1. An instance starting at ``s`` marks the
    snippet holding ``s`` (``floor(s / duration * L)``), one ending at ``e`` the snippet holding its last instant
    (``ceil(e / duration * L) - 1``); boundaries outside the video are clipped to it.
    """
    if num_snippets < 1:
        raise ValueError(f"num_snippets must be >= 1, got {num_snippets}")
    duration = video.duration_sec
    if duration is None or not duration > 0:
        raise ValueError(f"video {video.video_id!r}: ideal features need a duration_sec > 0, got {duration!r}")
    if span_sec is not None:
        duration = span_sec
    index = {name: i for i, name in enumerate(classes)}
    num_classes = len(classes)
    edges = torch.arange(num_snippets + 1, dtype=torch.float64) / num_snippets  # [T+1] fractions of the video
    out = torch.zeros(num_classes + 2, num_snippets, dtype=torch.float64)  # [C+2, T]
    for segment in video.segments:
        if segment.label not in index:
            raise ValueError(f"video {video.video_id!r}: label {segment.label!r} is not one of the classes")
        start = min(max(segment.start_sec / duration, 0.0), 1.0)
        end = min(max(segment.end_sec / duration, 0.0), 1.0)
        if not end > start:
            continue
        overlap = (torch.clamp(edges[1:], max=end) - torch.clamp(edges[:-1], min=start)).clamp_min(0)  # [T]
        out[index[segment.label]] += overlap * num_snippets
        out[num_classes, min(int(start * num_snippets), num_snippets - 1)] = 1.0
        out[num_classes + 1, max(0, min(_ceil(end * num_snippets) - 1, num_snippets - 1))] = 1.0
    out[:num_classes].clamp_(max=1.0)
    return out.to(torch.float32)


def ideal_features(video: VideoAnnotation, classes: Sequence[str], *, num_snippets: int, dim: int | None = None,
                   noise_std: float = 0.05, seed: int = 0, video_index: int = 0,
                   span_sec: float | None = None) -> torch.Tensor:
    """One video's ideal features ``[D, T]``: :func:`ideal_channels`, the fixed random mix up to ``dim`` channels
    (``D = dim``, or ``C + 2`` when None), plus noise; deterministic given ``(seed, video_index)``."""
    channels = ideal_channels(video, classes, num_snippets=num_snippets, span_sec=span_sec)  # [C+2, T]
    base = channels.shape[0]
    if dim is not None:
        if dim < base:
            raise ValueError(f"dim={dim} is below the {base} ideal channels ({len(classes)} classes + start + end)")
        mix = torch.randn(dim - base, base, generator=torch.Generator().manual_seed(seed)) / base ** 0.5  # [D-C-2, C+2]
        channels = torch.cat([channels, mix @ channels], dim=0)  # [D, T]
    if noise_std < 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}")
    noise = torch.randn(channels.shape, generator=torch.Generator().manual_seed(_video_seed(seed, video_index)))
    return channels + noise_std * noise  # [D, T]


def write_ideal_features(annotations: AnnotationSet, features_dir: str | os.PathLike, *, num_snippets: int,
                         dim: int | None = None, noise_std: float = 0.05, seed: int = 0,
                         snippets_per_sec: float | None = None) -> Path:
    """Write an ideal feature file for every video of ``annotations`` (all subsets) into ``features_dir``.

    Classes are ``annotations.classes`` in their order; video ``i`` (in the set's order) draws its noise from
    ``(seed, i)``. With ``snippets_per_sec`` (sliding windows, ``data.windows``) each video gets
    ``ceil(duration_sec * snippets_per_sec)`` snippets at that rate (``num_snippets`` is then unused) and the rate
    goes into the meta. Returns ``features_dir``.
    """
    out = Path(features_dir)
    out.mkdir(parents=True, exist_ok=True)
    classes = annotations.classes
    for i, video in enumerate(annotations):
        count, span, rate_meta = num_snippets, None, {}
        if snippets_per_sec is not None:
            count = video_num_snippets(float(video.duration_sec), snippets_per_sec)
            span, rate_meta = count / snippets_per_sec, {"snippets_per_sec": float(snippets_per_sec)}
        features = ideal_features(video, classes, num_snippets=count, dim=dim, noise_std=noise_std, seed=seed,
                                  video_index=i, span_sec=span)
        meta = {"encoder": IDEAL_ENCODER, "num_snippets": count, "noise_std": noise_std, "seed": seed,
                "classes": list(classes), "duration_sec": float(video.duration_sec), **rate_meta}
        write_features(feature_path(out, video.video_id), features, video_id=video.video_id, meta=meta)
    return out


def _ceil(x: float) -> int:
    """``ceil`` robust to ``x`` a hair above an integer from float rounding (``6.0000000001`` -> 6)."""
    return -int(-round(x, 9) // 1)


def _video_seed(seed: int, video_index: int) -> int:
    return zlib.crc32(f"ideal:{seed}:{video_index}".encode())


__all__ = ["IDEAL_ENCODER", "ideal_channels", "ideal_features", "write_ideal_features"]
