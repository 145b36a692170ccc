"""Where the action instances of a synthetic video lie, in frames.

Each instance has three phases: onset (class-agnostic boundary cue), middle (the class motion) and offset (the
boundary cue again). Phase lengths are drawn independently of each other and of the class, so neither the
middle's length nor the class tells where the boundaries are. Frame ranges are half-open: ``[start, end)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from lofi.data.synthetic.config import SyntheticConfig


@dataclass(frozen=True)
class PlannedInstance:
    """One action instance in frames; ``[start_frame, end_frame)`` is what the annotation covers."""

    start_frame: int
    middle_start_frame: int
    middle_end_frame: int
    end_frame: int
    label: str = ""
    period_sec: float = 1.0
    amplitude_px: float = 1.0

    @property
    def num_frames(self) -> int:
        return self.end_frame - self.start_frame


@dataclass(frozen=True)
class VideoPlan:
    """The timeline of one video: its length and its non-overlapping instances in time order."""

    video_id: str
    subset: str
    num_frames: int
    instances: tuple[PlannedInstance, ...]


def _frames(seconds: float, fps: float, minimum: int = 1) -> int:
    return max(minimum, int(round(seconds * fps)))


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def plan_timeline(rng: np.random.Generator, config: SyntheticConfig, *, video_id: str, subset: str) -> VideoPlan:
    """Draw the video length and place instances left to right with background gaps between them.

    Instances are added while they fit, up to ``config.max_instances_per_video`` when it is set.
    """
    fps = config.fps
    num_frames = _frames(_uniform(rng, config.video_duration_sec), fps)
    min_gap = _frames(config.gap_sec[0], fps)
    log_mid = (math.log(config.middle_sec[0]), math.log(config.middle_sec[1]))
    instances: list[PlannedInstance] = []
    cursor = _frames(_uniform(rng, config.gap_sec), fps)
    while True:
        onset = _frames(_uniform(rng, config.onset_sec), fps)
        offset = _frames(_uniform(rng, config.offset_sec), fps)
        middle = _frames(math.exp(_uniform(rng, log_mid)), fps)
        period = config.motion_period_sec * math.exp(rng.uniform(math.log(0.8), math.log(1.25)))
        amplitude = config.motion_amplitude_frac * min(config.width_px, config.height_px) * rng.uniform(0.8, 1.2)
        end = cursor + onset + middle + offset
        if end + min_gap > num_frames:
            if not instances:  # shorten the middle so that every video holds at least one instance
                cursor = min_gap
                middle = num_frames - 2 * min_gap - onset - offset
                if middle < 1:
                    raise ValueError(f"video {video_id}: {num_frames} frames cannot hold one action instance")
                end = cursor + onset + middle + offset
            else:
                break
        instances.append(PlannedInstance(start_frame=cursor, middle_start_frame=cursor + onset,
                                         middle_end_frame=cursor + onset + middle, end_frame=end,
                                         period_sec=float(period), amplitude_px=float(amplitude)))
        if end + min_gap >= num_frames:
            break
        if config.max_instances_per_video is not None and len(instances) >= config.max_instances_per_video:
            break
        cursor = end + _frames(_uniform(rng, config.gap_sec), fps)
    return VideoPlan(video_id=video_id, subset=subset, num_frames=num_frames, instances=tuple(instances))


def assign_labels(plans: list[VideoPlan], classes: tuple[str, ...], rng: np.random.Generator, *,
                  per_video: bool = False) -> list[VideoPlan]:
    """Label the instances so that classes are balanced within each subset.

    The instances of a subset (with ``per_video``: its videos), in video order, take their labels from a sequence
    of fresh random permutations of the classes: every class appears once before any appears twice, and the class
    of an instance is independent of its length and position. With ``per_video`` every instance of a video takes
    the video's label (one class per video, as in ActivityNet).
    """
    labelled = list(plans)
    for subset in sorted({p.subset for p in plans}):
        if per_video:
            slots = [(i, 0) for i, p in enumerate(plans) if p.subset == subset]
        else:
            slots = [(i, j) for i, p in enumerate(plans) if p.subset == subset for j in range(len(p.instances))]
        labels: list[str] = []
        while len(labels) < len(slots):
            labels.extend(classes[k] for k in rng.permutation(len(classes)))
        if per_video:
            for (i, _), label in zip(slots, labels):
                labelled[i] = replace(plans[i], instances=tuple(replace(inst, label=label)
                                                                for inst in plans[i].instances))
            continue
        by_video: dict[int, list[PlannedInstance]] = {}
        for (i, j), label in zip(slots, labels):
            by_video.setdefault(i, []).append(replace(plans[i].instances[j], label=label))
        for i, instances in by_video.items():
            labelled[i] = replace(plans[i], instances=tuple(instances))
    return labelled
