"""The typed in-memory form of a temporal action localization dataset.

Every annotation format (ActivityNet-1.3, HACS Segments, THUMOS14, simple CSV) is read into the same types:
an :class:`AnnotationSet` holding one :class:`VideoAnnotation` per video, each with its :class:`Segment` list.
Problems found while reading or validating are :class:`Problem` records that always name the file, the video and
what is wrong; strict loading raises them together as an :class:`AnnotationError`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Iterable, Iterator, Literal, Mapping

#: The canonical subset names (ActivityNet's vocabulary).
SUBSETS: tuple[str, ...] = ("training", "validation", "testing")

#: Spellings accepted for each canonical subset name (case-insensitive).
SUBSET_ALIASES: Mapping[str, str] = {
    "training": "training",
    "train": "training",
    "validation": "validation",
    "val": "validation",
    "valid": "validation",
    "testing": "testing",
    "test": "testing",
}

Severity = Literal["error", "warning"]


def canonical_subset(name: str) -> str | None:
    """Return the canonical subset for ``name`` (``"val"`` -> ``"validation"``), or None if unknown."""
    return SUBSET_ALIASES.get(str(name).strip().lower())


@dataclass(frozen=True)
class Segment:
    """One labelled action instance, in seconds from the start of the video (``end_sec`` > ``start_sec``)."""

    start_sec: float
    end_sec: float
    label: str

    @property
    def duration_sec(self) -> float:
        return self.end_sec - self.start_sec


@dataclass(frozen=True)
class Detection:
    """One predicted action instance: a scored segment, in seconds (as written to ActivityNet results files)."""

    start_sec: float
    end_sec: float
    label: str
    score: float


@dataclass(frozen=True)
class VideoAnnotation:
    """The annotations of one untrimmed video.

    ``duration_sec`` and ``fps`` are None when the format does not carry them (THUMOS14 lists, CSV without a
    ``duration`` column); :func:`lofi.data.validation.check_videos` can fill them from the files.
    ``ignore_regions_sec`` are spans that count neither as action nor as background (THUMOS14 "Ambiguous").
    """

    video_id: str
    subset: str
    segments: tuple[Segment, ...]
    duration_sec: float | None = None
    fps: float | None = None
    ignore_regions_sec: tuple[tuple[float, float], ...] = ()
    url: str | None = None
    resolution: str | None = None

    def with_segments(self, segments: Iterable[Segment]) -> "VideoAnnotation":
        return replace(self, segments=tuple(segments))


@dataclass
class AnnotationSet:
    """A dataset: videos by id, and the class list (sorted labels) that label indices refer to."""

    videos: dict[str, VideoAnnotation]
    classes: tuple[str, ...]
    source: str = "<memory>"

    @classmethod
    def from_videos(cls, videos: Iterable[VideoAnnotation], *, source: str = "<memory>",
                    classes: Iterable[str] | None = None) -> "AnnotationSet":
        """Build a set; ``classes`` defaults to the sorted labels used by the videos' segments."""
        by_id = {v.video_id: v for v in videos}
        if classes is None:
            classes = {s.label for v in by_id.values() for s in v.segments}
        return cls(videos=by_id, classes=tuple(sorted(classes)), source=source)

    def __len__(self) -> int:
        return len(self.videos)

    def __iter__(self) -> Iterator[VideoAnnotation]:
        return iter(self.videos.values())

    def __getitem__(self, video_id: str) -> VideoAnnotation:
        return self.videos[video_id]

    def __contains__(self, video_id: object) -> bool:
        return video_id in self.videos

    @property
    def label_to_index(self) -> dict[str, int]:
        return {label: i for i, label in enumerate(self.classes)}

    def subset(self, *names: str) -> "AnnotationSet":
        """The videos of the given subsets (aliases accepted); the class list is kept unchanged."""
        wanted = set()
        for name in names:
            canon = canonical_subset(name)
            if canon is None:
                raise ValueError(f"unknown subset {name!r}; expected one of {', '.join(SUBSETS)}")
            wanted.add(canon)
        return AnnotationSet(videos={k: v for k, v in self.videos.items() if v.subset in wanted},
                             classes=self.classes, source=self.source)

    def summary(self) -> "AnnotationSummary":
        return AnnotationSummary.of(self)


@dataclass(frozen=True)
class AnnotationSummary:
    """Counts for reports: videos and segments per subset, segments per class, total annotated time."""

    videos_per_subset: dict[str, int]
    segments_per_subset: dict[str, int]
    segments_per_class: dict[str, int]
    total_duration_sec: float
    total_action_sec: float

    @classmethod
    def of(cls, annotations: AnnotationSet) -> "AnnotationSummary":
        videos = Counter(v.subset for v in annotations)
        segments = Counter()
        per_class = Counter({label: 0 for label in annotations.classes})
        for v in annotations:
            segments[v.subset] += len(v.segments)
            per_class.update(s.label for s in v.segments)
        return cls(
            videos_per_subset=dict(sorted(videos.items())),
            segments_per_subset=dict(sorted(segments.items())),
            segments_per_class=dict(sorted(per_class.items())),
            total_duration_sec=sum(v.duration_sec or 0.0 for v in annotations),
            total_action_sec=sum(s.duration_sec for v in annotations for s in v.segments),
        )

    def format(self) -> str:
        """A plain-text table for the terminal."""
        lines = [f"{'subset':<12} {'videos':>7} {'segments':>9}"]
        for subset in sorted(set(self.videos_per_subset) | set(self.segments_per_subset)):
            lines.append(f"{subset:<12} {self.videos_per_subset.get(subset, 0):>7} "
                         f"{self.segments_per_subset.get(subset, 0):>9}")
        width = max([len("class")] + [len(c) for c in self.segments_per_class])
        lines.append("")
        lines.append(f"{'class':<{width}} {'segments':>9}")
        for label, count in self.segments_per_class.items():
            lines.append(f"{label:<{width}} {count:>9}")
        if self.total_duration_sec > 0:
            share = 100.0 * self.total_action_sec / self.total_duration_sec
            lines.append("")
            lines.append(f"annotated action time: {self.total_action_sec:.1f} s of {self.total_duration_sec:.1f} s "
                         f"({share:.1f}%)")
        return "\n".join(lines)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an annotation file or a video: where, which video, what, and how bad."""

    source: str
    message: str
    video_id: str | None = None
    severity: Severity = "error"

    def __str__(self) -> str:
        where = self.source if self.video_id is None else f"{self.source}: video {self.video_id!r}"
        return f"{where}: {self.severity}: {self.message}"


@dataclass
class AnnotationError(ValueError):
    """Raised in strict mode: carries every problem found, not just the first."""

    problems: list[Problem] = field(default_factory=list)

    def __str__(self) -> str:
        head = f"{len(self.problems)} problem(s) in annotations"
        shown = "\n".join(f"  {p}" for p in self.problems[:20])
        more = f"\n  ... and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
        return f"{head}:\n{shown}{more}\n(use --skip-invalid to drop the invalid entries and go on)"
