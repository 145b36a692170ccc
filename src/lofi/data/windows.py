"""Stage 2 data: whole untrimmed videos as single windows at a chosen fidelity, and a sampler that picks it.

One item is one video rescaled to ``L`` snippets (as G-TAD and BMN do on ActivityNet): the window is the whole
video, so segments are fractions of the video's duration. :class:`VideoWindowDataset` is indexed by
``(index, fidelity_name)``; :class:`FidelityBatchSampler` yields batches of such keys with one fidelity per batch,
as a :class:`~lofi.core.fidelity.FidelitySchedule` says. Frames come from direct decoding at the requested
fidelity, or from a :class:`~lofi.data.frame_cache.FrameCache` (decoded once at full fidelity) and
:func:`~lofi.data.frame_cache.resample`.

Bad videos (missing, empty, corrupt, truncated) raise (``on_error="raise"``) or are skipped: the item is None,
a warning names the file and the reason, and :func:`collate_windows` drops it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence, TypedDict

import torch
from torch.utils.data import Sampler

from lofi.core.fidelity import Fidelity, FidelitySchedule
from lofi.core.targets import SegmentTargets
from lofi.data.annotations import AnnotationSet, Segment
from lofi.data.dataset import OnError, VideoFileDataset, item_generator, skip_or_raise, stack_frames
from lofi.data.frame_cache import FrameCache, resample
from lofi.data.sampling import CropMode, SnippetSpec, sample_snippets
from lofi.data.skips import SkipLog
from lofi.data.video import VideoReadError, find_video_files

WindowKey = tuple[int, str]
FrameReader = Callable[[Path, CropMode, torch.Generator | None], tuple[torch.Tensor, float]]  # (frames, duration_sec)


class WindowItem(TypedDict):
    """One video as one window at one fidelity."""

    video_id: str
    fidelity: str  # the key of the fidelity in the dataset's ``fidelities``
    frames: torch.Tensor  # [T, F, 3, S, S] uint8 RGB, channels-last memory
    segments: torch.Tensor  # [N, 2] float32, (start, end) as fractions of the video, clipped to [0, 1]
    labels: torch.Tensor  # [N] int64, indices into ``classes``
    duration_sec: float  # of the video file's video stream (what the snippets span)


def label_indices(annotations: AnnotationSet, classes: Sequence[str]) -> dict[str, int]:
    """``label -> index`` for ``classes``; raises naming the first video whose label is not in ``classes``."""
    to_index = {label: i for i, label in enumerate(classes)}
    if len(to_index) != len(classes):
        raise ValueError(f"classes must be distinct, got {list(classes)}")
    for video in annotations:
        for segment in video.segments:
            if segment.label not in to_index:
                raise ValueError(f"{annotations.source}: video {video.video_id!r}: label {segment.label!r} is not "
                                 f"in classes ({len(classes)} classes: {', '.join(classes[:10])}...)")
    return to_index


def segment_fractions(segments: Sequence[Segment], duration_sec: float,
                      label_to_index: Mapping[str, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Segments as fractions of a window spanning the whole video: ``([N, 2] float32, [N] int64)``.

    ``start / duration_sec`` and ``end / duration_sec`` clipped to ``[0, 1]``; segments left empty by the clipping
    (lying wholly past the end of the video) are dropped.
    """
    if not duration_sec > 0:
        raise ValueError(f"duration_sec must be > 0, got {duration_sec!r}")
    kept = [(min(max(s.start_sec / duration_sec, 0.0), 1.0), min(max(s.end_sec / duration_sec, 0.0), 1.0),
             label_to_index[s.label]) for s in segments]
    kept = [k for k in kept if k[1] > k[0]]
    fractions = torch.tensor([[a, b] for a, b, _ in kept], dtype=torch.float32).reshape(-1, 2)  # [N, 2]
    labels = torch.tensor([c for _, _, c in kept], dtype=torch.int64)  # [N]
    return fractions, labels


