"""Decode each video once at full fidelity, keep the frames on disk, and derive lower fidelities from them.

A :class:`FrameCache` stores, per video, the ``L`` snippets of ``F`` frames of the *full* fidelity, resized so
that their short side is ``short_side_px`` (the largest frame size any fidelity needs) and **not cropped** (the
aspect ratio is kept, so random crops can still move along the long side). Storage is ``<stem>.npy`` (uint8
``[T, F, H, W, 3]``) next to a JSON sidecar ``<stem>.json`` holding the video id, the spec, the source file's size
and mtime, and the video's duration and fps; ``<stem>`` is :func:`lofi.io.safe_file_stem` of the video id. Both
are written atomically (temp file + ``os.replace``, the ``.npy`` first); an entry whose sidecar disagrees with the
id, the spec or the source file is decoded again.

**At a fixed rate** (``snippets_per_sec``, for sliding windows: :mod:`lofi.data.video_windows`) an entry holds the
video's ``T = video_num_snippets(duration_sec, snippets_per_sec)`` snippets instead of ``L``, snippet ``t``
centred at ``(t + 0.5) / snippets_per_sec`` s (:func:`~lofi.data.sampling.rate_times_sec`); the sidecar records
the rate and ``T``, so an entry of another rate (or a whole-video entry) is decoded again, never reused. Such an
entry is built :data:`RATE_CHUNK_SNIPPETS` snippets at a time, streamed into the ``.npy`` (memory holds one chunk,
however long the video), and a window reads only its snippets from the memory-mapped file
(``load(..., picked=...)``).

:func:`resample` derives a fidelity ``(L', S')`` from cached frames:

* **Temporal (nearest centre).** Cached snippet ``k`` of ``L`` covers ``[k / L, (k + 1) / L)`` of the video and is
  centred in it, exactly as :func:`~lofi.data.sampling.snippet_times_sec` places snippets. Target snippet ``i`` of
  ``L'`` (centre ``(i + 0.5) / L'``) takes the cached snippet whose span contains its centre, i.e. whose centre is
  nearest: ``k = floor((i + 0.5) * L / L')``; a centre on a shared boundary goes to the later snippet. When
  ``L / L' = m`` is an odd integer every target centre *is* a cached centre, so the result equals decoding ``L'``
  snippets directly (up to a frame of rounding); when ``m`` is even the centres lie on boundaries and every target
  snippet is taken half a cached snippet (``duration / (2 L)``) late, keeping the spacing exactly uniform
  (every ``m``-th cached snippet). Frames inside a snippet are ``frame_stride`` source frames apart in both cases.
* **Spatial.** Antialiased bilinear resize (``torch.nn.functional.interpolate(antialias=True)``) to short side
  ``S'`` with the aspect ratio kept (:func:`~lofi.data.sampling.resized_size_px`), then a square ``S' x S'`` crop
  at the centre or at a random place drawn like :class:`~lofi.data.sampling.SnippetSpec`'s random crop (x, then
  y, from ``generator``), then an optional horizontal flip. At the cached size no resize is made, so full
  fidelity from the cache equals direct decoding with a centre crop.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO, Callable, Literal

import numpy as np
import torch
import torch.nn.functional as F

from lofi.core.windows import video_num_snippets
from lofi.data.chunked import iter_snippet_chunks
from lofi.data.sampling import SnippetSpec, rate_times_sec, resized_size_px, sample_snippets_between
from lofi.data.video import VideoReadError, probe_video
from lofi.io import atomic_write, safe_file_stem, stems_clash

logger = logging.getLogger(__name__)

#: Snippets decoded at a time when an entry at a fixed rate is built (bounds the memory a long video needs).
RATE_CHUNK_SNIPPETS = 64

#: Bumped when the stored layout or the decoding rules change: older entries are then rebuilt.
CACHE_FORMAT_VERSION = 2  # 2: entries named by safe_file_stem, the sidecar holds the video id


@dataclass
class CachedVideo:
    """One cache entry: ``frames`` uint8 ``[T, F, H, W, 3]`` (channels last, short side = ``short_side_px``)."""

    frames: torch.Tensor  # [T, F, H, W, 3] uint8
    duration_sec: float  # of the video stream the frames were decoded from
    fps: float
    from_cache: bool  # False when this call decoded the video


class FrameCache:
    """Full-fidelity frames of each video, decoded once and stored under ``cache_dir`` (see the module docstring).

    ``num_snippets`` (L) and ``frames_per_snippet`` (F) and ``frame_stride`` are those of the full fidelity;
    ``short_side_px`` is the largest frame size any fidelity needs. With ``snippets_per_sec`` each entry holds a
    video's snippets at that rate (``num_snippets`` is then the window's ``L``, what the fidelities are checked
    against). ``num_decoded`` and ``num_hits`` count, in
    this process, the videos decoded and the entries read back. Safe with several DataLoader workers: each writes
    whole files atomically, so a reader sees either no entry or a complete one.
    """

    def __init__(self, cache_dir: str | os.PathLike, *, num_snippets: int, frames_per_snippet: int,
                 short_side_px: int, frame_stride: int = 1, threads: int = 1,
                 snippets_per_sec: float | None = None) -> None:
        if snippets_per_sec is not None and not snippets_per_sec > 0:
            raise ValueError(f"FrameCache: snippets_per_sec must be > 0 or None, got {snippets_per_sec!r}")
        self.spec = SnippetSpec(num_snippets=num_snippets, frames_per_snippet=frames_per_snippet,
                                frame_stride=frame_stride, short_side_px=short_side_px)
        self.snippets_per_sec = None if snippets_per_sec is None else float(snippets_per_sec)
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        self.threads = threads
        self.num_decoded = 0
        self.num_hits = 0

    @property
    def num_snippets(self) -> int:
        return self.spec.num_snippets

    @property
    def frames_per_snippet(self) -> int:
        return self.spec.frames_per_snippet

    @property
    def frame_stride(self) -> int:
        return self.spec.frame_stride

    @property
    def short_side_px(self) -> int:
        assert self.spec.short_side_px is not None
        return self.spec.short_side_px

    def entry_paths(self, video_id: str) -> tuple[Path, Path]:
        """``(frames .npy, sidecar .json)`` of ``video_id``, named by :func:`~lofi.io.safe_file_stem`."""
        stem = safe_file_stem(video_id)
        return self.cache_dir / f"{stem}.npy", self.cache_dir / f"{stem}.json"

    def frames(self, path: str | os.PathLike, video_id: str) -> torch.Tensor:
        """The cached frames of the video at ``path``: uint8 ``[T, F, H, W, 3]`` (channels last)."""
        return self.load(path, video_id).frames

    def load(self, path: str | os.PathLike, video_id: str, *, duration_sec: float | None = None,
             picked: torch.Tensor | None = None) -> CachedVideo:
        """Read the entry of ``video_id``, decoding ``path`` first when it is missing or stale.

        At a fixed rate (``snippets_per_sec``) the entry holds ``video_num_snippets(duration_sec, snippets_per_sec)``
        snippets, so ``duration_sec`` (the annotations') is needed. ``picked`` ``[T']`` (snippet indices): return
        only those snippets, read from a memory-mapped entry (a window of a long video without loading it all).
        Raises :class:`~lofi.data.video.VideoReadError` naming the file when the video cannot be read.
        """
        path = Path(path)
        try:
            stat = path.stat()
        except OSError as exc:
            raise VideoReadError(path, f"file not found ({exc.__class__.__name__})") from exc
        spec = self._spec_for(path, duration_sec)
        meta = {"video_id": video_id, **self._sidecar_for(stat, spec)}
        cached = self._read(video_id, meta, picked)
        if cached is not None:
            self.num_hits += 1
            return cached
        if self.snippets_per_sec is not None:
            return self._decode_at_rate(path, video_id, spec, meta, picked)
        clip = sample_snippets_between(path, spec, keep_full_frame=True, threads=self.threads)
        frames = clip.frames.permute(0, 1, 3, 4, 2).contiguous()  # [T, F, 3, H, W] -> [T, F, H, W, 3]
        meta.update(duration_sec=clip.info.duration_sec, fps=clip.info.fps, shape=list(frames.shape))
        array = frames.numpy()
        self._write(video_id, lambda f: np.save(f, array, allow_pickle=False), meta)
        self.num_decoded += 1
        if picked is not None:
            frames = frames[picked]  # [T', F, H, W, 3]
        return CachedVideo(frames=frames, duration_sec=clip.info.duration_sec, fps=clip.info.fps, from_cache=False)

    def _decode_at_rate(self, path: Path, video_id: str, spec: SnippetSpec, meta: dict[str, Any],
                        picked: torch.Tensor | None) -> CachedVideo:
        """Decode the video's snippets at the rate and write them :data:`RATE_CHUNK_SNIPPETS` at a time into the
        ``.npy`` (memory holds one chunk, however long the video), then read back ``picked`` (or all)."""
        info = probe_video(path)
        width, height = resized_size_px(info.width, info.height, self.short_side_px)
        shape = (spec.num_snippets, spec.frames_per_snippet, height, width, 3)  # [T, F, H, W, 3]
        chunks = iter_snippet_chunks(path, spec, chunk_snippets=RATE_CHUNK_SNIPPETS, info=info, keep_full_frame=True,
                                     times_sec=partial(rate_times_sec, spec, snippets_per_sec=self.snippets_per_sec),
                                     threads=self.threads)

        def write(f: BinaryIO) -> None:
            np.lib.format.write_array_header_1_0(f, {"descr": np.dtype(np.uint8).str, "fortran_order": False,
                                                     "shape": shape})
            for chunk in chunks:
                f.write(chunk.clip.frames.permute(0, 1, 3, 4, 2).contiguous().numpy().tobytes())  # [C, F, H, W, 3]

        meta.update(duration_sec=info.duration_sec, fps=info.fps, shape=list(shape))
        self._write(video_id, write, meta)
        self.num_decoded += 1
        cached = self._read(video_id, meta, picked)
        if cached is None:
            raise VideoReadError(path, f"the frame cache entry just written to {self.cache_dir} cannot be read back")
        return CachedVideo(frames=cached.frames, duration_sec=info.duration_sec, fps=info.fps, from_cache=False)

    def _spec_for(self, path: Path, duration_sec: float | None) -> SnippetSpec:
        """The spec of ``path``'s entry: the cache's, or at a fixed rate ``T`` snippets for ``duration_sec``."""
        if self.snippets_per_sec is None:
            return self.spec
        if duration_sec is None or not duration_sec > 0:
            raise ValueError(f"{path}: a frame cache at {self.snippets_per_sec:g} snippets per second needs the "
                             f"video's duration_sec (> 0) to choose its number of snippets, got {duration_sec!r}")
        return replace(self.spec, num_snippets=video_num_snippets(duration_sec, self.snippets_per_sec))

    def _sidecar_for(self, stat: os.stat_result, spec: SnippetSpec) -> dict[str, Any]:
        rate = {} if self.snippets_per_sec is None else {"snippets_per_sec": self.snippets_per_sec}
        return {"version": CACHE_FORMAT_VERSION, "num_snippets": spec.num_snippets,
                "frames_per_snippet": self.frames_per_snippet, "frame_stride": self.frame_stride,
                "short_side_px": self.short_side_px, "source_size_bytes": stat.st_size,
                "source_mtime_ns": stat.st_mtime_ns, **rate}

    def _read(self, video_id: str, expected: dict[str, Any], picked: torch.Tensor | None = None) -> CachedVideo | None:
        frames_path, meta_path = self.entry_paths(video_id)
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            return None
        if any(meta.get(key) != value for key, value in expected.items()):
            return None  # stale: other spec, another rate or the source file changed
        if "snippets_per_sec" not in expected and "snippets_per_sec" in meta:
            return None  # an entry at a fixed rate does not serve whole-video rescaling
        try:
            array = np.load(frames_path, mmap_mode=None if picked is None else "r")
        except (OSError, ValueError) as exc:
            logger.warning("frame cache: rebuilding unreadable entry %s (%s)", frames_path, exc)
            return None
        if list(array.shape) != meta.get("shape") or array.dtype != np.uint8:
            return None
        if picked is not None:
            array = np.ascontiguousarray(array[picked.numpy()])  # [T', F, H, W, 3]: only these snippets are read
        return CachedVideo(frames=torch.from_numpy(array), duration_sec=float(meta["duration_sec"]),
                           fps=float(meta["fps"]), from_cache=True)

    def _write(self, video_id: str, write_frames: Callable[[BinaryIO], Any], meta: dict[str, Any]) -> None:
        frames_path, meta_path = self.entry_paths(video_id)
        try:
            stored_id = json.loads(meta_path.read_text()).get("video_id")
        except (OSError, ValueError, AttributeError):
            stored_id = None
        if isinstance(stored_id, str) and stems_clash(video_id, stored_id):
            raise ValueError(f"{meta_path}: the frame cache entry of video {stored_id!r}, and {video_id!r} maps to the "
                             f"same file (their names differ only in letter case, which this file system ignores); "
                             f"put data.cache_dir on a case-sensitive file system or rename one of the two videos")
        atomic_write(frames_path, write_frames)
        atomic_write(meta_path, lambda f: f.write(json.dumps(meta, sort_keys=True).encode()))


def snippet_indices(cached_snippets: int, num_snippets: int) -> torch.Tensor:
    """The cached snippet used for each of ``num_snippets`` target snippets: ``floor((i + 0.5) * L / L')``."""
    i = torch.arange(num_snippets)
    return ((2 * i + 1) * cached_snippets) // (2 * num_snippets)  # [T'] int64


def resample(frames: torch.Tensor, *, num_snippets: int, frame_size_px: int,
             crop: Literal["center", "random"] = "center", flip: bool = False,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Derive ``num_snippets`` (L') snippets of ``frame_size_px`` (S') square frames from cached frames.

    ``frames`` uint8 ``[T, F, H, W, 3]`` (as :meth:`FrameCache.frames` returns) -> uint8 ``[T', F, 3, S', S']``
    (channels-last memory, like :class:`~lofi.data.sampling.SampledClip`). Rules in the module docstring;
    ``generator`` drives the random crop (the global RNG when None).
    """
    if frames.dim() != 5 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
        raise ValueError(f"resample: expected uint8 frames [T, F, H, W, 3], got {frames.dtype} "
                         f"{tuple(frames.shape)}")
    if crop not in ("center", "random"):
        raise ValueError(f"resample: crop must be 'center' or 'random', got {crop!r}")
    cached_snippets, num_frames, height, width, _ = frames.shape
    picked = frames[snippet_indices(cached_snippets, num_snippets)]  # [T', F, H, W, 3]
    new_w, new_h = resized_size_px(width, height, frame_size_px)
    if (new_w, new_h) != (width, height):
        flat = picked.reshape(-1, height, width, 3).permute(0, 3, 1, 2).float()  # [T'*F, 3, H, W]
        flat = F.interpolate(flat, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)
        picked = flat.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1)  # [T'*F, h, w, 3]
        picked = picked.reshape(num_snippets, num_frames, new_h, new_w, 3)
    side = frame_size_px
    if crop == "center":
        x, y = (new_w - side) // 2, (new_h - side) // 2
    else:
        x = int(torch.randint(0, new_w - side + 1, (1,), generator=generator))
        y = int(torch.randint(0, new_h - side + 1, (1,), generator=generator))
    out = picked[:, :, y:y + side, x:x + side]  # [T', F, S', S', 3]
    if flip:
        out = out.flip(3)
    return out.contiguous().permute(0, 1, 4, 2, 3)  # [T', F, 3, S', S'], channels-last memory
