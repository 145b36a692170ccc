"""``lofi data check``: read an annotation file, optionally match it to the videos (decoding each to the end), and
report every problem at once."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lofi.data.annotations import AnnotationSet, Problem
from lofi.data.formats import detect_format, load_annotations
from lofi.data.validation import check_videos


@dataclass
class CheckReport:
    """What :func:`run_check` found: the valid part of the annotations, every problem, and the format read."""

    annotations: AnnotationSet
    problems: list[Problem]
    format_name: str
    videos_dir: str | None = None
    skip_invalid: bool = False

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity != "error"]

    @property
    def ok(self) -> bool:
        """True when nothing at all was found, warnings included."""
        return not self.problems

    def format(self) -> str:
        """The report for the terminal: file and format, summary table, problems (errors first), a count."""
        lines = [f"{self.annotations.source} ({self.format_name})"]
        if self.videos_dir is not None:
            lines.append(f"videos: {self.videos_dir}")
        lines += ["", self.annotations.summary().format(), ""]
        lines += [str(p) for p in self.errors + self.warnings]
        if self.problems:
            lines.append("")
        lines.append(_count_line(len(self.errors), len(self.warnings)))
        if self.errors:
            lines.append(_errors_hint(self.skip_invalid, len(self.annotations)))
        return "\n".join(lines)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _count_line(errors: int, warnings: int) -> str:
    if errors == 0 and warnings == 0:
        return "no problems found"
    return f"{_plural(errors, 'error')}, {_plural(warnings, 'warning')}"


def _errors_hint(skip_invalid: bool, num_videos: int) -> str:
    if num_videos == 0:
        return "no video is usable: fix the errors above (--skip-invalid cannot help, it would leave nothing)"
    if skip_invalid:
        return f"with --skip-invalid the invalid entries are left out: {_plural(num_videos, 'video')} usable"
    return ("the summary above leaves out the invalid entries; other commands refuse this file unless given "
            "--skip-invalid")


def run_check(annotations_path: str | os.PathLike, *, videos_dir: str | os.PathLike | None = None,
              format: str | None = None, skip_invalid: bool = False,
              duration_tolerance_sec: float = 1.0, decode: bool = True, progress: bool = True) -> CheckReport:
    """Load ``annotations_path`` collecting every problem (skip mode), then check it against ``videos_dir``.

    An annotation file that lists no video is an error. With ``videos_dir`` every file is decoded to the end
    (``decode``; frames are not converted) to find truncated and corrupt files, with a progress bar on a terminal
    (``progress``); see :func:`~lofi.data.validation.check_videos`. ``skip_invalid`` only changes the closing
    hint of :meth:`CheckReport.format`; ``ok`` is False whenever anything was found. Raises FileNotFoundError for
    a missing annotation path or videos directory, and ValueError for an unknown format.
    """
    format_name = detect_format(annotations_path) if format is None else format.lower()
    loaded = load_annotations(annotations_path, format=format_name, on_invalid="skip")
    annotations, problems = loaded.annotations, list(loaded.problems)
    if videos_dir is not None:
        annotations, found = check_videos(annotations, videos_dir, duration_tolerance_sec=duration_tolerance_sec,
                                          decode=decode, progress=progress)
        problems.extend(found)
    return CheckReport(annotations=annotations, problems=problems, format_name=format_name,
                       videos_dir=None if videos_dir is None else str(Path(videos_dir)), skip_invalid=skip_invalid)
