"""The typed config tree of a LoFi run: dataclasses, read from YAML, with dotted command-line overrides.

One file holds a whole run (no inheritance chains): ``load_config("run.yaml", ["train.optim.lr=0.05"])``.
Every key is checked against the tree: an unknown key is an error that names the file and suggests the closest
known key; values are checked against their types (``"0.1"`` is not a float; ``1`` is accepted as a float) and
ranges (``lr > 0``, ``epochs >= 1``, ...). Numbers are read in YAML 1.2 spelling too (``1e-3``, ``1E-3``, ``.5``,
``+1.0``; PyYAML alone reads ``1e-3`` as a string). ``load_config`` then checks what needs other packages, before
any work: ``eval.tiou`` parses, ``model.encoder`` / ``model.head`` are registered, and their options bind to the
builders' signatures (:mod:`lofi.models.options`). ``save_config`` writes the resolved tree, which every run
directory keeps as ``config.yaml``. Presets for the synthetic dataset and for ActivityNet, HACS and THUMOS14 ship in
``lofi/configs`` (``load_config("synthetic")``).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence, Union

import numpy as np
import yaml
from numpy.typing import ArrayLike

OptimizerName = Literal["sgd", "adamw"]
LRSchedule = Literal["step", "cosine"]
Autocast = Literal["bf16", "fp16"]
Device = Literal["auto", "cpu", "cuda"]


class ConfigError(ValueError):
    """A config value or key is wrong; the message names the file and the dotted key."""


class _FieldError(ConfigError):
    """A bad value found by a section's ``__post_init__``: ``key`` is relative to the section; :func:`load_config`
    re-raises it with the file and the full dotted key. ``{section}`` in ``detail`` becomes the section's dotted
    prefix, so a message can name another key of the section (``must be < {section}epochs``)."""

    def __init__(self, key: str, detail: str) -> None:
        super().__init__(f"{key}: {detail.format(section='')}")
        self.key, self.template = key, detail

    def detail(self, section: str) -> str:
        return self.template.format(section=section)


# -- field checks -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Range:
    """The interval a number field must lie in (``None``: that side is open); the number must be finite."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None
    note: str = ""  # what a boundary value means, e.g. "0: at epoch ends only"

    def describe(self) -> str:
        """``"> 0"``, ``">= 1"``, ``"in [0, 1)"``."""
        low = ("(", ">", self.gt) if self.gt is not None else ("[", ">=", self.ge) if self.ge is not None else None
        high = (")", "<", self.lt) if self.lt is not None else ("]", "<=", self.le) if self.le is not None else None
        if low and high:
            return f"in {low[0]}{low[2]:g}, {high[2]:g}{high[0]}"
        side = low or high
        return f"{side[1]} {side[2]:g}" if side else "finite"

    def allows(self, value: float) -> bool:
        return (math.isfinite(value) and (self.gt is None or value > self.gt) and (self.ge is None or value >= self.ge)
                and (self.lt is None or value < self.lt) and (self.le is None or value <= self.le))


def _ranged(default: Any, *, gt: float | None = None, ge: float | None = None, lt: float | None = None,
            le: float | None = None, note: str = "") -> Any:
    """A dataclass field whose value (unless ``None``) must lie in the given :class:`Range`."""
    return field(default=default, metadata={"range": Range(gt=gt, ge=ge, lt=lt, le=le, note=note)})


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


