"""Every number of the tree is checked against its range when the config is read: the error names the file (or
the override) and the dotted key, and nothing is clamped silently."""

from __future__ import annotations

import pytest

from lofi.config import ConfigError, FidelityConfig, OptimConfig, RunConfig, load_config

#: (dotted key, a bad value, what the message says). Each stage's optim has the same checks; pretrain's is used.
BAD_VALUES = [
    ("train.optim.lr", "0", "must be > 0"),
    ("train.optim.lr", "-0.1", "must be > 0"),
    ("head.optim.weight_decay", "-1e-4", "must be >= 0"),
    ("train.optim.momentum", "1.0", "must be in [0, 1)"),
    ("train.optim.momentum", "-0.1", "must be in [0, 1)"),
    ("train.optim.epochs", "0", "must be >= 1"),
    ("train.optim.batch_size", "0", "must be >= 1"),
    ("pretrain.optim.grad_accum_steps", "0", "must be >= 1"),
    ("head.optim.lr_step_epochs", "0", "must be >= 1"),
    ("train.optim.lr_gamma", "0", "must be in (0, 1]"),
    ("train.optim.lr_gamma", "1.5", "must be in (0, 1]"),
    ("train.optim.warmup_epochs", "-1", "must be >= 0"),
    ("train.optim.clip_grad_norm", "0", "must be > 0 or null"),
    ("train.optim.checkpoint_every_steps", "-1", "must be >= 0 (0: at epoch ends only)"),
    ("train.optim.keep_epoch_checkpoints", "-1", "must be >= 0"),
    ("data.frames_per_snippet", "0", "must be >= 1"),
    ("data.frame_stride", "0", "must be >= 1"),
    ("data.num_workers", "-1", "must be >= 0"),
    ("fidelity.num_snippets", "0", "must be >= 1"),
    ("fidelity.frame_size_px", "0", "must be >= 1"),
    ("fidelity.cycle_steps", "0", "must be >= 1"),
    ("fidelity.custom_num_snippets", "0", "must be >= 1 or null"),
    ("fidelity.custom_frame_size_px", "-8", "must be >= 1 or null"),
    ("pretrain.num_snippets", "0", "must be >= 1"),
    ("pretrain.frame_size_px", "0", "must be >= 1"),
    ("pretrain.background_per_video", "-1", "must be >= 0"),
    ("pretrain.segment_margin_frac", "0.5", "must be in [0, 0.5)"),
    ("pretrain.clip_sec", "0", "must be > 0 or null"),
    ("pretrain.clips_per_range", "0", "must be >= 1"),
    ("pretrain.crop_scale_min", "0", "must be in (0, 1]"),
    ("pretrain.color_jitter", "1", "must be in [0, 1)"),
    ("train.encoder_lr_scale", "0", "must be > 0"),
    ("head.extract_batch_size", "0", "must be >= 1"),
    ("eval.iou_threshold", "1.5", "must be in [0, 1]"),
    ("eval.sigma", "0", "must be > 0"),
    ("eval.min_score", "-0.1", "must be >= 0"),
    ("eval.max_detections", "0", "must be >= 1"),
    ("eval.video_top_k", "0", "must be >= 1"),
]


def _yaml_setting(key: str, value: str) -> str:
    """``a.b.c: v`` as nested YAML."""
    parts = key.split(".")
    return "".join(f"{'  ' * i}{part}:\n" for i, part in enumerate(parts[:-1])) + f"{'  ' * (len(parts) - 1)}" \
        f"{parts[-1]}: {value}\n"


@pytest.mark.parametrize("key, value, message", BAD_VALUES)
def test_a_value_out_of_range_in_a_file_names_the_file_and_the_key(tmp_path, key, value, message):
    path = tmp_path / "run.yaml"
    path.write_text(_yaml_setting(key, value))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}: {key}: {message}")
    assert str(info.value).endswith(f"got {float(value)!r}") or str(info.value).endswith(f"got {int(value)!r}")


