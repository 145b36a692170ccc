"""Files written whole or not at all: a temporary file in the same folder, flushed to disk, renamed into place.

A crash or a kill mid-write leaves the previous file (or none), never a partial one; leftovers are named
``.<name>.<random>.tmp`` beside the target. Checkpoints, feature files, the frame cache and the metrics logs all
write through :func:`atomic_write`.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

import torch

TMP_PREFIX = "."
TMP_SUFFIX = ".tmp"


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (the rename) to disk, where the platform allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _file_mode() -> int:
    """What ``open(path, "w")`` would give: 0o666 less the umask (mkstemp makes 0o600 files)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def temp_path(path: Path) -> Path:
    """A new empty temporary file beside ``path``, with the permissions ``open(path, "w")`` would give."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f"{TMP_PREFIX}{path.name}.", suffix=TMP_SUFFIX)
    os.close(fd)
    try:
        os.chmod(name, _file_mode())
    except OSError:
        pass
    return Path(name)


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> Path:
    """Create or replace ``path`` with what ``write(file)`` writes to a binary file, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj, path)`` through :func:`atomic_write`."""
    return atomic_write(path, lambda f: torch.save(obj, f))
