"""One writer per run folder: an advisory ``fcntl`` lock held for a stage's life.

``FolderLock(folder)`` takes an exclusive, non-blocking ``flock`` on ``folder/.lofi.lock`` and writes the holder's
pid, host, command and start time into it. A second process asking for the same folder stops at once with a
:class:`FolderBusyError` that names the holder. The kernel drops the lock when its process dies (kill -9
included), so a lock file left behind never blocks: only a live holder does. Within one process the lock is
re-entrant (a stage inside ``lofi run`` may lock a folder the command already holds).
On systems without ``fcntl`` (Windows) the lock is a no-op.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from lofi.errors import UserError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lofi.lock"
_held: dict[Path, tuple[int, int]] = {}  # resolved lock path -> (fd, depth), this process's locks


class FolderBusyError(UserError, RuntimeError):
    """Another live process holds the folder's lock."""


def read_holder(folder: str | os.PathLike) -> dict[str, Any]:
    """What the lock file of ``folder`` says about its (last) holder; {} when unreadable."""
    try:
        return dict(json.loads((Path(folder) / LOCK_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return {}


class FolderLock:
    """``with FolderLock(folder):`` — exclusive use of ``folder`` by this process (see the module docstring)."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE

    def __enter__(self) -> "FolderLock":
        if fcntl is None:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        key = self.path.resolve()
        if key in _held:
            fd, depth = _held[key]
            _held[key] = (fd, depth + 1)
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = read_holder(self.folder)
            who = (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, since {holder.get('started', '?')}: "
                   f"{' '.join(holder.get('command', [])) or '?'}") if holder else "a process that left no details"
            raise FolderBusyError(f"{self.folder}: in use by another lofi process ({who}); wait for it to finish, "
                                  f"or write to another folder") from None
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                  "command": list(sys.argv)}
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps(record) + "\n").encode("utf-8"))
        _held[key] = (fd, 1)
        return self

    def __exit__(self, *exc: object) -> None:
        if fcntl is None:
            return
        key = self.path.resolve()
        fd, depth = _held[key]
        if depth > 1:
            _held[key] = (fd, depth - 1)
            return
        del _held[key]
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