class _Checked:
    """Checks every field of a config section on construction (from YAML or in code): the allowed values of
    ``Literal`` fields and the :class:`Range` of number fields; ``_check`` adds the checks across fields."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value, hint = getattr(self, f.name), _hints(type(self))[f.name]
            allowed = _literal_values(hint)
            if allowed is not None and value not in allowed and not (value is None and _is_optional(hint)):
                raise _FieldError(f.name, f"{value!r} is not one of {', '.join(map(repr, allowed))}")
            rule = f.metadata.get("range")
            if rule is None or (value is None and _is_optional(hint)):
                continue
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not (number and rule.allows(value)):
                what = "" if number and math.isfinite(value) else "a finite number " if number else "a number "
                optional = " or null" if _is_optional(hint) else ""
                note = f" ({rule.note})" if rule.note else ""
                raise _FieldError(f.name, f"must be {what}{rule.describe()}{optional}{note}, got {value!r}")
        self._check()

    def _check(self) -> None:
        """Checks across fields; raise :class:`_FieldError` naming the field to change."""


def _literal_values(hint: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(hint) is Literal:
        return typing.get_args(hint)
    if typing.get_origin(hint) in (Union, types.UnionType):
        for option in typing.get_args(hint):
            if typing.get_origin(option) is Literal:
                return typing.get_args(option)
    return None


def _is_optional(hint: Any) -> bool:
    return typing.get_origin(hint) in (Union, types.UnionType) and type(None) in typing.get_args(hint)


# -- memory sizes (fidelity.memory, lofi plan --memory) -----------------------------------------------------------
#: Units of :func:`parse_memory_bytes`: decimal SI (kB, MB, GB, TB: powers of 1000, as GPU vendors print memory)
#: and binary IEC (KiB, MiB, GiB, TiB: powers of 1024, as torch and nvidia-smi's MiB count).
MEMORY_UNITS: dict[str, int] = {"b": 1, "kb": 10 ** 3, "mb": 10 ** 6, "gb": 10 ** 9, "tb": 10 ** 12,
                                "kib": 2 ** 10, "mib": 2 ** 20, "gib": 2 ** 30, "tib": 2 ** 40}
_MEMORY = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-zA-Z]+)\s*")


def parse_memory_bytes(text: str) -> int:
    """``"24GB"`` -> 24 * 10**9, ``"24GiB"`` -> 24 * 2**30, ``"500MB"``, ``"1.5TB"`` (units: :data:`MEMORY_UNITS`,
    any case; ``GB`` is decimal, ``GiB`` binary). A number without a unit is refused: say which you mean."""
    match = _MEMORY.fullmatch(str(text))
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in MEMORY_UNITS:
        raise ValueError(f"{text!r} is not a memory size: write a number and a unit, e.g. 24GB (10^9 bytes) or "
                         f"24GiB (2^30 bytes); units: B, kB, MB, GB, TB, KiB, MiB, GiB, TiB")
    value = int(float(match.group(1)) * MEMORY_UNITS[unit])
    if value < 1:
        raise ValueError(f"{text!r}: a memory size must be at least 1 byte")
    return value


# -- tIoU thresholds (eval.tiou; lofi.eval uses the same parser) -------------------------------------------------
#: The ActivityNet thresholds: 0.50, 0.55, ..., 0.95 (exactly the official ``np.linspace(0.5, 0.95, 10)``).
ACTIVITYNET_TIOU_THRESHOLDS: np.ndarray = np.linspace(0.5, 0.95, 10)
#: The THUMOS14 thresholds used by ActionFormer and most papers.
THUMOS14_TIOU_THRESHOLDS: np.ndarray = np.array([0.3, 0.4, 0.5, 0.6, 0.7])
_NAMED_THRESHOLDS: Mapping[str, np.ndarray] = {
    "activitynet": ACTIVITYNET_TIOU_THRESHOLDS,
    "anet": ACTIVITYNET_TIOU_THRESHOLDS,
    "hacs": ACTIVITYNET_TIOU_THRESHOLDS,
    "thumos14": THUMOS14_TIOU_THRESHOLDS,
    "thumos": THUMOS14_TIOU_THRESHOLDS,
}


def parse_tiou_thresholds(text: str) -> np.ndarray:
    """Thresholds from ``"0.5:0.95:0.05"`` (start:stop:step, stop included), ``"0.3,0.4,0.5"``, or a name
    (``"activitynet"``, ``"thumos14"``). ``"0.5:0.95:0.05"`` is exactly ``np.linspace(0.5, 0.95, 10)``."""
    spec = str(text).strip().lower()
    if spec in _NAMED_THRESHOLDS:
        return _NAMED_THRESHOLDS[spec].copy()
    try:
        if ":" in spec:
            parts = [float(p) for p in spec.split(":")]
            if len(parts) != 3:
                raise ValueError
            start, stop, step = parts
            if step <= 0 or stop < start:
                raise ValueError
            count = int(round((stop - start) / step)) + 1
            if abs(start + (count - 1) * step - stop) > 1e-9 * max(1.0, abs(stop)):
                raise ValueError
            values = np.linspace(start, stop, count)
        else:
            values = np.array([float(p) for p in spec.split(",") if p.strip()], dtype=np.float64)
    except ValueError:
        raise ValueError(f"tIoU thresholds {text!r}: expected start:stop:step (e.g. 0.5:0.95:0.05, stop "
                         f"reached by whole steps), a comma list (0.3,0.4,0.5), or one of "
                         f"{', '.join(_NAMED_THRESHOLDS)}") from None
    return check_thresholds(values)


def check_thresholds(values: ArrayLike) -> np.ndarray:
    """tIoU thresholds as a float64 ``[K]`` array; ValueError unless there is at least one, each in (0, 1]."""
    thresholds = np.asarray(values, dtype=np.float64).reshape(-1)
    if thresholds.size == 0 or not np.all((thresholds > 0) & (thresholds <= 1)):
        raise ValueError(f"tIoU thresholds {thresholds.tolist()}: need at least one, each in (0, 1]")
    return thresholds


# -- the tree -----------------------------------------------------------------------------------------------------
@dataclass
class WindowConfig(_Checked):
    """Sliding windows of ``fidelity.num_snippets`` snippets over long videos (stage 2, end to end on the windows
    that hold an instance; stage 3: extraction, head training and prediction), instead of rescaling each whole
    video to that many (see ``lofi.core.windows`` and ``lofi.data.video_windows``). Stage 1 is not windowed."""

    snippets_per_sec: float = _ranged(1.0, gt=0)  # snippets per second of video (the features' fixed rate)
    stride_snippets: int = _ranged(1, ge=1)  # snippets between the starts of consecutive windows (<= num_snippets)
    min_inside_fraction: float = _ranged(0.5, gt=0, le=1)  # an instance cut by a window edge is kept (clipped)
    # when at least this share of it lies inside the window, else dropped from that window (ActionFormer: 0.5)
    merge: Literal["center", "all"] = "center"  # prediction: each window keeps the detections whose centre is
    # nearer its centre than any other window's ("center"), or all of them ("all", OpenTAD); then one suppression


@dataclass
class DataConfig(_Checked):
    """Where the dataset is and how videos become snippets."""

    annotations: str = ""  # annotation file or folder (ActivityNet/HACS JSON, THUMOS14 folder, CSV)
    videos: str = ""  # folder of video files named by video id
    format: Literal["activitynet", "hacs", "thumos14", "csv"] | None = None  # None: from the path
    train_subset: str = "training"
    val_subset: str = "validation"
    frames_per_snippet: int = _ranged(1, ge=1)  # F: frames per snippet (the temporal shift runs across them)
    frame_stride: int = _ranged(1, ge=1)  # source frames between a snippet's frames
    num_workers: int = _ranged(2, ge=0, note="0: decode in the main process")  # DataLoader decode workers
    # (spawned, not forked: PyAV is not fork-safe everywhere)
    cache_dir: str | None = None  # pre-decoded frames at the working resolution, so stage 2 decodes each video once
    on_error: Literal["skip", "raise"] = "raise"  # bad entry or video: stop; skip (--skip-invalid): see skipped.json
    windows: WindowConfig | None = None  # None: each video rescaled to fidelity.num_snippets (ActivityNet's way)


@dataclass
class ModelConfig(_Checked):
    """The encoder and head, by registered name (``lofi models``), with their options.

    ``encoder_options`` / ``head_options`` are either the selected model's keyword options (``{hidden_dim: 32}``)
    or options kept per model name (``{gtad: {hidden_dim: 32}, actionformer: {embed_dim: 64}}``), of which only the
    selected model's entry is used: ``-o model.head=actionformer`` then switches heads without other changes.
    Builders read them through :meth:`encoder_kwargs` / :meth:`head_kwargs`; :func:`load_config` checks every entry
    against its builder's signature.
    """

    encoder: str = "tsm_resnet18"
    head: str = "gtad"
    encoder_options: dict[str, Any] = field(default_factory=dict)
    head_options: dict[str, Any] = field(default_factory=dict)
    encoder_weights: str | None = None  # a local checkpoint (TSM release, torchvision or lofi layout); null: none
    require_pretrained: bool = False  # stage 1 (and a stage 2 or extraction that starts from encoder_weights) refuses
    # to start unless encoder_weights names an existing file (the real-data presets: never random weights by accident)

    def _check(self) -> None:
        _check_weights_path("encoder_weights", self.encoder_weights)


def _check_weights_path(key: str, value: str | None) -> None:
    """A weights path of ``none``, ``null`` or nothing is a slip for YAML's ``null`` (no weights), not a file name."""
    if value is not None and value.strip().lower() in ("", "none", "null"):
        raise _FieldError(key, f"{value!r} would be read as a file name; for no weights write null "
                               f"(-o {{section}}{key}=null)")


