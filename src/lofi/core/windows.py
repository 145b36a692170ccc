"""Sliding windows over long videos: where windows of ``L`` snippets lie, the ground truth inside one, and the
way back from a window's time to the video's.

With sliding windows (``data.windows``) a video is cut into snippets at a fixed rate (``snippets_per_sec``), not
rescaled to ``L`` snippets: snippet ``t`` covers ``[t, t + 1) / snippets_per_sec`` seconds of the video, and a
video of ``duration_sec`` has ``T = ceil(duration_sec * snippets_per_sec)`` snippets (at least 1). Windows of
``L`` snippets start every ``stride_snippets`` snippets; the last one is moved back to end at the video's last
snippet (no padding, no uncovered tail). A video shorter than one window is one window starting at 0, its
``L - T`` missing snippets padded with zeros. As in ActionFormer and OpenTAD, an instance cut by a window edge is
kept, clipped to the window, when at least ``min_inside_fraction`` of it lies inside, else dropped from that
window (it is whole, or mostly whole, in a neighbouring window when the stride leaves enough overlap).

Predictions come back the other way: a window's detections are shifted to video time. With ``merge="center"``
(the default) each window owns the part of the video nearer its centre than any other window's centre
(:func:`window_cores`; the first and last windows own up to the video's ends) and keeps only the detections whose
centre it owns, so an instance cut by one window's edge (seen truncated there) is reported by the window that sees
it whole; an instance up to ``L - stride`` snippets long whose centre a window owns lies inside that window. With
``merge="all"`` every window's detections are kept (OpenTAD's way). Either way the video's candidates then go
through one suppression.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class WindowSpan:
    """One window of a video: snippets ``[start_snippet, start_snippet + num_snippets)``, each ``snippet_sec`` long
    (``1 / snippets_per_sec``, or the extracted video's ``duration_sec / T``)."""

    start_snippet: int
    num_snippets: int  # L
    snippet_sec: float
    core_snippets: tuple[float, float] | None = None  # the span of the video it owns (window_cores); None: all

    @property
    def core_sec(self) -> tuple[float, float]:
        """The span it owns in seconds (its whole span when ``core_snippets`` is None)."""
        if self.core_snippets is None:
            return self.start_sec, self.end_sec
        return self.core_snippets[0] * self.snippet_sec, self.core_snippets[1] * self.snippet_sec

    @property
    def start_sec(self) -> float:
        return self.start_snippet * self.snippet_sec

    @property
    def end_sec(self) -> float:
        return (self.start_snippet + self.num_snippets) * self.snippet_sec


def video_num_snippets(duration_sec: float, snippets_per_sec: float) -> int:
    """``T``: snippets of a video of ``duration_sec`` at ``snippets_per_sec`` (>= 1; a last partial snippet counts)."""
    if not duration_sec > 0 or not snippets_per_sec > 0:
        raise ValueError(f"duration_sec and snippets_per_sec must be > 0, got {duration_sec!r} and "
                         f"{snippets_per_sec!r}")
    return max(1, math.ceil(round(duration_sec * snippets_per_sec, 6)))


def window_starts(num_snippets_video: int, *, window_snippets: int, stride_snippets: int) -> list[int]:
    """First snippets of the windows of ``window_snippets`` that cover ``num_snippets_video`` snippets.

    ``[0, stride, 2 * stride, ...]`` while a window fits, plus one window ending at the last snippet when those
    leave a tail; ``[0]`` for a video of at most one window.
    """
    if window_snippets < 1 or stride_snippets < 1 or num_snippets_video < 1:
        raise ValueError(f"window_snippets, stride_snippets and num_snippets_video must be >= 1, got "
                         f"{window_snippets}, {stride_snippets}, {num_snippets_video}")
    if num_snippets_video <= window_snippets:
        return [0]
    last = num_snippets_video - window_snippets
    starts = list(range(0, last + 1, stride_snippets))
    if starts[-1] != last:
        starts.append(last)
    return starts


def window_cores(starts: list[int], *, window_snippets: int, num_snippets_video: int) -> list[tuple[float, float]]:
    """``[(first, last), ...]`` in snippets of the video: the span each window of ``starts`` owns, bounded by the
    midpoints between consecutive windows' centres; the first starts at 0 and the last ends at the video's end
    (or the window's, when the video is shorter than a window). Together they tile the video without overlap."""
    centres = [start + window_snippets / 2 for start in starts]
    bounds = [0.0] + [(a + b) / 2 for a, b in zip(centres, centres[1:])]
    bounds.append(float(max(num_snippets_video, starts[-1] + window_snippets)))
    return list(zip(bounds[:-1], bounds[1:]))


def window_spans(num_snippets_video: int, *, window_snippets: int, stride_snippets: int, snippet_sec: float,
                 merge: str = "center") -> list[WindowSpan]:
    """The windows over a video of ``num_snippets_video`` snippets of ``snippet_sec``: placed by
    :func:`window_starts`, each owning its :func:`window_cores` span with ``merge="center"`` (all of itself with
    ``"all"``)."""
    if merge not in ("center", "all"):
        raise ValueError(f"merge must be 'center' or 'all', got {merge!r}")
    starts = window_starts(num_snippets_video, window_snippets=window_snippets, stride_snippets=stride_snippets)
    cores = window_cores(starts, window_snippets=window_snippets, num_snippets_video=num_snippets_video)
    return [WindowSpan(start, window_snippets, snippet_sec, core if merge == "center" else None)
            for start, core in zip(starts, cores)]


def cut_window(features: torch.Tensor, span: WindowSpan) -> torch.Tensor:
    """The window ``span`` of a video's features ``[D, T]`` -> ``[D, L]``, zeros past the video's last snippet."""
    out = features.new_zeros(features.shape[0], span.num_snippets)  # [D, L]
    stop = min(int(features.shape[1]), span.start_snippet + span.num_snippets)
    out[:, :stop - span.start_snippet] = features[:, span.start_snippet:stop]
    return out


def clip_to_window(segments_snippets: torch.Tensor, labels: torch.Tensor, *, start_snippet: int,
                   window_snippets: int, min_inside_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Ground truth of one window: ``segments_snippets`` ``[N, 2]`` (in snippets of the video) -> ``([M, 2]``
    fractions of the window in ``[0, 1]``, ``[M]`` labels``)``, the instances whose share inside the window is at
    least ``min_inside_fraction``, clipped to it (an instance of zero length is kept when it lies inside)."""
    end_snippet = start_snippet + window_snippets
    seg = segments_snippets.to(torch.float64).reshape(-1, 2)  # [N, 2]
    lo, hi = seg[:, 0].clamp(min=start_snippet), seg[:, 1].clamp(max=end_snippet)  # [N], [N]
    inside = (hi - lo).clamp_min(0)  # [N]
    length = seg[:, 1] - seg[:, 0]  # [N]
    share = torch.where(length > 0, inside / length.clamp_min(1e-12), (hi >= lo).to(torch.float64))  # [N]
    keep = (share >= min_inside_fraction - 1e-9) & (hi >= lo)  # [N]
    clipped = torch.stack([lo[keep], hi[keep]], dim=1)  # [M, 2]
    return ((clipped - start_snippet) / window_snippets).to(torch.float32), labels.reshape(-1)[keep]


__all__ = ["WindowSpan", "clip_to_window", "cut_window", "video_num_snippets", "window_cores", "window_spans",
           "window_starts"]
