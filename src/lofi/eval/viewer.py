"""A static HTML page of detections: each video's player beside its timeline, a score slider, clickable bars.

:func:`write_viewer` writes one self-contained ``index.html`` (the CSS and JS of ``viewer_assets/`` inline, the
detections inline as JSON): no server, no network. The videos are never embedded; each ``<video>`` links its file
by a URL-encoded path relative to the page, so the folder must move together with the videos.
"""

from __future__ import annotations

import html
import json
import math
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import quote

from lofi.data.annotations import Detection, Segment

__all__ = ["ViewerVideo", "write_viewer", "viewer_data", "render_viewer", "script_json", "viewer_palette", "video_src"]

#: The colours of :func:`lofi.eval.plots.class_colors` (tab20 strong shades first, tab20b, tab20c), as hex, so the
#: page and the PNG timelines colour a class alike; cycles after 60 classes.
_PALETTE: tuple[str, ...] = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
    "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#5254a3", "#8ca252", "#bd9e39", "#ad494a", "#a55194",
    "#6b6ecf", "#b5cf6b", "#e7ba52", "#d6616b", "#ce6dbd", "#9c9ede", "#cedb9c", "#e7cb94", "#e7969c", "#de9ed6",
    "#3182bd", "#e6550d", "#31a354", "#756bb1", "#636363", "#6baed6", "#fd8d3c", "#74c476", "#9e9ac8", "#969696",
    "#9ecae1", "#fdae6b", "#a1d99b", "#bcbddc", "#bdbdbd", "#c6dbef", "#fdd0a2", "#c7e9c0", "#dadaeb", "#d9d9d9",
)

#: The id of the ``<script type="application/json">`` block holding the page's data.
DATA_ELEMENT_ID = "lofi-viewer-data"


@dataclass(frozen=True)
class ViewerVideo:
    """One video of the page: its file, its duration and what to draw on its timeline.

    ``ground_truth`` None draws no ground-truth row; an empty sequence draws an empty one.
    """

    video_id: str
    video_path: Path
    duration_sec: float
    detections: Sequence[Detection]
    ground_truth: Sequence[Segment] | None = None


def viewer_palette(classes: Sequence[str]) -> dict[str, str]:
    """A fixed hex colour per class, by its index in ``classes`` (the colours of the PNG plots)."""
    return {label: _PALETTE[i % len(_PALETTE)] for i, label in enumerate(classes)}


def video_src(video_path: str | os.PathLike, *, page_dir: str | os.PathLike) -> str:
    """The ``src`` of ``video_path`` seen from a page in ``page_dir``: relative, ``/``-separated, URL-encoded
    (spaces, ``#``, ``?``, non-ASCII); a ``file://`` URI when no relative path exists (another Windows drive)."""
    target = Path(os.path.abspath(video_path))
    try:
        relative = os.path.relpath(target, os.path.abspath(page_dir))
    except ValueError:
        return target.as_uri()
    return quote(Path(relative).as_posix(), safe="/")


def _class_order(videos: Sequence[ViewerVideo], classes: Sequence[str] | None) -> list[str]:
    """``classes`` in order, then any other label of the videos, sorted (all labels, sorted, without ``classes``)."""
    known = list(dict.fromkeys(classes or ()))
    seen = set(known)
    labels = {d.label for v in videos for d in v.detections} | {s.label for v in videos for s in v.ground_truth or ()}
    return known + sorted(labels - seen)


def _check_finite(video_id: str, what: str, *values: float) -> None:
    for value in values:
        if not math.isfinite(float(value)):
            raise ValueError(f"video {video_id!r}: {what} has a non-finite value {value!r}")


def _video_data(video: ViewerVideo, *, page_dir: Path, class_index: dict[str, int]) -> dict[str, Any]:
    duration_sec = float(video.duration_sec)
    if not math.isfinite(duration_sec) or duration_sec <= 0:
        raise ValueError(f"video {video.video_id!r}: duration_sec must be a positive number, got "
                         f"{video.duration_sec!r}")
    detections = []
    for i, d in enumerate(video.detections):
        _check_finite(video.video_id, f"detection {i}", d.start_sec, d.end_sec, d.score)
        detections.append([float(d.start_sec), float(d.end_sec), class_index[d.label], float(d.score)])
    ground_truth = None
    if video.ground_truth is not None:
        ground_truth = []
        for i, s in enumerate(video.ground_truth):
            _check_finite(video.video_id, f"ground-truth segment {i}", s.start_sec, s.end_sec)
            ground_truth.append([float(s.start_sec), float(s.end_sec), class_index[s.label]])
    return {"video_id": str(video.video_id), "src": video_src(video.video_path, page_dir=page_dir),
            "duration_sec": duration_sec, "detections": detections, "ground_truth": ground_truth}


def viewer_data(videos: Sequence[ViewerVideo], *, page_dir: str | os.PathLike, classes: Sequence[str] | None = None,
                title: str = "lofi detect", min_score: float = 0.0) -> dict[str, Any]:
    """The JSON the page embeds. Detections are ``[start_sec, end_sec, class_idx, score]``, ground-truth
    segments ``[start_sec, end_sec, class_idx]``, ``class_idx`` into ``classes`` (coloured by ``colors``)."""
    labels = _class_order(videos, classes)
    class_index = {label: i for i, label in enumerate(labels)}
    return {"title": str(title), "min_score": float(min_score), "classes": labels,
            "colors": list(viewer_palette(labels).values()),
            "videos": [_video_data(v, page_dir=Path(page_dir), class_index=class_index) for v in videos]}


def script_json(data: Any) -> str:
    """``data`` as JSON that is safe inside a ``<script>`` block: ``<``, ``>``, ``&`` and the JS line separators
    are ``\\u`` escapes, so no label can close the block (``</script>``) or open a comment (``<!--``)."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(char, escape)
    return text


def _asset(name: str) -> str:
    text = (resources.files("lofi.eval") / "viewer_assets" / name).read_text(encoding="utf-8")
    if "</" in text:  # would end the inline <style> or <script> block early
        raise AssertionError(f"viewer_assets/{name} must not contain '</'")
    return text


def render_viewer(data: dict[str, Any]) -> str:
    """The page's HTML for :func:`viewer_data`'s ``data``."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{html.escape(data['title'])}</title>\n<style>\n{_asset('viewer.css')}</style>\n</head>\n<body>\n"
        f"<header id=\"controls\"><h1>{html.escape(data['title'])}</h1></header>\n<main id=\"videos\"></main>\n"
        "<noscript>This page draws its timelines with JavaScript; enable it to see the detections.</noscript>\n"
        f"<script type=\"application/json\" id=\"{DATA_ELEMENT_ID}\">{script_json(data)}</script>\n"
        f"<script>\n{_asset('viewer.js')}</script>\n</body>\n</html>\n"
    )


def write_viewer(out_dir: str | os.PathLike, videos: Sequence[ViewerVideo], *, classes: Sequence[str] | None = None,
                 title: str = "lofi detect", min_score: float = 0.0) -> Path:
    """Write out_dir/index.html and return its path.

    Colours follow ``classes`` (then any other label, sorted); the score slider starts at ``min_score``. The page
    links each video by its path relative to ``out_dir``: move the folder and the videos together.
    """
    if not 0.0 <= float(min_score) <= 1.0:
        raise ValueError(f"min_score must be within 0..1, got {min_score!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    page = out / "index.html"
    data = viewer_data(videos, page_dir=out, classes=classes, title=title, min_score=min_score)
    page.write_text(render_viewer(data), encoding="utf-8")
    return page