@dataclass
class OptimConfig(_Checked):
    """Optimiser, LR schedule and loop settings of one stage (paper: SGD, lr 0.1 halved every 5 epochs,
    weight decay 1e-4, batch 16). Weight decay applies to conv/linear weights only, not to norms and biases."""

    optimizer: OptimizerName = "sgd"
    lr: float = _ranged(0.1, gt=0)
    momentum: float = _ranged(0.9, ge=0, lt=1)  # SGD only
    weight_decay: float = _ranged(1e-4, ge=0)
    lr_step_epochs: int = _ranged(5, ge=1)  # multiply the LR by lr_gamma every this many epochs
    lr_gamma: float = _ranged(0.5, gt=0, le=1, note="1: a constant LR")
    lr_schedule: LRSchedule = "step"  # "step": lr_gamma every lr_step_epochs; "cosine": lr to 0 over the run
    warmup_epochs: float = _ranged(0.0, ge=0, note="0: no warm-up")  # linear warm-up from ~0 to lr over this many
    # epochs (fractional: optimiser steps); less than epochs
    batch_size: int = _ranged(16, ge=1)  # per optimiser step, over all processes (divided among them)
    epochs: int = _ranged(10, ge=1)
    grad_accum_steps: int = _ranged(1, ge=1)
    clip_grad_norm: float | None = _ranged(None, gt=0)
    autocast: Autocast | None = None
    checkpoint_every_steps: int = _ranged(0, ge=0, note="0: at epoch ends only")
    keep_epoch_checkpoints: int = _ranged(2, ge=0, note="0: keep them all")  # newest epoch_XXX.pt files kept
    # besides latest.pt

    def _check(self) -> None:
        if not self.warmup_epochs < self.epochs:
            raise _FieldError("warmup_epochs", f"must be < {{section}}epochs ({self.epochs}), got "
                                               f"{self.warmup_epochs!r}: lower it (0: no warm-up)")