class FidelityVideoDataset(VideoFileDataset):
    """What stage 2's datasets share: keys ``(index, fidelity_name)``, the fidelities, the optional frame cache,
    augmentation seeded by ``(seed, epoch, index)`` and the handling of bad videos (``on_error``, ``skipped``,
    ``skip_log``). Subclasses say what an index is and how its frames are read (:meth:`_read_frames`), and set
    ``snippets_per_sec`` (before calling this constructor) when they want a cache at that fixed rate."""

    snippets_per_sec: float | None = None  # None: whole videos rescaled (the cache holds L snippets per video)

    def __init__(self, *, annotations: AnnotationSet, videos_dir: str | os.PathLike, classes: Sequence[str],
                 fidelities: Mapping[str, Fidelity], frames_per_snippet: int = 1, frame_stride: int = 1,
                 cache: FrameCache | None = None, augment: bool = False, on_error: OnError = "skip",
                 seed: int = 0, threads: int = 1, skip_log: SkipLog | None = None) -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if not fidelities:
            raise ValueError("fidelities must name at least one Fidelity")
        if cache is not None:
            _check_cache(cache, fidelities, frames_per_snippet=frames_per_snippet, frame_stride=frame_stride,
                         snippets_per_sec=self.snippets_per_sec)
        self.annotations = annotations
        self.videos_dir = Path(videos_dir)
        self.classes = tuple(classes)
        self.fidelities = dict(fidelities)
        self.frames_per_snippet = frames_per_snippet
        self.frame_stride = frame_stride
        self.cache = cache
        self.augment = augment
        self.on_error: OnError = on_error
        self.seed = seed
        self.threads = threads
        self.epoch = 0
        self.video_ids: list[str] = list(annotations.videos)
        self.skipped: list[tuple[str, str]] = []
        self.skip_log = skip_log
        self._label_to_index = label_indices(annotations, self.classes)
        self._files = find_video_files(self.videos_dir)

    def _read_frames(self, index: int, video_id: str, read: FrameReader) -> tuple[torch.Tensor, float] | None:
        """``read(path, crop, generator)`` -> ``(frames [T, F, 3, S, S], duration_sec)`` for item ``index``, then
        the random flip; None (after :func:`skip_or_raise`) for a bad video."""
        generator = item_generator(self.seed, self.epoch, index) if self.augment else None
        crop: CropMode = "random" if self.augment else "center"
        try:
            frames, duration_sec = read(self.video_path(video_id), crop, generator)
        except VideoReadError as exc:
            skip_or_raise(exc, on_error=self.on_error, skipped=self.skipped, video_id=video_id,
                          what=f"video {video_id!r}", log=self.skip_log)
            return None
        if generator is not None and bool(torch.rand((), generator=generator) < 0.5):
            frames = frames.flip(-1)  # horizontal flip; drawn after the crop in both paths
        return frames, duration_sec

    def _parse_key(self, key: int | WindowKey) -> WindowKey:
        if isinstance(key, tuple):
            index, name = key
            if name not in self.fidelities:
                raise KeyError(f"unknown fidelity {name!r}; this dataset has {sorted(self.fidelities)}")
            return int(index), name
        if len(self.fidelities) != 1:
            raise KeyError(f"index with (index, fidelity_name): this dataset has fidelities {sorted(self.fidelities)}")
        return int(key), next(iter(self.fidelities))


