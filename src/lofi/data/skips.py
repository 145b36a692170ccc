"""What a command left out, and why: annotation entries dropped at load, videos that failed to decode.

Skipping is opt-in (``--skip-invalid``, or ``data.on_error: skip`` in the config); without it the first bad entry
or video stops the command. When it is on, every skip becomes a :class:`SkipRecord` appended as one JSON line to
a file of its own process in the log folder (``RUN_DIR/skip_log/<host>-<pid>.jsonl``): DataLoader workers and
torchrun ranks each write their own file, so nothing is lost on the way back to the main process, and a command
that is interrupted and resumed keeps what it skipped before. At the end of a command the main process merges
every file into ``skipped.json`` (one entry per distinct skip, in the order first seen) and prints the list.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

from lofi.data.annotations import Problem
from lofi.io import atomic_write

logger = logging.getLogger(__name__)

LOG_DIR = "skip_log"
SKIPPED_FILE = "skipped.json"


@dataclass(frozen=True)
class SkipRecord:
    """One thing left out: the file it came from, the video, what was left out and why."""

    file: str  # the annotation file, or the video file
    video_id: str | None
    what: str  # "annotation", "video", "clip", "background clips"
    reason: str

    def __str__(self) -> str:
        where = self.file if self.video_id is None else f"{self.file}: video {self.video_id!r}"
        return f"{where}: {self.what}: {self.reason}"


def annotation_records(problems: Iterable[Problem]) -> list[SkipRecord]:
    """The annotation entries a skipping load left out: one record per error (warnings keep their entry)."""
    return [SkipRecord(file=p.source, video_id=p.video_id, what="annotation", reason=p.message)
            for p in problems if p.severity == "error"]


class SkipLog:
    """Append-only skip records under ``folder``, one JSONL file per process (picklable: a DataLoader worker
    gets a copy and writes its own file). Each record is written and closed at once, so it survives a crash of
    the process that wrote it."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)

    def record(self, record: SkipRecord) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"time": time.time(), **asdict(record)})
        with open(self.folder / f"{socket.gethostname()}-{os.getpid()}.jsonl", "a", encoding="utf-8") as f:
            f.write(line + "\n")

    def record_all(self, records: Iterable[SkipRecord]) -> None:
        for record in records:
            self.record(record)

    def records(self) -> list[SkipRecord]:
        """Every distinct record of every process, in the order first seen (a torn last line is ignored)."""
        timed: list[tuple[float, SkipRecord]] = []
        for path in sorted(self.folder.glob("*.jsonl")):
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                try:
                    row = json.loads(line)
                    timed.append((float(row.pop("time")), SkipRecord(**row)))
                except (ValueError, KeyError, TypeError):
                    logger.warning("%s:%d: unreadable skip record ignored: %r", path, number, line[:200])
        return distinct(record for _, record in sorted(timed, key=lambda pair: pair[0]))


def distinct(records: Iterable[SkipRecord]) -> list[SkipRecord]:
    """``records`` without repeats (a bad video is met again every epoch), in order."""
    return list(dict.fromkeys(records))


def write_skipped(records: Sequence[SkipRecord], path: str | os.PathLike) -> Path:
    """``skipped.json``: a list of ``{file, video_id, what, reason}``, written atomically."""
    text = json.dumps([asdict(r) for r in records], indent=2) + "\n"
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def format_skipped(records: Sequence[SkipRecord], path: str | os.PathLike | None, *, max_lines: int = 20) -> str:
    """The end-of-command list: how many, where the file is, and the first ``max_lines`` records."""
    where = f", listed in {path}" if path is not None else ""
    if not records:
        return f"skipped: nothing (--skip-invalid){where}"
    lines = [f"skipped {len(records)} (--skip-invalid){where}:"]
    lines += [f"  {record}" for record in records[:max_lines]]
    if len(records) > max_lines:
        lines.append(f"  ... and {len(records) - max_lines} more" + (f" in {path}" if path is not None else ""))
    return "\n".join(lines)


def finish_skip_log(log: SkipLog, out_dir: str | os.PathLike) -> str:
    """Merge ``log`` into ``out_dir/skipped.json`` and return the list to print (call on the main process, after
    every process is done)."""
    records = log.records()
    path = write_skipped(records, Path(out_dir) / SKIPPED_FILE)
    return format_skipped(records, path)