@dataclass
class FidelityConfig(_Checked):
    """Full fidelity (``num_snippets`` x ``frame_size_px``^2; paper 100 x 224^2) and the stage-2 mode."""

    num_snippets: int = _ranged(100, ge=1)
    frame_size_px: int = _ranged(224, ge=1)
    mode: Literal["full", "S", "T", "ST", "C-short", "C-long", "custom", "auto"] = "C-long"
    cycle_steps: int = _ranged(16, ge=1)  # C-short: optimiser steps per fidelity
    custom_num_snippets: int | None = _ranged(None, ge=1)  # mode "custom" (used only there)
    custom_frame_size_px: int | None = _ranged(None, ge=1)
    memory: str | None = None  # mode "auto": the device memory per process, e.g. "24GB" (10^9 B) or "24GiB" (2^30 B)
    memory_headroom: float = _ranged(0.1, ge=0.0, lt=1.0)  # mode "auto": the share of memory kept free (see lofi plan)

    def _check(self) -> None:
        if self.memory is not None:
            try:
                parse_memory_bytes(self.memory)
            except ValueError as exc:
                raise _FieldError("memory", str(exc)) from None
        if self.mode == "auto" and self.memory is None:
            raise _FieldError("memory", "{section}mode 'auto' plans stage 2 for a memory budget: set "
                                        "{section}memory, e.g. 24GB (or pick a mode: full, S, T, ST, C-short, C-long)")
        if self.mode == "custom":
            for name in ("custom_num_snippets", "custom_frame_size_px"):
                if getattr(self, name) is None:
                    raise _FieldError(name, "{section}mode 'custom' needs {section}custom_num_snippets and "
                                            "{section}custom_frame_size_px (the stage-2 fidelity): set both")


