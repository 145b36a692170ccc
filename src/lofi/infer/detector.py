"""``lofi.Detector``: an exported detector (a ``.lofi`` file) run on raw video files.

``Detector.load("model.lofi").detect("video.mp4")`` -> a list of :class:`~lofi.data.annotations.Detection`
(``label``, ``score``, ``start_sec``, ``end_sec``), best first. ``detect_many(paths)`` streams one
:class:`VideoResult` per video, in order; a video that cannot be decoded comes back with its ``error`` (or raises,
with ``on_error="raise"``), the others are still processed.

A video goes through the same steps as in training's stage 3, so the detections equal those of ``lofi run``'s
evaluation of the same model on the same video:

1. **snippets**: a model trained on whole videos samples ``L`` snippets spread over the video
   (:func:`~lofi.data.sampling.sample_snippets`, centre crop); a model trained with sliding windows samples the
   video at its snippet rate, ``L`` snippets at a time (:func:`~lofi.data.chunked.iter_snippet_chunks`), so memory
   holds one chunk of frames whatever the video's length, and the features ``[D, T]`` (4 bytes x D per snippet);
2. **features**: the encoder, ``batch_size`` chunks per call;
3. **head**: on the whole video's ``[D, L]``, or on each window of ``[D, T]``, with the windows' candidates
   shifted to video time and merged (:mod:`lofi.core.windows`);
4. **post-processing**: the model's suppression settings, then ``threshold`` and ``top_k``.

Decoding runs ahead in a background thread (:func:`~lofi.infer.prefetch.prefetch`, ``prefetch_chunks`` chunks
deep) while the model works, so on a CPU the model's cost hides behind decoding when it is the cheaper of the two.
On a CPU the model's kernels get the cores the decoder leaves (``torch_threads``; by default the usable cores
minus ``decode_threads``, at most torch's own setting), set for the time of a ``detect_many`` call: the default
torch pool takes every core, and on 2 cores its threads then fight the decode thread (``benchmarks/detect.py``).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Literal, Sequence

import torch

from lofi.core.windows import cut_window, video_num_snippets, window_spans
from lofi.data.annotations import Detection
from lofi.data.chunked import iter_snippet_chunks
from lofi.data.sampling import SnippetSpec, sample_snippets
from lofi.data.video import VideoInfo, VideoReadError, probe_video
from lofi.infer.model_file import ModelSpec, read_model_file
from lofi.infer.predict import RawPredictions, collect_candidates, finish_predictions
from lofi.infer.prefetch import prefetch
from lofi.models import create_encoder, create_head
from lofi.models.encoders.base import normalize_frames
from lofi.postprocess import PostprocessConfig

OnError = Literal["skip", "raise"]
#: ``(video_index, snippets_done, snippets_total)``, called as a video's snippets are encoded.
ProgressCallback = Callable[[int, int, int], None]


@dataclass(frozen=True)
class VideoResult:
    """The detections of one video, or why it was skipped."""

    video_id: str
    path: Path
    detections: list[Detection] = field(default_factory=list)  # best first
    duration_sec: float | None = None
    error: str | None = None  # the reason the video was skipped; None when it was processed

    @property
    def ok(self) -> bool:
        return self.error is None


def video_ids_for(paths: Sequence[str | os.PathLike]) -> list[str]:
    """A results id per path: the file name without its extension (ActivityNet's ids), or, where two paths share
    one, the path as given without its extension."""
    stems = [Path(p).stem for p in paths]
    return [stem if stems.count(stem) == 1 else os.path.splitext(os.fspath(p))[0] for stem, p in zip(stems, paths)]


@dataclass
class _Chunk:
    index: int  # of the video in the input order
    start_snippet: int
    frames: torch.Tensor  # [T, F, 3, S, S] uint8, T <= L
    total_snippets: int


@dataclass
class _End:
    index: int
    duration_sec: float
    total_snippets: int


@dataclass
class _Failed:
    index: int
    error: VideoReadError


@dataclass
class _VideoState:
    features: dict[int, torch.Tensor] = field(default_factory=dict)  # start snippet -> [D, T] float32
    queued: int = 0  # chunks waiting in the encoder batch
    duration_sec: float | None = None
    total_snippets: int = 0
    error: VideoReadError | None = None

    @property
    def finished(self) -> bool:
        return self.error is not None or (self.duration_sec is not None and self.queued == 0)


class Detector:
    """An encoder and a TAL head with the spec that says how to feed them (see the module docstring)."""

    def __init__(self, *, spec: ModelSpec, encoder: torch.nn.Module, head: torch.nn.Module,
                 device: str | torch.device = "cpu", batch_size: int = 4, decode_threads: int = 1,
                 prefetch_chunks: int = 4, torch_threads: int | None = None) -> None:
        for name, value in (("batch_size", batch_size), ("prefetch_chunks", prefetch_chunks)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Detector: {name} must be an int >= 1, got {value!r}")
        if isinstance(decode_threads, bool) or not isinstance(decode_threads, int) or decode_threads < 0:
            raise ValueError(f"Detector: decode_threads must be an int >= 0 (0: FFmpeg chooses), got "
                             f"{decode_threads!r}")
        if torch_threads is not None and (isinstance(torch_threads, bool) or not isinstance(torch_threads, int)
                                          or torch_threads < 1):
            raise ValueError(f"Detector: torch_threads must be an int >= 1 or None (auto), got {torch_threads!r}")
        self.spec = spec
        self.device = torch.device(device)
        self.encoder = encoder.to(self.device).eval()
        self.head = head.to(self.device).eval()
        self.batch_size = batch_size
        self.decode_threads = decode_threads
        self.prefetch_chunks = prefetch_chunks
        self.torch_threads = torch_threads
        self.postprocess = PostprocessConfig(**spec.postprocess)

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str | torch.device = "cpu", batch_size: int = 4,
             decode_threads: int = 1, prefetch_chunks: int = 4, torch_threads: int | None = None) -> Detector:
        """The detector of model file ``path`` (``lofi export``); raises
        :class:`~lofi.infer.model_file.ModelFileError` for a file that is not one, and never unpickles."""
        spec, encoder_state, head_state = read_model_file(path)
        encoder = create_encoder(spec.encoder, **spec.encoder_options)
        encoder.load_state_dict(encoder_state, strict=True)
        head = create_head(spec.head, in_dim=spec.feature_dim, num_classes=len(spec.classes),
                           num_snippets=spec.num_snippets, **spec.head_options)
        head.load_state_dict(head_state, strict=True)
        return cls(spec=spec, encoder=encoder, head=head, device=_resolve_device(device), batch_size=batch_size,
                   decode_threads=decode_threads, prefetch_chunks=prefetch_chunks, torch_threads=torch_threads)

    @property
    def classes(self) -> list[str]:
        return list(self.spec.classes)

    def detect(self, video: str | os.PathLike, *, threshold: float = 0.0, top_k: int | None = None
               ) -> list[Detection]:
        """The detections of one video, best first; raises :class:`~lofi.data.video.VideoReadError` naming the file
        when it cannot be decoded."""
        (result,) = self.detect_many([video], threshold=threshold, top_k=top_k, on_error="raise")
        return result.detections

    def detect_many(self, videos: Iterable[str | os.PathLike], *, threshold: float = 0.0, top_k: int | None = None,
                    on_error: OnError = "skip", progress: ProgressCallback | None = None) -> Iterator[VideoResult]:
        """One :class:`VideoResult` per video, in order, as each is done (decoding runs ahead). ``threshold``: the
        lowest score kept; ``top_k``: the most detections kept per video (None: the model's ``max_detections``)."""
        if on_error not in ("skip", "raise"):
            raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
        paths = [Path(v) for v in videos]
        ids = video_ids_for(paths)
        states: dict[int, _VideoState] = {}
        batch: list[_Chunk] = []
        next_index = 0

        def flush() -> None:
            if batch:
                self._encode(batch, states, progress)
                batch.clear()

        def ready() -> Iterator[VideoResult]:
            nonlocal next_index
            while next_index in states and states[next_index].finished:
                state = states.pop(next_index)
                if state.error is not None and on_error == "raise":
                    raise state.error
                yield self._finish(ids[next_index], paths[next_index], state, threshold=threshold, top_k=top_k)
                next_index += 1

        with torch.inference_mode(), self._model_threads():
            for event in prefetch(self._decode(paths), depth=self.prefetch_chunks, name="lofi-decode"):
                state = states.setdefault(event.index, _VideoState())
                if isinstance(event, _Chunk):
                    if batch and batch[0].frames.shape != event.frames.shape:
                        flush()  # one shape per encoder call (a last, shorter chunk goes alone)
                    batch.append(event)
                    state.queued += 1
                    if len(batch) >= self.batch_size:
                        flush()
                elif isinstance(event, _End):
                    state.duration_sec, state.total_snippets = event.duration_sec, event.total_snippets
                else:
                    state.error = event.error
                yield from ready()
            flush()
            yield from ready()

    def model_threads(self) -> int:
        """The torch intra-op threads the model runs with on a CPU: ``torch_threads``, or the usable cores less the
        decoder's threads (at least 1, at most torch's current setting)."""
        if self.torch_threads is not None:
            return self.torch_threads
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        return max(1, min(torch.get_num_threads(), cores - max(self.decode_threads, 1)))

    @contextlib.contextmanager
    def _model_threads(self) -> Iterator[None]:
        if self.device.type != "cpu":
            yield
            return
        before = torch.get_num_threads()
        torch.set_num_threads(self.model_threads())
        try:
            yield
        finally:
            torch.set_num_threads(before)

    # -- the steps ----------------------------------------------------------------------------------------------
    def snippet_spec(self, info: VideoInfo) -> tuple[SnippetSpec, int]:
        """How a video of ``info`` becomes snippets: the spec of all of them, and the snippets per chunk."""
        spec = self.spec
        windows = spec.windows
        count = (spec.num_snippets if windows is None
                 else video_num_snippets(info.duration_sec, windows.snippets_per_sec))
        sampling = SnippetSpec(num_snippets=count, frames_per_snippet=spec.frames_per_snippet,
                               frame_stride=spec.frame_stride, short_side_px=spec.frame_size_px, crop="center")
        return sampling, spec.num_snippets

    def _decode(self, paths: Sequence[Path]) -> Iterator[_Chunk | _End | _Failed]:
        """Runs in the prefetch thread: every video's chunks of frames, then its end (or its failure)."""
        for index, path in enumerate(paths):
            try:
                if not path.is_file():
                    raise VideoReadError(path, "no such file" if not path.exists() else "not a file")
                info = probe_video(path)
                sampling, chunk_snippets = self.snippet_spec(info)
                if self.spec.windows is None:
                    clip = sample_snippets(path, sampling, info=info, threads=self.decode_threads)
                    yield _Chunk(index, 0, clip.frames, sampling.num_snippets)
                else:
                    for chunk in iter_snippet_chunks(path, sampling, chunk_snippets=chunk_snippets, info=info,
                                                     threads=self.decode_threads):
                        yield _Chunk(index, chunk.start_snippet, chunk.clip.frames, sampling.num_snippets)
                yield _End(index, float(info.duration_sec), sampling.num_snippets)
            except VideoReadError as exc:
                yield _Failed(index, exc)

    def _encode(self, batch: list[_Chunk], states: dict[int, _VideoState],
                progress: ProgressCallback | None) -> None:
        frames = torch.stack([c.frames for c in batch]).to(self.device)  # [B, T, F, 3, S, S] uint8
        features = self.encoder(normalize_frames(frames)).float().cpu()  # [B, D, T]
        for chunk, feats in zip(batch, features):
            state = states.get(chunk.index)  # None: the video failed later in its decoding and was reported
            if state is None:
                continue
            state.queued -= 1
            if state.error is None:
                state.features[chunk.start_snippet] = feats
                if progress is not None:
                    done = sum(int(f.shape[1]) for f in state.features.values())
                    progress(chunk.index, done, chunk.total_snippets)

    def _finish(self, video_id: str, path: Path, state: _VideoState, *, threshold: float,
                top_k: int | None) -> VideoResult:
        if state.error is not None:
            return VideoResult(video_id=video_id, path=path, error=state.error.reason)
        assert state.duration_sec is not None
        features = torch.cat([state.features[k] for k in sorted(state.features)], dim=1)  # [D, T]
        raw = self._candidates(video_id, features, state.duration_sec)
        detections = finish_predictions(raw, self.postprocess, video_top_k=self.spec.video_top_k).get(video_id, [])
        kept = sorted((d for d in detections if d.score >= threshold), key=lambda d: d.score, reverse=True)
        if top_k is not None:
            kept = kept[:max(int(top_k), 0)]
        return VideoResult(video_id=video_id, path=path, detections=kept, duration_sec=state.duration_sec)

    def _candidates(self, video_id: str, features: torch.Tensor, duration_sec: float) -> RawPredictions:
        """The head's decoded, unsuppressed candidates of one video's features ``[D, T]``."""
        raw = RawPredictions()
        windows = self.spec.windows
        if windows is None:
            outputs = self.head(features[None].to(self.device)).map(lambda v: v.float().cpu())  # [1, D, L] in
            collect_candidates(outputs, video_ids=[video_id], durations_sec=[duration_sec],
                               classes=self.spec.classes, into=raw)
            return raw
        num_snippets = int(features.shape[1])
        spans = window_spans(num_snippets, window_snippets=self.spec.num_snippets,
                             stride_snippets=windows.stride_snippets, snippet_sec=duration_sec / num_snippets,
                             merge=windows.merge)
        for first in range(0, len(spans), self.batch_size):
            group = spans[first:first + self.batch_size]
            stacked = torch.stack([cut_window(features, span) for span in group]).to(self.device)  # [B, D, L]
            outputs = self.head(stacked).map(lambda v: v.float().cpu())
            collect_candidates(outputs, video_ids=[video_id] * len(group), durations_sec=[duration_sec] * len(group),
                               classes=self.spec.classes, into=raw,
                               window_starts_sec=[s.start_sec for s in group],
                               window_ends_sec=[s.end_sec for s in group], keep_sec=[s.core_sec for s in group])
        return raw


def _resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r}: CUDA is not available on this machine; use --device cpu")
    return resolved


__all__ = ["Detector", "VideoResult", "video_ids_for"]