@pytest.mark.parametrize("key, value, message", BAD_VALUES[:8])
def test_a_value_out_of_range_in_an_override_names_the_override(key, value, message):
    with pytest.raises(ConfigError) as info:
        load_config("synthetic", [f"{key}={value}"])
    assert str(info.value).startswith(f"override '{key}={value}': {key}: {message}")


def test_the_values_at_the_edges_of_the_ranges_are_accepted():
    config = load_config(None, ["train.optim.momentum=0", "train.optim.lr_gamma=1", "train.optim.weight_decay=0",
                                "data.num_workers=0", "pretrain.crop_scale_min=1", "eval.iou_threshold=0",
                                "train.optim.epochs=1", "train.optim.lr_step_epochs=1",
                                "pretrain.optim.warmup_epochs=0"])
    assert (config.train.optim.momentum, config.train.optim.lr_gamma, config.train.optim.epochs) == (0.0, 1.0, 1)


def test_warmup_must_end_before_the_run_does():
    assert load_config(None, ["train.optim.epochs=2", "train.optim.warmup_epochs=1.5"]).train.optim.warmup_epochs == 1.5
    with pytest.raises(ConfigError, match=r"^preset 'synthetic': train\.optim\.warmup_epochs: must be < "
                                          r"train\.optim\.epochs \(2\), got 2\.0: lower it"):
        load_config("synthetic", ["train.optim.epochs=2"])  # the preset warms up for 2 epochs


def test_the_batch_must_split_into_the_accumulation_steps():
    assert load_config(None, ["head.optim.batch_size=8", "head.optim.grad_accum_steps=4"]).head.optim.batch_size == 8
    with pytest.raises(ConfigError, match=r"head\.optim\.batch_size: must be a multiple of "
                                          r"head\.optim\.grad_accum_steps \(3\), got 16"):
        load_config(None, ["head.optim.grad_accum_steps=3"])


def test_custom_fidelity_needs_both_sizes():
    config = load_config(None, ["fidelity.mode=custom", "fidelity.custom_num_snippets=50",
                                "fidelity.custom_frame_size_px=112"])
    assert (config.fidelity.custom_num_snippets, config.fidelity.custom_frame_size_px) == (50, 112)
    with pytest.raises(ConfigError, match=r"fidelity\.custom_frame_size_px: fidelity\.mode 'custom' needs "
                                          r"fidelity\.custom_num_snippets and fidelity\.custom_frame_size_px"):
        load_config(None, ["fidelity.mode=custom", "fidelity.custom_num_snippets=50"])


@pytest.mark.parametrize("override", ["eval.tiou=0.5:0.9", "eval.tiou='1.5'", "eval.tiou=0.5,high", "eval.tiou=''"])
def test_eval_tiou_is_parsed_at_load(override):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert str(info.value).startswith(f"override {override!r}: eval.tiou: ")
    assert "tIoU thresholds" in str(info.value)


def test_eval_tiou_accepts_names_ranges_and_lists():
    for tiou in ("activitynet", "thumos14", "0.5:0.95:0.05", "0.3,0.5,0.7"):
        assert load_config(None, [f"eval.tiou={tiou}"]).eval.tiou == tiou


def test_an_empty_run_name_is_refused():
    with pytest.raises(ConfigError, match=r"name: must not be empty"):
        load_config(None, ["name=' '"])


def test_sections_built_in_code_are_checked_too():
    with pytest.raises(ConfigError, match=r"^lr_step_epochs: must be >= 1, got 0$"):
        OptimConfig(lr_step_epochs=0)
    with pytest.raises(ConfigError, match=r"^lr: must be a number > 0, got '1e-3'$"):
        OptimConfig(lr="1e-3")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^custom_num_snippets: mode 'custom' needs"):
        FidelityConfig(mode="custom")
    with pytest.raises(ConfigError, match=r"^mode: 'C-medium' is not one of 'full', 'S'"):
        FidelityConfig(mode="C-medium")  # type: ignore[arg-type]
    assert RunConfig().train.optim.lr_step_epochs == 5  # the defaults pass their own checks
