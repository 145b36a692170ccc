"""Reading annotation files into an :class:`~lofi.data.annotations.AnnotationSet`, and writing them back.

One entry point, :func:`load_annotations`, for every format in :data:`FORMATS`. Every reader applies the same
rules (:mod:`lofi.data.validation`). Strict loading (``on_invalid="raise"``, the default) raises one
:class:`~lofi.data.annotations.AnnotationError` listing every problem when any is an error; ``on_invalid="skip"``
leaves the invalid segments and videos out and returns the problems.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Mapping

from lofi.data.annotations import AnnotationError, AnnotationSet, Detection, Problem
from lofi.data.formats.activitynet import (
    read_activitynet,
    read_results,
    read_results_table,
    read_video_scores,
    write_ground_truth,
    write_results,
)
from lofi.data.formats.simple_csv import read_csv
from lofi.data.formats.thumos import read_thumos14
from lofi.data.validation import empty_dataset_problem

#: A reader: ``reader(path, *, as_annotated=False)`` -> (the valid annotations, every problem found).
Reader = Callable[..., tuple[AnnotationSet, list[Problem]]]

#: The formats :func:`load_annotations` reads, by name.
FORMATS: Mapping[str, Reader] = {
    "activitynet": read_activitynet,
    "hacs": read_activitynet,  # HACS Segments uses the ActivityNet-1.3 layout
    "thumos14": read_thumos14,
    "csv": read_csv,
}

_FORMAT_OF_SUFFIX = {".json": "activitynet", ".csv": "csv"}

__all__ = [
    "FORMATS",
    "Detection",
    "LoadResult",
    "detect_format",
    "load_annotations",
    "read_activitynet",
    "read_results",
    "read_results_table",
    "read_video_scores",
    "read_csv",
    "read_thumos14",
    "write_ground_truth",
    "write_results",
]


@dataclass
class LoadResult:
    """The loaded annotations and the problems found (warnings only, in strict mode)."""

    annotations: AnnotationSet
    problems: list[Problem]


def detect_format(path: str | os.PathLike) -> str:
    """The format name for ``path``: a directory is thumos14, ``.json`` activitynet, ``.csv`` csv."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: annotation file not found")
    if path.is_dir():
        return "thumos14"
    name = _FORMAT_OF_SUFFIX.get(path.suffix.lower())
    if name is None:
        raise ValueError(f"{path}: cannot tell the annotation format from the name; pass format= one of "
                         f"{', '.join(FORMATS)}")
    return name


def load_annotations(path: str | os.PathLike, *, format: str | None = None,
                     on_invalid: Literal["raise", "skip"] = "raise", as_annotated: bool = False) -> LoadResult:
    """Read an annotation file (or THUMOS14 directory) in ``format`` (None: from the path, see detect_format).

    A file that lists no video is an error. ``on_invalid="raise"``: raise :class:`AnnotationError` with every
    problem (errors first) if any is an error; warnings (segments clipped to the duration, duplicates kept once)
    are returned. ``"skip"``: never raises for bad content; invalid segments are left out, and so are videos with
    a video-level error.
    ``as_annotated=True`` keeps duplicates and segments past the duration unchanged (still warned about), as the
    official ActivityNet and THUMOS14 evaluators do: use it to evaluate.
    Raises FileNotFoundError for a missing path and ValueError for an unknown format or option.
    """
    path = Path(path)
    if on_invalid not in ("raise", "skip"):
        raise ValueError(f"on_invalid must be 'raise' or 'skip', got {on_invalid!r}")
    if not path.exists():
        raise FileNotFoundError(f"{path}: annotation file not found")
    name = detect_format(path) if format is None else format.lower()
    if name not in FORMATS:
        raise ValueError(f"unknown annotation format {format!r}; expected one of {', '.join(FORMATS)}")
    annotations, problems = FORMATS[name](path, as_annotated=as_annotated)
    if not annotations and not any(p.severity == "error" for p in problems):  # the readers say so; any other
        problems.append(empty_dataset_problem(str(path), f"the {name} reader found none"))
    problems = sorted(problems, key=lambda p: p.severity != "error")  # stable: errors first, in file order
    if on_invalid == "raise" and any(p.severity == "error" for p in problems):
        raise AnnotationError(problems)
    return LoadResult(annotations=annotations, problems=problems)
