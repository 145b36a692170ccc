"""THUMOS14 temporal annotations: a folder of per-class ``<Class>_val.txt`` / ``<Class>_test.txt`` files.

Each line is ``video_name start end`` in seconds, separated by any whitespace (the released files use double
spaces and end with blank lines). ``_val`` files are the validation subset, ``_test`` files the testing subset.
``Ambiguous_val.txt`` / ``Ambiguous_test.txt`` are not a class: their spans become the videos'
``ignore_regions_sec``. The files carry no durations, so every video's ``duration_sec`` is None.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from lofi.data.annotations import AnnotationSet, Problem, VideoAnnotation
from lofi.data.validation import RawSegment, duplicate_id_problem, empty_dataset_problem, validate_video

#: The file names read: ``<Class>_val.txt`` or ``<Class>_test.txt``.
FILE_PATTERN = re.compile(r"(?P<label>.+)_(?P<split>val|test)\.txt")

#: The pseudo-class whose spans are neither action nor background.
AMBIGUOUS = "Ambiguous"

_SUBSET_OF_SPLIT = {"val": "validation", "test": "testing"}


@dataclass
class _Entries:
    """What the files say about one video, before validation."""

    subsets: dict[str, str] = field(default_factory=dict)  # subset -> first file naming the video in it
    segments: list[RawSegment] = field(default_factory=list)
    regions: list[RawSegment] = field(default_factory=list)


def _read_lines(path: Path, *, label: str, subset: str, entries: dict[str, _Entries],
                problems: list[Problem]) -> None:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        problems.append(Problem(source=str(path), message=f"not UTF-8 text ({exc.reason} at byte {exc.start})"))
        return
    for line_number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        source = f"{path}:{line_number}"
        if len(fields) != 3:
            problems.append(Problem(source=source, video_id=fields[0] if len(fields) > 1 else None,
                                    message=f"expected 'video start end', got {len(fields)} column(s): "
                                            f"{line.strip()!r}"))
            continue
        video_id, start, end = fields
        entry = entries.setdefault(video_id, _Entries())
        entry.subsets.setdefault(subset, str(path))
        raw = RawSegment(start, end, label, source)
        (entry.regions if label == AMBIGUOUS else entry.segments).append(raw)


def _annotation_files(directory: Path, problems: list[Problem]) -> list[tuple[Path, str, str]]:
    """The (file, label, subset) triples to read, in name order; other files are reported and skipped."""
    found = []
    for path in sorted(directory.iterdir()):
        match = FILE_PATTERN.fullmatch(path.name)
        if match is None or not path.is_file():
            problems.append(Problem(source=str(path), severity="warning",
                                    message="not a THUMOS14 annotation file (<Class>_val.txt or "
                                            "<Class>_test.txt); ignored"))
            continue
        found.append((path, match["label"], _SUBSET_OF_SPLIT[match["split"]]))
    if not found:
        problems.append(Problem(source=str(directory),
                                message="no <Class>_val.txt or <Class>_test.txt files in this directory"))
    return found


def read_thumos14(path: str | os.PathLike, *, as_annotated: bool = False) -> tuple[AnnotationSet, list[Problem]]:
    """Read a THUMOS14 annotation directory (``as_annotated``: see :func:`lofi.data.validation.validate_segments`).

    Returns the valid part and every problem found. Classes are the class names of the files (Ambiguous
    excluded), whether or not their lines were valid. A video named in both ``_val`` and ``_test`` files is an
    error and left out; a directory without annotation files, or whose files hold no line, is an error.
    """
    directory = Path(path)
    if not directory.is_dir():
        raise ValueError(f"{directory}: THUMOS14 annotations are a directory of <Class>_val.txt and "
                         f"<Class>_test.txt files, not a file")
    problems: list[Problem] = []
    entries: dict[str, _Entries] = {}
    classes: set[str] = set()
    files = _annotation_files(directory, problems)
    for file, label, subset in files:
        if label != AMBIGUOUS:
            classes.add(label)
        _read_lines(file, label=label, subset=subset, entries=entries, problems=problems)
    if files and not entries:
        problems.append(empty_dataset_problem(str(directory), f"its {len(files)} annotation file(s) hold no line"))
    videos: list[VideoAnnotation] = []
    for video_id, entry in entries.items():
        if len(entry.subsets) > 1:
            detail = "; ".join(f"{subset} in {file}" for subset, file in entry.subsets.items())
            problems.append(duplicate_id_problem(source=str(directory), video_id=video_id,
                                                 detail=f"listed in more than one subset ({detail})"))
            continue
        video, found = validate_video(source=str(directory), video_id=video_id, subset=next(iter(entry.subsets)),
                                      segments=entry.segments, ignore_regions=entry.regions,
                                      as_annotated=as_annotated)
        problems.extend(found)
        if video is not None:
            videos.append(video)
    return AnnotationSet.from_videos(videos, source=str(directory), classes=classes), problems