class VideoWindowDataset(FidelityVideoDataset):
    """Every video of ``annotations`` as one window, at any of ``fidelities`` (by name).

    ``dataset[(index, name)]`` (or ``dataset[index]`` when there is one fidelity) -> :class:`WindowItem` or None
    (a skipped bad video). With ``augment=True`` the square crop is placed at random and the frames are flipped
    horizontally with probability 1/2, both drawn from a generator seeded by ``(seed, epoch, index)``: an item is
    the same whichever worker loads it; call :meth:`set_epoch` for new draws. Without augmentation the crop is
    centred. With ``cache`` frames come from the cache (which must cover the largest fidelity and use the same
    ``frames_per_snippet`` and ``frame_stride``), else each item is decoded at its fidelity with
    :func:`~lofi.data.sampling.sample_snippets`. ``skipped`` lists ``(video_id, reason)`` skipped in this process;
    ``skip_log`` records the skips of every process (DataLoader workers included).
    """

    def __len__(self) -> int:
        return len(self.video_ids)

    def __getitem__(self, key: int | WindowKey) -> WindowItem | None:
        index, name = self._parse_key(key)
        fidelity = self.fidelities[name]
        video_id = self.video_ids[index]

        def read(path: Path, crop: CropMode, generator: torch.Generator | None) -> tuple[torch.Tensor, float]:
            if self.cache is not None:
                cached = self.cache.load(path, video_id)
                frames = resample(cached.frames, num_snippets=fidelity.num_snippets,
                                  frame_size_px=fidelity.frame_size_px, crop=crop, generator=generator)
                return frames, cached.duration_sec
            spec = SnippetSpec(num_snippets=fidelity.num_snippets, frames_per_snippet=self.frames_per_snippet,
                               frame_stride=self.frame_stride, short_side_px=fidelity.frame_size_px, crop=crop)
            clip = sample_snippets(path, spec, generator=generator, threads=self.threads)
            return clip.frames, clip.info.duration_sec

        read_back = self._read_frames(index, video_id, read)
        if read_back is None:
            return None
        frames, duration_sec = read_back
        segments, labels = segment_fractions(self.annotations[video_id].segments, duration_sec,
                                             self._label_to_index)
        return WindowItem(video_id=video_id, fidelity=name, frames=frames, segments=segments, labels=labels,
                          duration_sec=duration_sec)


def _check_cache(cache: FrameCache, fidelities: Mapping[str, Fidelity], *, frames_per_snippet: int,
                 frame_stride: int, snippets_per_sec: float | None) -> None:
    if cache.snippets_per_sec != snippets_per_sec:
        def kind(rate: float | None) -> str:
            return "whole videos rescaled" if rate is None else f"snippets at {rate:g} per second"

        raise ValueError(f"the frame cache at {cache.cache_dir} holds {kind(cache.snippets_per_sec)}, but the "
                         f"dataset wants {kind(snippets_per_sec)}; use a cache built for it (another cache_dir)")
    if (cache.frames_per_snippet, cache.frame_stride) != (frames_per_snippet, frame_stride):
        raise ValueError(f"the frame cache holds snippets of {cache.frames_per_snippet} frames {cache.frame_stride} "
                         f"apart, but the dataset wants {frames_per_snippet} frames {frame_stride} apart; use a cache "
                         f"built with the same frames_per_snippet and frame_stride")
    max_snippets = max(f.num_snippets for f in fidelities.values())
    max_size = max(f.frame_size_px for f in fidelities.values())
    if cache.num_snippets < max_snippets or cache.short_side_px < max_size:
        raise ValueError(f"the frame cache ({cache.num_snippets} snippets, short side {cache.short_side_px} px) "
                         f"cannot serve the largest fidelity ({max_snippets} snippets, {max_size} px); build it "
                         f"with num_snippets >= {max_snippets} and short_side_px >= {max_size}")


class WindowBatch(TypedDict):
    """Items stacked by :func:`collate_windows`."""

    frames: torch.Tensor  # [B, T, F, 3, S, S] uint8, channels-last memory
    targets: SegmentTargets  # per window: segments [N_b, 2] fractions, labels [N_b]
    video_ids: list[str]
    durations_sec: torch.Tensor  # [B] float32 seconds
    fidelity: str


def collate_windows(items: Sequence[WindowItem | None]) -> WindowBatch | None:
    """Drop skipped (None) items and stack the rest; None when nothing is left. All items need one fidelity."""
    kept = [item for item in items if item is not None]
    if not kept:
        return None
    shapes = {tuple(item["frames"].shape) for item in kept}
    if len(shapes) > 1:
        raise ValueError(f"cannot batch windows of different shapes {sorted(shapes)} (fidelities "
                         f"{sorted({item['fidelity'] for item in kept})}); use FidelityBatchSampler, which gives "
                         f"one fidelity per batch")
    return WindowBatch(frames=stack_frames([item["frames"] for item in kept]),  # [B, T, F, 3, S, S]
                       targets=SegmentTargets(segments=[item["segments"] for item in kept],
                                              labels=[item["labels"] for item in kept]),
                       video_ids=[item["video_id"] for item in kept],
                       durations_sec=torch.tensor([item["duration_sec"] for item in kept], dtype=torch.float32),
                       fidelity=kept[0]["fidelity"])