@dataclass
class PretrainConfig(_Checked):
    """Stage 1: the encoder as an action classifier on trimmed clips cut from the annotations."""

    enabled: bool = True  # False: start stage 2 from model.encoder_weights (or from scratch)
    num_snippets: int = _ranged(4, ge=1)  # snippets per clip
    frame_size_px: int = _ranged(224, ge=1)
    background: bool = True  # add a background class from unannotated spans
    background_per_video: int = _ranged(1, ge=0)
    segment_margin_frac: float = _ranged(0.0, ge=0, lt=0.5)  # trim this fraction of each segment at both ends
    clip_sec: float | None = _ranged(None, gt=0, note="null: whole ranges")  # sub-clips of this length at random
    # places in each range; None: whole ranges
    clips_per_range: int = _ranged(1, ge=1)  # clips cut from each action / background range per epoch
    balance_classes: bool = False  # as many clips of every class (background included) per epoch
    preload_frames: bool = False  # decode each video once into memory (small datasets: many clips, no decoding;
    # clips are then cut in the main process, without data.num_workers)
    # augmentation of training clips
    flip: bool = True  # horizontal flips (off when a flip changes the class, as on the synthetic data)
    crop_scale_min: float = _ranged(1.0, gt=0, le=1)  # random resized crop of this fraction of the short side up
    # to all of it
    color_jitter: float = _ranged(0.0, ge=0, lt=1)  # brightness / contrast / saturation factors in [1 - j, 1 + j]
    channel_shuffle: bool = False  # permute RGB at random (only where classes do not depend on colour)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=0.01, epochs=10))


@dataclass
class PartialBackpropConfig(_Checked):
    """Stage 2 back-propagates through only a share of each video's snippets (ETAD, TALLFormer): the others' features
    are computed without gradients, so the encoder's saved activations scale with ``share``
    (:mod:`lofi.models.partial_backprop`). Drawn anew every step, seeded by ``seed`` and the step."""

    share: float = _ranged(0.3, gt=0, le=1, note="1: every snippet, as without the switch")  # of each video's
    # snippets (at least one per video)
    mode: Literal["random", "chunks"] = "random"  # "random": independent snippets; "chunks": contiguous chunks
    chunk_snippets: int = _ranged(4, ge=1)  # mode "chunks": snippets per chunk (the last one may be shorter)


@dataclass
class LoFiStageConfig(_Checked):
    """Stage 2: encoder and head trained end to end through the TAL loss at the fidelity schedule."""

    enabled: bool = True  # False: stage 3 uses the stage-1 encoder (the frozen-features baseline)
    encoder_lr_scale: float = _ranged(1.0, gt=0)  # the encoder learns at this times optim.lr (the head at optim.lr)
    frozen_bn: bool = False  # the encoder's BatchNorm statistics and affines stay as stage 1 left them
    partial_backprop: PartialBackpropConfig | None = None  # None: every snippet carries gradients
    optim: OptimConfig = field(default_factory=OptimConfig)


@dataclass
class HeadStageConfig(_Checked):
    """Stage 3: features extracted at full fidelity with the frozen encoder, then the head trained from scratch."""

    extract_batch_size: int = _ranged(4, ge=1)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(optimizer="adamw", lr=1e-3, weight_decay=1e-4,
                                                                    epochs=10, batch_size=16, lr_step_epochs=5))


@dataclass
class EvalConfig(_Checked):
    """Evaluation and post-processing of stage-3 predictions."""

    tiou: str = "activitynet"  # "activitynet", "thumos14", "0.5:0.95:0.05" or a comma list (checked at load)
    method: Literal["soft_nms_gaussian", "soft_nms_linear", "nms", "none"] = "soft_nms_gaussian"
    iou_threshold: float = _ranged(0.5, ge=0, le=1)
    sigma: float = _ranged(0.5, gt=0)
    min_score: float = _ranged(1e-3, ge=0)
    max_detections: int = _ranged(100, ge=1)
    video_top_k: int = _ranged(2, ge=1)  # G-TAD/BMN: classes given to each proposal from the video-level scores


#: The cells of ``lofi experiment lofi-table``: the encoders whose full-fidelity features get the same stage 3
#: (``lofi.train.experiment.cells`` says what each one is).
ExperimentCell = Literal["floor", "acp", "acp_plus", "matched_steps", "S", "T", "ST", "C-short", "C-long",
                         "full_levers"]
EXPERIMENT_CELLS: tuple[str, ...] = typing.get_args(ExperimentCell)


