"""The typed config tree of a LoFi run: dataclasses, read from YAML, with dotted command-line overrides.

One file holds a whole run (no inheritance chains): ``load_config("run.yaml", ["train.optim.lr=0.05"])``.
Every key is checked against the tree: an unknown key is an error that names the file and suggests the closest
known key; values are checked against their types (``"0.1"`` is not a float; ``1`` is accepted as a float).
``save_config`` writes the resolved tree, which every run directory keeps as ``config.yaml``. Presets for the
synthetic dataset and for ActivityNet, HACS and THUMOS14 ship in ``lofi/configs`` (``load_config("synthetic")``).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence, Union

import yaml

OptimizerName = Literal["sgd", "adamw"]
LRSchedule = Literal["step", "cosine"]
Autocast = Literal["bf16", "fp16"]
Device = Literal["auto", "cpu", "cuda"]


class ConfigError(ValueError):
    """A config value or key is wrong; the message names the file and the dotted key."""


@dataclass
class DataConfig:
    """Where the dataset is and how videos become snippets."""

    annotations: str = ""  # annotation file or folder (ActivityNet/HACS JSON, THUMOS14 folder, CSV)
    videos: str = ""  # folder of video files named by video id
    format: Literal["activitynet", "hacs", "thumos14", "csv"] | None = None  # None: from the path
    train_subset: str = "training"
    val_subset: str = "validation"
    frames_per_snippet: int = 1  # F: frames per snippet (the temporal shift runs across them)
    frame_stride: int = 1  # source frames between a snippet's frames
    num_workers: int = 2  # DataLoader decode workers (spawned, not forked: PyAV is not fork-safe everywhere)
    cache_dir: str | None = None  # pre-decoded frames at the working resolution, so stage 2 decodes each video once
    on_error: Literal["skip", "raise"] = "raise"  # bad entry or video: stop; skip (--skip-invalid): see skipped.json


@dataclass
class ModelConfig:
    """The encoder and head, by registered name (``lofi models``), with their options."""

    encoder: str = "tsm_resnet18"
    head: str = "gtad"
    encoder_options: dict[str, Any] = field(default_factory=dict)
    head_options: dict[str, Any] = field(default_factory=dict)
    encoder_weights: str | None = None  # a local checkpoint (TSM release, torchvision or lofi layout)


@dataclass
class OptimConfig:
    """Optimiser, LR schedule and loop settings of one stage (paper: SGD, lr 0.1 halved every 5 epochs,
    weight decay 1e-4, batch 16). Weight decay applies to conv/linear weights only, not to norms and biases."""

    optimizer: OptimizerName = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_step_epochs: int = 5  # multiply the LR by lr_gamma every this many epochs
    lr_gamma: float = 0.5
    lr_schedule: LRSchedule = "step"  # "step": lr_gamma every lr_step_epochs; "cosine": lr to 0 over the run
    warmup_epochs: float = 0.0  # linear warm-up from ~0 to lr over this many epochs (fractional: optimiser steps)
    batch_size: int = 16  # per optimiser step, over all processes (divided among them)
    epochs: int = 10
    grad_accum_steps: int = 1
    clip_grad_norm: float | None = None
    autocast: Autocast | None = None
    checkpoint_every_steps: int = 0  # 0: checkpoint at epoch ends only
    keep_epoch_checkpoints: int = 2  # newest epoch_XXX.pt files kept besides latest.pt; 0 keeps them all

    def __post_init__(self) -> None:
        if self.lr_schedule not in typing.get_args(LRSchedule):
            raise ValueError(f"lr_schedule must be one of {', '.join(map(repr, typing.get_args(LRSchedule)))}, "
                             f"got {self.lr_schedule!r}")
        if not (isinstance(self.warmup_epochs, (int, float)) and math.isfinite(self.warmup_epochs)
                and self.warmup_epochs >= 0):
            raise ValueError(f"warmup_epochs must be a number >= 0 (0: no warm-up), got {self.warmup_epochs!r}")


@dataclass
class FidelityConfig:
    """Full fidelity (``num_snippets`` x ``frame_size_px``^2; paper 100 x 224^2) and the stage-2 mode."""

    num_snippets: int = 100
    frame_size_px: int = 224
    mode: Literal["full", "S", "T", "ST", "C-short", "C-long", "custom"] = "C-long"
    cycle_steps: int = 16  # C-short: optimiser steps per fidelity
    custom_num_snippets: int | None = None  # mode "custom"
    custom_frame_size_px: int | None = None


@dataclass
class PretrainConfig:
    """Stage 1: the encoder as an action classifier on trimmed clips cut from the annotations."""

    enabled: bool = True  # False: start stage 2 from model.encoder_weights (or from scratch)
    num_snippets: int = 4  # snippets per clip
    frame_size_px: int = 224
    background: bool = True  # add a background class from unannotated spans
    background_per_video: int = 1
    segment_margin_frac: float = 0.0  # trim this fraction of each segment at both ends
    clip_sec: float | None = None  # sub-clips of this length at random places in each range; None: whole ranges
    clips_per_range: int = 1  # clips cut from each action / background range per epoch
    balance_classes: bool = False  # as many clips of every class (background included) per epoch
    preload_frames: bool = False  # decode each video once into memory (small datasets: many clips, no decoding;
    # clips are then cut in the main process, without data.num_workers)
    # augmentation of training clips
    flip: bool = True  # horizontal flips (off when a flip changes the class, as on the synthetic data)
    crop_scale_min: float = 1.0  # random resized crop of this fraction of the short side up to all of it
    color_jitter: float = 0.0  # brightness / contrast / saturation factors in [1 - j, 1 + j]
    channel_shuffle: bool = False  # permute RGB at random (only where classes do not depend on colour)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=0.01, epochs=10))

    def __post_init__(self) -> None:
        if self.clip_sec is not None and not self.clip_sec > 0:
            raise ValueError(f"clip_sec must be > 0 or null (whole ranges), got {self.clip_sec!r}")
        if self.clips_per_range < 1 or self.background_per_video < 0:
            raise ValueError(f"clips_per_range must be >= 1 and background_per_video >= 0, got "
                             f"{self.clips_per_range!r} and {self.background_per_video!r}")
        if not 0 < self.crop_scale_min <= 1:
            raise ValueError(f"crop_scale_min must be in (0, 1], got {self.crop_scale_min!r}")
        if not 0 <= self.color_jitter < 1:
            raise ValueError(f"color_jitter must be in [0, 1), got {self.color_jitter!r}")
        if not 0 <= self.segment_margin_frac < 0.5:
            raise ValueError(f"segment_margin_frac must be in [0, 0.5), got {self.segment_margin_frac!r}")


@dataclass
class LoFiStageConfig:
    """Stage 2: encoder and head trained end to end through the TAL loss at the fidelity schedule."""

    enabled: bool = True  # False: stage 3 uses the stage-1 encoder (the frozen-features baseline)
    encoder_lr_scale: float = 1.0  # the encoder learns at this times optim.lr (the fresh head at optim.lr)
    frozen_bn: bool = False  # the encoder's BatchNorm statistics and affines stay as stage 1 left them
    optim: OptimConfig = field(default_factory=OptimConfig)

    def __post_init__(self) -> None:
        if not (isinstance(self.encoder_lr_scale, (int, float)) and self.encoder_lr_scale > 0):
            raise ValueError(f"encoder_lr_scale must be > 0, got {self.encoder_lr_scale!r}")


@dataclass
class HeadStageConfig:
    """Stage 3: features extracted at full fidelity with the frozen encoder, then the head trained from scratch."""

    extract_batch_size: int = 4
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(optimizer="adamw", lr=1e-3, weight_decay=1e-4,
                                                                    epochs=10, batch_size=16, lr_step_epochs=5))


@dataclass
class EvalConfig:
    """Evaluation and post-processing of stage-3 predictions."""

    tiou: str = "activitynet"  # "activitynet", "thumos14", "0.5:0.95:0.05" or a comma list
    method: Literal["soft_nms_gaussian", "soft_nms_linear", "nms", "none"] = "soft_nms_gaussian"
    iou_threshold: float = 0.5
    sigma: float = 0.5
    min_score: float = 1e-3
    max_detections: int = 100
    video_top_k: int = 2  # G-TAD/BMN: classes given to each proposal from the video-level scores


@dataclass
class RunConfig:
    """A whole LoFi run: the three stages and their evaluation."""

    name: str = "lofi"
    out_dir: str = "runs"  # the run directory is out_dir/name
    seed: int = 0
    device: Device = "auto"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    fidelity: FidelityConfig = field(default_factory=FidelityConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    train: LoFiStageConfig = field(default_factory=LoFiStageConfig)
    head: HeadStageConfig = field(default_factory=HeadStageConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name


# -- reading ------------------------------------------------------------------------------------------------------
PRESETS_PACKAGE = "lofi.configs"


def list_presets() -> list[str]:
    """Names of the shipped presets (``lofi/configs/*.yaml``)."""
    return sorted(p.name[:-5] for p in resources.files(PRESETS_PACKAGE).iterdir() if p.name.endswith(".yaml"))


def _read_yaml(source: str | os.PathLike) -> tuple[dict[str, Any], str]:
    path = Path(source)
    if not path.exists() and str(source) in list_presets():
        text = resources.files(PRESETS_PACKAGE).joinpath(f"{source}.yaml").read_text(encoding="utf-8")
        origin = f"preset {source!r}"
    elif path.is_file():
        text = path.read_text(encoding="utf-8")
        origin = str(path)
    else:
        raise ConfigError(f"{source}: no such config file, and not a preset ({', '.join(list_presets())})")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin}: not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: expected a mapping of sections at the top, got {type(data).__name__}")
    return data, origin


def load_config(source: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> RunConfig:
    """The run config of YAML file (or preset name) ``source`` (None: the defaults), with ``overrides``
    (``"train.optim.lr=0.05"``; values are YAML: ``null``, ``true``, ``[1, 2]``) applied on top."""
    data, origin = ({}, "<defaults>") if source is None else _read_yaml(source)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. train.optim.lr=0.05")
        _set_dotted(data, key.strip(), yaml.safe_load(value) if value.strip() else None, origin=f"override {item!r}")
    return _build(RunConfig, data, prefix="", origin=origin)


def _set_dotted(data: dict[str, Any], key: str, value: Any, *, origin: str) -> None:
    parts = key.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{origin}: {'.'.join(parts[:i + 1])} is a value, not a section")
        node = child
    node[parts[-1]] = value


def _suggest(key: str, known: Sequence[str], prefix: str) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f"; did you mean {prefix + close[0]!r}?" if close else f"; known keys: {', '.join(known)}"


def _build(cls: type, data: Mapping[str, Any], *, prefix: str, origin: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{origin}: {prefix.rstrip('.') or 'the config'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in names:
            raise ConfigError(f"{origin}: unknown key {prefix + str(key)!r}{_suggest(str(key), names, prefix)}")
    values = {}
    for name in names:
        if name not in data:
            continue
        hint, where = hints[name], f"{prefix}{name}"
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, data[name] or {}, prefix=f"{where}.", origin=origin)
        else:
            values[name] = _check_value(data[name], hint, where=where, origin=origin)
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{origin}: {prefix.rstrip('.') or 'config'}: {exc}") from None


def _check_value(value: Any, hint: Any, *, where: str, origin: str) -> Any:
    origin_type = typing.get_origin(hint)
    if origin_type in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _check_value(value, option, where=where, origin=origin)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{origin}: {where}: {value!r} matches none of "
                          f"{', '.join(_type_name(o) for o in options)}")
    if origin_type is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            hint_text = _suggest(value, [str(a) for a in allowed], "") if isinstance(value, str) else ""
            raise ConfigError(f"{origin}: {where}: {value!r} is not one of {', '.join(map(repr, allowed))}{hint_text}")
        return value
    if origin_type is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{origin}: {where}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{origin}: {where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{origin}: {where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{origin}: {where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{origin}: {where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{origin}: {where}: unsupported type {hint!r}")  # pragma: no cover - a bug in the tree


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