class FidelityBatchSampler(Sampler[list[WindowKey]]):
    """Batches of ``(index, fidelity_name)`` for :class:`VideoWindowDataset`, one fidelity per batch.

    Order: each epoch the indices ``0..num_items-1`` are shuffled with a generator seeded by ``seed + epoch``
    (the same on every rank), padded by repeating the first ones (or, with ``drop_last``, cut) to a multiple of
    ``num_replicas``, and rank ``r`` takes every ``num_replicas``-th from ``r`` (as ``DistributedSampler`` does);
    its share is cut into batches of ``batch_size`` (the last one smaller unless ``drop_last``). Every rank thus
    has the same number of batches, :meth:`__len__`.

    Fidelity: batch ``b`` of epoch ``e`` belongs to optimiser step ``(e * len(self) + b) // grad_accum_steps`` and
    uses ``schedule.at(epoch=e, step=that)``, the same on all ranks at the same batch index; batches accumulated
    into one step share a fidelity. Names are the keys of ``schedule.fidelities`` (build the dataset with
    ``fidelities=schedule.fidelities``). Resume mid-epoch exactly with ``set_epoch(e, start_batch=k)``: the
    iteration then yields batches ``k..len(self)-1`` of epoch ``e``, unchanged.
    """

    def __init__(self, *, num_items: int, batch_size: int, schedule: FidelitySchedule, shuffle: bool = True,
                 seed: int = 0, drop_last: bool = False, grad_accum_steps: int = 1, num_replicas: int = 1,
                 rank: int = 0) -> None:
        for name, value, minimum in (("num_items", num_items, 1), ("batch_size", batch_size, 1),
                                     ("grad_accum_steps", grad_accum_steps, 1), ("num_replicas", num_replicas, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"FidelityBatchSampler: {name} must be an int >= {minimum}, got {value!r}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"FidelityBatchSampler: rank must be in [0, {num_replicas}), got {rank!r}")
        if drop_last and num_items < num_replicas:
            raise ValueError(f"FidelityBatchSampler: {num_items} items cannot be shared by {num_replicas} ranks "
                             f"with drop_last")
        self.num_items = num_items
        self.batch_size = batch_size
        self.schedule = schedule
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.grad_accum_steps = grad_accum_steps
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.start_batch = 0
        self._names = {fidelity: name for name, fidelity in schedule.fidelities.items()}

    @property
    def items_per_rank(self) -> int:
        if self.drop_last:
            return self.num_items // self.num_replicas
        return math.ceil(self.num_items / self.num_replicas)

    def __len__(self) -> int:
        """Batches per epoch on this rank (the same on every rank), ``start_batch`` included."""
        if self.drop_last:
            return self.items_per_rank // self.batch_size
        return math.ceil(self.items_per_rank / self.batch_size)

    def set_epoch(self, epoch: int, *, start_batch: int = 0) -> None:
        """Select the epoch (order and fidelities) and skip its first ``start_batch`` batches (to resume)."""
        if not 0 <= start_batch <= len(self):
            raise ValueError(f"start_batch must be in [0, {len(self)}], got {start_batch!r}")
        self.epoch = epoch
        self.start_batch = start_batch

    def fidelity_name(self, epoch: int, batch_index: int) -> str:
        """The fidelity (its key in ``schedule.fidelities``) of batch ``batch_index`` of ``epoch``."""
        step = (epoch * len(self) + batch_index) // self.grad_accum_steps
        return self._names[self.schedule.at(epoch=epoch, step=step)]

    def indices(self) -> list[int]:
        """This rank's items of the current epoch, in order."""
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.num_items, generator=generator).tolist()
        else:
            order = list(range(self.num_items))
        total = self.items_per_rank * self.num_replicas
        if total > len(order):
            order = (order * math.ceil(total / len(order)))[:total]  # pad by repeating from the start
        order = order[:total]
        return order[self.rank:total:self.num_replicas]

    def __iter__(self) -> Iterator[list[WindowKey]]:
        indices = self.indices()
        for batch_index in range(self.start_batch, len(self)):
            name = self.fidelity_name(self.epoch, batch_index)
            chunk = indices[batch_index * self.batch_size:(batch_index + 1) * self.batch_size]
            yield [(index, name) for index in chunk]