@dataclass
class AcpSourceConfig(_Checked):
    """The source dataset of the ACP encoder: stage 1 on other classes than the target's (the paper's Kinetics
    pre-training, at a small scale). Either a dataset (``annotations`` and ``videos``) or ``synthetic``: a lofi
    synthetic dataset generated into the experiment folder with the target's generator settings (its
    ``synthetic.json``) but the next motion patterns (``class_offset`` = the target's ``num_classes``)."""

    annotations: str | None = None  # annotation file or folder of the source dataset
    videos: str | None = None  # its videos
    synthetic: bool = False  # generate the source dataset (the target must be a lofi synthetic dataset)
    seed: int | None = _ranged(None, ge=0, note="null: the target's generator seed + 1")  # synthetic: its seed

    def _check(self) -> None:
        given = self.annotations is not None or self.videos is not None
        if self.synthetic and given:
            raise _FieldError("synthetic", "set either {section}synthetic (generate the source dataset) or "
                                           "{section}annotations and {section}videos (a dataset of your own), not both")
        if not self.synthetic and not (self.annotations and self.videos):
            raise _FieldError("annotations" if not self.annotations else "videos",
                              "a source dataset needs {section}annotations and {section}videos (or set "
                              "{section}synthetic: true to generate one from the target's synthetic.json)")
        if self.seed is not None and not self.synthetic:
            raise _FieldError("seed", "{section}seed is the generator seed of a synthetic source: set "
                                      "{section}synthetic: true, or leave it out")


@dataclass
class ExperimentConfig(_Checked):
    """``lofi experiment lofi-table``: the same stage 3 after each cell's encoder, per seed. No stage reads this
    section, so it is part of no run identity."""

    seeds: list[int] = field(default_factory=lambda: [101, 102, 103])  # each seed is a whole run of every cell
    cells: list[ExperimentCell] = field(default_factory=lambda: list(EXPERIMENT_CELLS))
    acp: AcpSourceConfig | None = None  # the ACP encoder from stage 1 on a source dataset ...
    acp_weights: str | None = None  # ... or from a checkpoint (null: model.encoder_weights)

    def _check(self) -> None:
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or any(s < 0 for s in self.seeds):
            raise _FieldError("seeds", f"must be distinct integers >= 0, at least one, got {self.seeds!r}")
        unknown = [c for c in self.cells if c not in EXPERIMENT_CELLS]
        if unknown or not self.cells or len(set(self.cells)) != len(self.cells):
            raise _FieldError("cells", f"must be distinct names of {', '.join(EXPERIMENT_CELLS)}, at least one, "
                                       f"got {self.cells!r}")
        _check_weights_path("acp_weights", self.acp_weights)
        if self.acp is not None and self.acp_weights is not None:
            raise _FieldError("acp_weights", "the ACP encoder comes from {section}acp (stage 1 on a source "
                                             "dataset) or from {section}acp_weights (a checkpoint): set one")


@dataclass
class RunConfig(_Checked):
    """A whole LoFi run: the three stages and their evaluation."""

    name: str = "lofi"
    out_dir: str = "runs"  # the run directory is out_dir/name
    seed: int = _ranged(0, ge=0)
    device: Device = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    fidelity: FidelityConfig = field(default_factory=FidelityConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    train: LoFiStageConfig = field(default_factory=LoFiStageConfig)
    head: HeadStageConfig = field(default_factory=HeadStageConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    experiment: ExperimentConfig | None = None  # lofi experiment lofi-table (None: its defaults); no stage reads it

    def _check(self) -> None:
        if not (isinstance(self.name, str) and self.name.strip()):
            raise _FieldError("name", "must not be empty: it names the run directory (out_dir/name)")
        for stage in ("pretrain", "train", "head"):  # the run's batches, checked before stage 1 starts
            optim = getattr(self, stage).optim
            if optim.batch_size % optim.grad_accum_steps:
                raise _FieldError(f"{stage}.optim.batch_size", f"must be a multiple of {stage}.optim.grad_accum_steps "
                                                               f"({optim.grad_accum_steps}), got {optim.batch_size}")
        windows = self.data.windows
        if windows is not None and windows.stride_snippets > self.fidelity.num_snippets:
            raise _FieldError("data.windows.stride_snippets", f"must be <= fidelity.num_snippets "
                                                              f"({self.fidelity.num_snippets}) so that the windows "
                                                              f"cover the video, got {windows.stride_snippets}")

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name


# -- reading ------------------------------------------------------------------------------------------------------
PRESETS_PACKAGE = "lofi.configs"


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader (YAML 1.1), plus the YAML 1.2 float spellings it reads as strings: an exponent without
    a dot or without a sign (``1e-3``, ``1E-3``, ``1.0e3``) and a signed leading dot (``-.5``). ``.5``, ``+1.0``
    and ``1_000`` (an int; ``_`` separates digits) it reads already; booleans (``true``, ``yes``, ``off``),
    ``.inf`` / ``.nan`` and everything else are unchanged."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+|\.[0-9][0-9_]*)$"),
    list("-+0123456789."))


