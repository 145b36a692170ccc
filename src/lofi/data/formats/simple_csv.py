"""A simple CSV layout for custom datasets: one row per segment.

Header: ``video,start,end,label`` then, optionally, ``subset``, ``duration`` and ``fps`` (in any order)::

    video,start,end,label,subset,duration
    cooking_01,12.5,30.0,chop,train,95.2
    cooking_01,41.0,55.5,stir,train,95.2
    cooking_02,,,,val,60.0

Without a ``subset`` column every video is in "training"; aliases (train/val/test) are accepted. A row whose
start, end and label are all empty declares a video without segments (background only). The rows of one video
must agree on subset, duration and fps.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

from lofi.data.annotations import AnnotationSet, Problem, VideoAnnotation, canonical_subset
from lofi.data.validation import RawSegment, empty_dataset_problem, parse_number, validate_video

REQUIRED_COLUMNS: tuple[str, ...] = ("video", "start", "end", "label")
OPTIONAL_COLUMNS: tuple[str, ...] = ("subset", "duration", "fps")
_VIDEO_FIELDS: tuple[str, ...] = ("subset", "duration", "fps")


@dataclass
class _Rows:
    """The rows of one video, before validation."""

    first_line: int
    values: dict[str, tuple[str, int]] = field(default_factory=dict)  # column -> (first value given, its line)
    segments: list[RawSegment] = field(default_factory=list)
    conflicting: bool = False


def _same(column: str, a: str, b: str) -> bool:
    if column == "subset":
        return (canonical_subset(a) or a) == (canonical_subset(b) or b)
    number_a, number_b = parse_number(a), parse_number(b)
    return number_a == number_b if number_a is not None and number_b is not None else a == b


def _read_header(header: list[str], *, source: str) -> tuple[dict[str, int] | None, list[Problem]]:
    """Column name -> index; None when a required column is missing. Unknown columns are errors (and unused)."""
    accepted = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
    names = [name.strip().lower() for name in header]
    problems = []
    columns: dict[str, int] = {}
    for index, name in enumerate(names):
        if name not in accepted:
            problems.append(Problem(source=source, message=f"unknown column {header[index]!r}; accepted columns: "
                                                           f"{', '.join(accepted)}"))
        elif name in columns:
            problems.append(Problem(source=source, message=f"column {name!r} appears more than once"))
        else:
            columns[name] = index
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        problems.append(Problem(source=source, message=f"missing required column(s) {', '.join(missing)}; the "
                                                       f"header must start with {','.join(REQUIRED_COLUMNS)}"))
        return None, problems
    return columns, problems


def _add_row(rows: _Rows, cells: dict[str, str], *, path: Path, line: int, video_id: str,
             problems: list[Problem]) -> None:
    source = f"{path}:{line}"
    for column in _VIDEO_FIELDS:
        value = cells.get(column)
        if value is None or (value == "" and column != "subset"):
            continue
        if column not in rows.values:
            rows.values[column] = (value, line)
        elif not _same(column, rows.values[column][0], value):
            first, first_line = rows.values[column]
            problems.append(Problem(source=source, video_id=video_id,
                                    message=f"{column} {value!r} disagrees with {first!r} on line {first_line}; "
                                            f"the video is left out"))
            rows.conflicting = True
    if cells["start"] == cells["end"] == cells["label"] == "":
        return  # a video without segments
    rows.segments.append(RawSegment(cells["start"], cells["end"], cells["label"], source))


def _read_rows(path: Path, problems: list[Problem]) -> dict[str, _Rows] | None:
    with path.open(newline="", encoding="utf-8-sig") as file:
        reader = csv.reader(file)
        header = next(reader, None)
        if header is None:
            problems.append(Problem(source=str(path), message="empty file; expected a header "
                                                              f"{','.join(REQUIRED_COLUMNS)}"))
            return None
        columns, found = _read_header(header, source=f"{path}:1")
        problems.extend(found)
        if columns is None:
            return None
        videos: dict[str, _Rows] = {}
        any_row = False
        for row in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            any_row = True
            if len(row) != len(header):
                problems.append(Problem(source=f"{path}:{line}",
                                        message=f"expected {len(header)} fields, got {len(row)}: {row!r}"))
                continue
            cells = {name: row[index].strip() for name, index in columns.items()}
            video_id = cells["video"]
            if not video_id:
                problems.append(Problem(source=f"{path}:{line}", message="empty video id"))
                continue
            rows = videos.setdefault(video_id, _Rows(first_line=line))
            _add_row(rows, cells, path=path, line=line, video_id=video_id, problems=problems)
    if not any_row:
        problems.append(empty_dataset_problem(str(path), "a header and no rows"))
    return videos


def read_csv(path: str | os.PathLike, *, as_annotated: bool = False) -> tuple[AnnotationSet, list[Problem]]:
    """Read a simple annotation CSV; returns the valid part and every problem found (with file:line); a file
    without rows is an error. ``as_annotated``: see :func:`lofi.data.validation.validate_segments`."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: CSV annotations are a file, not a directory")
    problems: list[Problem] = []
    try:
        rows_by_video = _read_rows(path, problems)
    except UnicodeDecodeError as exc:
        problems.append(Problem(source=str(path), message=f"not UTF-8 text ({exc.reason} at byte {exc.start})"))
        rows_by_video = None
    except csv.Error as exc:
        problems.append(Problem(source=str(path), message=f"not a valid CSV file: {exc}"))
        rows_by_video = None
    videos: list[VideoAnnotation] = []
    for video_id, rows in (rows_by_video or {}).items():
        if rows.conflicting:
            continue
        value = {column: rows.values.get(column, (None, 0))[0] for column in _VIDEO_FIELDS}
        video, found = validate_video(source=f"{path}:{rows.first_line}", video_id=video_id,
                                      subset=value["subset"] if value["subset"] is not None else "training",
                                      duration=value["duration"], fps=value["fps"], segments=rows.segments,
                                      as_annotated=as_annotated)
        problems.extend(found)
        if video is not None:
            videos.append(video)
    return AnnotationSet.from_videos(videos, source=str(path)), problems
