"""Parameters of the procedural synthetic untrimmed-video dataset (see ``docs/synthetic.md``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from lofi.data.synthetic.motions import MOTION_PATTERNS

Layout = Literal["mixed", "activitynet", "thumos", "discrepancy"]
LAYOUTS: tuple[str, ...] = ("mixed", "activitynet", "thumos", "discrepancy")
#: The layouts that give each video one class (balanced over the videos of a subset).
ONE_CLASS_PER_VIDEO: tuple[str, ...] = ("activitynet", "discrepancy")

#: The defaults each layout puts on top of the dataclass defaults (see ``docs/synthetic.md``, "Layouts").
LAYOUT_DEFAULTS: dict[str, dict[str, Any]] = {
    "mixed": {},
    # one class per video, 1-3 long instances
    "activitynet": dict(max_instances_per_video=3, middle_sec=(2.5, 7.0), onset_sec=(0.6, 2.0),
                        offset_sec=(0.6, 2.0), gap_sec=(0.8, 3.0), video_duration_sec=(16.0, 24.0)),
    # several classes per video, many short instances
    "thumos": dict(middle_sec=(0.8, 2.5), onset_sec=(0.4, 1.0), offset_sec=(0.4, 1.0), gap_sec=(0.6, 2.5),
                   video_duration_sec=(20.0, 30.0)),
    # ActivityNet-like, with the task discrepancy (docs/synthetic.md, "The discrepancy layout"): onsets and offsets
    # as long as the middle and independent of it, so that the class cue's extent does not give the boundaries
    "discrepancy": dict(max_instances_per_video=3, middle_sec=(2.0, 6.0), onset_sec=(0.5, 4.0),
                        offset_sec=(0.5, 4.0), gap_sec=(0.8, 3.0), video_duration_sec=(16.0, 24.0),
                        boundary_cue_px=4.0),
}


@dataclass(frozen=True)
class SyntheticConfig:
    """Every generative parameter, with units in the names. Ranges are ``(low, high)`` inclusive.

    The defaults make a CPU-sized benchmark: 128x128 px, 15 fps, 20-40 s videos with several actions each.
    ``layout`` chooses how labels are spread: ``"mixed"`` and ``"thumos"`` balance classes over the instances of a
    subset (several classes per video), ``"activitynet"`` and ``"discrepancy"`` give each video one class, balanced
    over the videos.
    :meth:`for_layout` builds a config with a layout's ranges as defaults.
    ``boundary_cue_px`` is the strength of the class-agnostic onset/offset cue (the jitter amplitude): near 0
    nothing can learn the exact boundaries, large values let frozen classification features see them too.
    """

    num_videos: int = 24
    num_classes: int = 6
    class_offset: int = 0  # class k is motion pattern k + class_offset (a source dataset of other classes)
    seed: int = 0
    width_px: int = 128
    height_px: int = 128
    fps: float = 15.0
    video_duration_sec: tuple[float, float] = (20.0, 40.0)
    validation_fraction: float = 0.34
    layout: Layout = "mixed"  # "activitynet": one class per video; "mixed"/"thumos": several classes per video
    # actions
    max_instances_per_video: int | None = None  # None: as many as fit in the video
    middle_sec: tuple[float, float] = (1.0, 8.0)  # class-revealing phase, drawn log-uniformly
    onset_sec: tuple[float, float] = (0.4, 1.2)  # drawn independently of class and of the middle's length
    offset_sec: tuple[float, float] = (0.4, 1.2)
    gap_sec: tuple[float, float] = (1.0, 6.0)  # background between instances (and before the first)
    boundary_cue_px: float = 2.0  # jitter amplitude of the actor in onset/offset phases
    motion_amplitude_frac: float = 0.1  # class motion amplitude, as a fraction of the short side
    motion_period_sec: float = 1.2  # one cycle of a class motion pattern (scaled 0.8-1.25x per instance)
    shape_cue: bool = False  # if True the actor also changes shape in the middle phase (reveals class per frame)
    shape_cue_aspect: float = 2.2  # axis ratio the actor stretches to in the middle phase, with shape_cue
    # scene
    num_distractors: tuple[int, int] = (3, 6)
    object_radius_frac: tuple[float, float] = (0.055, 0.085)  # of the short side
    object_speed_frac_per_sec: tuple[float, float] = (0.05, 0.15)  # idle drift speed, short sides per second
    camera_pan_frac_per_sec: tuple[float, float] = (0.02, 0.06)
    texture_contrast: float = 0.6
    noise_std: float = 0.0  # per-pixel Gaussian sensor noise, in 8-bit levels
    # encoding
    crf: int = 18
    keyframe_interval_sec: float = 2.0

    def __post_init__(self) -> None:
        def check(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(f"synthetic config: {message}")

        check(self.layout in LAYOUTS, f"layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        check(self.max_instances_per_video is None
              or (isinstance(self.max_instances_per_video, int) and not isinstance(self.max_instances_per_video, bool)
                  and self.max_instances_per_video >= 1),
              f"max_instances_per_video must be None or an integer >= 1, got {self.max_instances_per_video!r}")
        check(self.num_videos >= 1, f"num_videos must be >= 1, got {self.num_videos}")
        check(1 <= self.num_classes <= len(MOTION_PATTERNS),
              f"num_classes must be in 1..{len(MOTION_PATTERNS)} (one per motion pattern), got {self.num_classes}")
        check(isinstance(self.class_offset, int) and not isinstance(self.class_offset, bool)
              and 0 <= self.class_offset and self.class_offset + self.num_classes <= len(MOTION_PATTERNS),
              f"class_offset + num_classes must be at most {len(MOTION_PATTERNS)} (the motion patterns) with "
              f"class_offset >= 0, got class_offset={self.class_offset!r} and num_classes={self.num_classes}")
        check(self.width_px >= 32 and self.height_px >= 32, "frames must be at least 32x32 px")
        check(self.width_px % 2 == 0 and self.height_px % 2 == 0,
              f"width and height must be even for H.264 4:2:0, got {self.width_px}x{self.height_px}")
        check(self.fps > 0, f"fps must be > 0, got {self.fps}")
        for name in ("video_duration_sec", "middle_sec", "onset_sec", "offset_sec", "gap_sec", "num_distractors",
                     "object_radius_frac", "object_speed_frac_per_sec", "camera_pan_frac_per_sec"):
            low, high = getattr(self, name)
            check(0 <= low <= high, f"{name} must be a range (low, high) with 0 <= low <= high, got {(low, high)}")
        check(self.middle_sec[0] > 0, "middle_sec must be > 0")
        check(0.0 <= self.validation_fraction < 1.0, "validation_fraction must be in [0, 1)")
        shortest_instance = self.onset_sec[0] + self.middle_sec[0] + self.offset_sec[0]
        check(self.video_duration_sec[0] >= shortest_instance + 2 * self.gap_sec[0],
              f"videos of {self.video_duration_sec[0]} s cannot hold one action and its gaps "
              f"({shortest_instance + 2 * self.gap_sec[0]:.1f} s)")
        check(self.boundary_cue_px >= 0, "boundary_cue_px must be >= 0")
        check(self.shape_cue_aspect >= 1, f"shape_cue_aspect must be >= 1 (an axis ratio), got {self.shape_cue_aspect}")
        check(0 <= self.crf <= 51, "crf must be in 0..51")

    @classmethod
    def for_layout(cls, layout: str, /, **overrides: Any) -> "SyntheticConfig":
        """A config with ``layout``'s ranges as defaults (``LAYOUT_DEFAULTS``), ``overrides`` on top."""
        if layout not in LAYOUT_DEFAULTS:
            raise ValueError(f"synthetic config: layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        if overrides.get("layout", layout) != layout:
            raise ValueError(f"synthetic config: for_layout({layout!r}) got layout={overrides['layout']!r}")
        return cls(**{**LAYOUT_DEFAULTS[layout], **overrides, "layout": layout})

    @property
    def class_names(self) -> tuple[str, ...]:
        """The motion patterns ``class_offset .. class_offset + num_classes - 1``, in registry order."""
        return tuple(MOTION_PATTERNS)[self.class_offset: self.class_offset + self.num_classes]

    def to_dict(self) -> dict[str, Any]:
        """Plain values; ``class_offset`` only when set, so that ``synthetic.json`` stays as before at 0."""
        values = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}
        if not values["class_offset"]:
            del values["class_offset"]
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "SyntheticConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"synthetic config: unknown keys {unknown}")
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items()})