def parse_yaml(text: str) -> Any:
    """``text`` as YAML, with YAML 1.2 numbers (:class:`_Loader`): how config files and ``-o`` values are read."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def list_presets() -> list[str]:
    """Names of the shipped presets (``lofi/configs/*.yaml``)."""
    return sorted(p.name[:-5] for p in resources.files(PRESETS_PACKAGE).iterdir() if p.name.endswith(".yaml"))


def _read_yaml(source: str | os.PathLike) -> tuple[dict[str, Any], str]:
    path = Path(source)
    if not path.is_file() and str(source) in list_presets():  # a folder named like a preset (its data) is no config
        text = resources.files(PRESETS_PACKAGE).joinpath(f"{source}.yaml").read_text(encoding="utf-8")
        origin = f"preset {source!r}"
    elif path.is_file():
        text = path.read_text(encoding="utf-8")
        origin = str(path)
    else:
        raise ConfigError(f"{source}: no such config file, and not a preset ({', '.join(list_presets())})")
    try:
        data = parse_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin}: not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: expected a mapping of sections at the top, got {type(data).__name__}")
    return data, origin


class KeyedCheckError(ValueError):
    """Raised by a :data:`ConfigCheck`: ``key`` is the dotted config key at fault, so the message can say where
    it was set."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


#: A check that needs more than this module (the model registry, in ``lofi.runtime.configs``): it raises a
#: :class:`KeyedCheckError` for a bad value. Layers above pass theirs to :func:`load_config`; this module imports
#: nothing of lofi but ``errors``.
ConfigCheck = Callable[["RunConfig"], None]


def load_config(source: str | os.PathLike | None = None, overrides: Sequence[str] = (), *,
                checks: Sequence[ConfigCheck] = ()) -> RunConfig:
    """The run config of YAML file (or preset name) ``source`` (None: the defaults), with ``overrides``
    (``"train.optim.lr=0.05"``; values are YAML: ``null``, ``true``, ``[1, 2]``, ``1e-3``) applied on top.

    Keys, types, ranges and ``eval.tiou`` are checked here, then each of ``checks``. A mistake is a
    :class:`ConfigError` that names where the value was set (the file, or the override) and its dotted key. To
    check the model names and options too, load with :func:`lofi.load_config` (``lofi.runtime.configs``), as the
    command line does."""
    data, origin = ({}, "<defaults>") if source is None else _read_yaml(source)
    origins = _Origins(origin)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. train.optim.lr=0.05")
        try:
            parsed = parse_yaml(value) if value.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: the value is not valid YAML: {exc}") from None
        _set_dotted(data, key.strip(), parsed, origin=f"override {item!r}")
        origins.set(key.strip(), f"override {item!r}")
    config = _build(RunConfig, data, prefix="", origins=origins)
    _run_checks(config, checks, origins)
    return config


def check_run_config(config: RunConfig, *, checks: Sequence[ConfigCheck] = (), origin: str = "config") -> None:
    """:func:`load_config`'s checks on a config built in code (``eval.tiou``, then ``checks``); ``origin`` starts
    the messages. The field ranges need no call: each section checks them when it is constructed."""
    _run_checks(config, checks, _Origins(origin))


def _run_checks(config: RunConfig, checks: Sequence[ConfigCheck], origins: _Origins) -> None:
    try:
        parse_tiou_thresholds(config.eval.tiou)
    except ValueError as exc:
        raise ConfigError(f"{origins.of('eval.tiou')}: eval.tiou: {exc}") from None
    for check in checks:
        try:
            check(config)
        except KeyedCheckError as exc:
            raise ConfigError(f"{origins.of(exc.key)}: {exc}") from None


class _Origins:
    """Where each value was set: the file, or the (last) override of that key or of a section above it."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._overrides: dict[str, str] = {}

    def set(self, key: str, origin: str) -> None:
        for known in [k for k in self._overrides if k.startswith(f"{key}.")]:  # a section replaced as a whole
            del self._overrides[known]
        self._overrides[key] = origin

    def of(self, key: str) -> str:
        parts = key.split(".")
        for end in range(len(parts), 0, -1):
            origin = self._overrides.get(".".join(parts[:end]))
            if origin is not None:
                return origin
        return self.source


def _set_dotted(data: dict[str, Any], key: str, value: Any, *, origin: str) -> None:
    parts = key.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:  # absent, or an optional section set to null (data.windows): start it from its defaults
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{origin}: {'.'.join(parts[:i + 1])} is a value, not a section")
        node = child
    node[parts[-1]] = value


def _suggest(key: str, known: Sequence[str], prefix: str) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f"; did you mean {prefix + close[0]!r}?" if close else f"; known keys: {', '.join(known)}"


def _build(cls: type, data: Mapping[str, Any], *, prefix: str, origins: _Origins) -> Any:
    section = prefix.rstrip(".")
    if not isinstance(data, Mapping):
        raise ConfigError(f"{origins.of(section)}: {section or 'the config'} must be a mapping, got {data!r}")
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            raise ConfigError(f"{origins.of(prefix + str(key))}: unknown key {prefix + str(key)!r}"
                              f"{_suggest(str(key), names, prefix)}")
    values = {}
    for name in names:
        if name not in data:
            continue
        hint, where = hints[name], f"{prefix}{name}"
        section_type = _optional_section(hint)
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, data[name] or {}, prefix=f"{where}.", origins=origins)
        elif section_type is not None:  # an optional section: null, or a mapping of its keys
            values[name] = (None if data[name] is None else
                            _build(section_type, data[name], prefix=f"{where}.", origins=origins))
        else:
            values[name] = check_value(data[name], hint, where=where, origin=origins.of(where))
    try:
        return cls(**values)
    except _FieldError as exc:
        raise ConfigError(f"{origins.of(prefix + exc.key)}: {prefix}{exc.key}: {exc.detail(prefix)}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{origins.of(section)}: {section or 'config'}: {exc}") from None


def _optional_section(hint: Any) -> type | None:
    """``X`` for a hint ``X | None`` where ``X`` is a config section (a dataclass), else None."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        options = [o for o in typing.get_args(hint) if o is not type(None)]
        if len(options) == 1 and dataclasses.is_dataclass(options[0]) and type(None) in typing.get_args(hint):
            return options[0]
    return None


def check_value(value: Any, hint: Any, *, where: str, origin: str) -> Any:
    """``value`` checked against the type ``hint`` and returned as :func:`coerce_value` does; a
    :class:`ConfigError` naming ``origin`` and the dotted key ``where`` otherwise."""
    try:
        return coerce_value(value, hint)
    except ValueError as exc:
        raise ConfigError(f"{origin}: {where}: {exc}") from None
    except TypeError as exc:  # pragma: no cover - a bug in the tree
        raise ConfigError(f"{origin}: {where}: {exc}") from None


def coerce_value(value: Any, hint: Any) -> Any:
    """``value`` checked against the type ``hint`` (``int``, ``float``, ``bool``, ``str``, ``Literal``, ``dict``,
    ``list[X]``, ``Any``, unions with ``None``) and returned (an int as a float where a float is expected). A
    ValueError says what is wrong (without the key); a TypeError means ``hint`` is not one of those types."""
    origin_type = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin_type in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return coerce_value(value, option)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError(errors[0] if len(errors) == 1 else f"{value!r} matches none of "
                         f"{', '.join(_type_name(o) for o in options)}")
    if origin_type is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            hint_text = _suggest(value, [str(a) for a in allowed], "") if isinstance(value, str) else ""
            raise ValueError(f"{value!r} is not one of {', '.join(map(repr, allowed))}{hint_text}")
        return value
    if origin_type is list:
        if not isinstance(value, list):
            raise ValueError(f"expected a list, e.g. [1, 2], got {value!r}")
        (item,) = typing.get_args(hint)
        return [coerce_value(v, item) for v in value]
    if origin_type is dict:
        if not isinstance(value, dict):
            raise ValueError(f"expected a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected a number (e.g. 0.1, 1e-3), got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            quote = " (quote it to keep it as text)" if isinstance(value, (int, float)) else ""
            raise ValueError(f"expected a string, got {value!r}{quote}")
        return value
    raise TypeError(f"unsupported type {hint!r}")


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", str(hint))


# -- writing ------------------------------------------------------------------------------------------------------
def config_to_dict(config: Any) -> dict[str, Any]:
    """The config tree as plain YAML-able data."""
    return dataclasses.asdict(config)


def save_config(config: RunConfig, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML (what the run used, every key spelled out)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False), encoding="utf-8")
