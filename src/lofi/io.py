"""Files written whole or not at all, and the file names that video ids become.

:func:`atomic_write`: a temporary file in the same folder, flushed to disk, renamed into place. A crash or a kill
mid-write leaves the previous file (or none), never a partial one; leftovers are named ``.<name>.<random>.tmp``
beside the target. Checkpoints, feature files, the frame cache and the metrics logs all write through it.

:func:`safe_file_stem`: the one rule that turns a video id into a file name (feature files, frame cache entries,
timeline plots). Distinct ids give distinct names, and no name can leave its folder.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any, BinaryIO, Callable

import torch

TMP_PREFIX = "."
TMP_SUFFIX = ".tmp"

#: Longest stem an id keeps as it is; longer ids are shortened and hashed (file names stop at 255 bytes).
MAX_STEM_CHARS = 150
#: Put before the hash of a sanitised id; never part of an id kept as it is, so the two kinds never meet.
HASH_SEPARATOR = "~"
_HASH_HEX_CHARS = 16  # 64 bits of sha256
_KEPT_CHARS = re.compile(r"[A-Za-z0-9._-]+")
_OTHER_CHARS = re.compile(r"[^A-Za-z0-9._-]")
_WINDOWS_RESERVED = frozenset({"CON", "PRN", "AUX", "NUL", *(f"{p}{i}" for p in ("COM", "LPT") for i in range(1, 10))})


def _kept_as_is(video_id: str) -> bool:
    return (bool(_KEPT_CHARS.fullmatch(video_id)) and not video_id.startswith(".")
            and len(video_id) <= MAX_STEM_CHARS and video_id.split(".")[0].upper() not in _WINDOWS_RESERVED)


def safe_file_stem(video_id: str) -> str:
    """The file name stem (to which callers add a suffix) for ``video_id``; injective, and always inside its folder.

    An id of ``[A-Za-z0-9._-]`` only, not starting with ``.``, at most :data:`MAX_STEM_CHARS` long and not a Windows
    device name (``CON``, ``NUL``, ...) stays as it is. Any other id (``a b``, ``a/b``, ``../x``, ``été``, ``.x``,
    ``""``, a very long one) has its other characters replaced by ``_``, a leading ``.`` too, is cut to 100
    characters and gets ``~`` and 16 hex digits of the SHA-256 of the *original* id: ``a b`` -> ``a_b~<hash>``,
    which no kept id can equal (they hold no ``~``). Case is kept: on a case-insensitive file system (macOS,
    Windows) ``A`` and ``a`` share one file; the writers of features and the frame cache check for that.
    """
    if _kept_as_is(video_id):
        return video_id
    digest = hashlib.sha256(video_id.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_HEX_CHARS]
    readable = _OTHER_CHARS.sub("_", video_id)[:100]
    if readable.startswith("."):
        readable = "_" + readable[1:]
    return f"{readable or '_'}{HASH_SEPARATOR}{digest}"


def stems_clash(video_id: str, other_id: str) -> bool:
    """True when two different ids get the same stem up to letter case: one file on macOS and Windows."""
    return video_id != other_id and safe_file_stem(video_id).casefold() == safe_file_stem(other_id).casefold()


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
