"""Model names and options are checked at load, against the registry and the builders' signatures: a typo, or an
option of another head, stops in a second with the key, the model and its valid options; options kept per model
name make ``-o model.head=...`` switch heads with nothing else to change."""

from __future__ import annotations

import inspect
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

import lofi
from lofi import load_config  # every check, the model options included
from lofi.config import ConfigError, ModelConfig, list_presets
from lofi.models import count_parameters, create_encoder, create_head, list_models
from lofi.models.options import HEAD_INPUTS, encoder_kwargs, head_kwargs, option_parameters

HEADS = [entry.name for entry in list_models("head")]
ENCODERS = [entry.name for entry in list_models("encoder")]
#: Options kept per head: each head's entry is used only when it is the selected head.
PER_HEAD = ("model.head_options={gtad: {hidden_dim: 32, align_dim: 32, map_dim: 16, num_samples: 4}, "
            "bmn: {hidden_dim: 32, hidden_dim_3d: 32}, actionformer: {embed_dim: 32, num_levels: 3}}")


@pytest.mark.parametrize("preset", list_presets())
@pytest.mark.parametrize("head", HEADS)
def test_every_preset_loads_with_every_registered_head(preset, head):  # its speed: benchmarks/postprocess.py
    config = load_config(preset, [f"model.head={head}"])
    assert config.model.head == head
    kept = config.model.head_options.get(head, {}) if config.model.head_options else {}
    assert head_kwargs(config.model) == kept  # only the selected head's entry (the synthetic preset sizes two)


def test_switching_the_synthetic_preset_between_heads():
    config = load_config("synthetic")
    assert config.model.head == "gtad" and head_kwargs(config.model)["hidden_dim"] == 128
    config = load_config("synthetic", ["model.head=actionformer"])
    assert config.model.head == "actionformer" and head_kwargs(config.model) == {}


@pytest.mark.parametrize("head", HEADS)
def test_options_kept_per_head_follow_the_selected_head(head):
    config = load_config("synthetic", [PER_HEAD, f"model.head={head}"])
    expected = config.model.head_options[head]
    assert head_kwargs(config.model) == expected
    built = create_head(head, in_dim=32, num_classes=3, num_snippets=16, **head_kwargs(config.model))
    default = create_head(head, in_dim=32, num_classes=3, num_snippets=16)
    assert count_parameters(built) < count_parameters(default)  # the small widths reached the builder


def test_a_head_without_an_entry_gets_its_defaults(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  head: bmn\n  head_options:\n    gtad: {hidden_dim: 64}\n")
    assert head_kwargs(load_config(path).model) == {}
    assert head_kwargs(load_config(path, ["model.head=gtad"]).model) == {"hidden_dim": 64}


def test_flat_options_of_the_selected_head_still_work():
    config = load_config("synthetic", ["model.head=gtad", "model.head_options={hidden_dim: 32, groups: 4}"])
    assert head_kwargs(config.model) == {"hidden_dim": 32, "groups": 4}


def test_flat_options_of_another_head_stop_with_the_per_head_form(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  head: gtad\n  head_options: {hidden_dim: 32, align_dim: 64}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, ["model.head=actionformer"])
    message = str(info.value)
    assert message.startswith(f"{path}: model.head_options: 'hidden_dim', 'align_dim' are not options of head "
                              f"'actionformer'; its options: embed_dim, ")
    for name in option_parameters("actionformer", "head"):
        assert name in message
    assert ("They are options of gtad: to switch heads keep options per head, e.g. model.head_options: "
            "{gtad: {hidden_dim: 32, align_dim: 64}}") in message
    assert "\n" not in message


def test_an_option_typo_names_the_key_the_model_and_the_closest_option():
    with pytest.raises(ConfigError) as info:
        load_config("synthetic", ["model.head=actionformer", "model.head_options={embed_dimm: 32}"])
    assert str(info.value).startswith("override 'model.head_options={embed_dimm: 32}': "
                                      "model.head_options.embed_dimm: 'embed_dimm' is not an option of head "
                                      "'actionformer' (did you mean 'embed_dim'?); its options: embed_dim, ")


@pytest.mark.parametrize("head", ["gtad", "bmn"])
def test_a_renamed_option_stops_with_its_new_name(head):
    with pytest.raises(ConfigError) as info:
        load_config("synthetic", [f"model.head={head}", "model.head_options={max_duration: 8}"])
    assert ("model.head_options.max_duration: 'max_duration' was renamed 'max_duration_snippets' (the same value, "
            "with its unit in the name); write model.head_options: {max_duration_snippets: 8}") in str(info.value)
    config = load_config("synthetic", [f"model.head={head}", "model.head_options={max_duration_snippets: 8}"])
    assert head_kwargs(config.model) == {"max_duration_snippets": 8}


def test_an_entry_of_a_head_not_selected_is_checked_too():
    with pytest.raises(ConfigError, match=r"model\.head_options\.bmn\.hiden_dim: 'hiden_dim' is not an option of "
                                          r"head 'bmn' \(did you mean 'hidden_dim'\?\)"):
        load_config("synthetic", ["model.head_options={actionformer: {embed_dim: 32}, bmn: {hiden_dim: 32}}"])


@pytest.mark.parametrize("override, message", [
    ("model.head=gtda", "model.head: unknown head 'gtda'; did you mean 'gtad'? registered heads: gtad, bmn, "
                        "actionformer"),
    ("model.encoder=tsm_resnet81", "model.encoder: unknown encoder 'tsm_resnet81'; did you mean 'tsm_resnet18'?"),
    ("model.head=tsm_resnet18", "model.head: unknown head 'tsm_resnet18'"),
    ("model.head_options={gtad: {hidden_dim: 32}, embed_dim: 32}",
     "model.head_options: mixes per-head entries (gtad) with options (embed_dim): put every option under its "
     "head's name, e.g. {gtad: {embed_dim: 32}}"),
    ("model.head_options={gtad: 32}", "model.head_options.gtad: expected a mapping of head 'gtad''s options, got 32"),
    ("model.head_options={gtda: {hidden_dim: 32}}",
     "model.head_options.gtda: 'gtda' is not an option of head 'gtad' (did you mean the per-head entry "
     "'gtad'?)"),
    ("model.head_options={num_snippets: 64}",
     "model.head_options.num_snippets: 'num_snippets' is not a head option: lofi gives every head in_dim"),
    ("model.encoder_options={depth: 50}",
     "model.encoder_options.depth: 'depth' is set by encoder 'tsm_resnet18_slim' itself, not an option"),
    ("model.encoder_options={frozen_stagse: 1}",
     "model.encoder_options.frozen_stagse: 'frozen_stagse' is not an option of encoder 'tsm_resnet18_slim' (did you "
     "mean 'frozen_stages'?)"),
    ("model.encoder_options={autocast: bf61}", "model.encoder_options.autocast: 'bf61' is not one of 'bf16', 'fp16'"),
    ("model.head_options={actionformer: {num_levels: 2.5}}",
     "model.head_options.actionformer.num_levels: expected an integer, got 2.5 (head 'actionformer')"),
    ("model.head_options={gtad: {proposal_labels: vidoe}}",
     "model.head_options.gtad.proposal_labels: 'vidoe' is not one of 'snippet', 'video'"),
])
def test_bad_model_names_and_options_are_named(override, message):
    with pytest.raises(ConfigError) as info:
        load_config("synthetic", [override])
    assert str(info.value).startswith(f"override {override!r}: ")
    assert message in str(info.value)


def test_encoder_options_in_either_form():
    flat = load_config("synthetic", ["model.encoder_options={frozen_stages: 2, width: 0.5}"])
    assert encoder_kwargs(flat.model) == {"frozen_stages": 2, "width": 0.5}
    per_model = ModelConfig(encoder="r2plus1d_18", encoder_options={"tsm_resnet18": {"shift_div": 4},
                                                                    "r2plus1d_18": {"frozen_stages": 1}})
    assert encoder_kwargs(per_model) == {"frozen_stages": 1}


@pytest.mark.parametrize("kind, name", [(e.kind, e.name) for e in list_models()])
def test_every_registered_builder_takes_exactly_its_listed_options(kind, name):
    params = option_parameters(name, kind)
    assert params, f"{name}: options not readable from the builder"
    assert not set(params) & set(HEAD_INPUTS)
    defaults = {o: p.default for o, p in params.items() if p.default is not inspect.Parameter.empty}
    assert defaults == {o: p.default for o, p in params.items()}  # every option has a default
    if kind == "encoder":
        create_encoder(name, **defaults)  # each listed option is accepted by the builder
    else:
        create_head(name, in_dim=64, num_classes=3, num_snippets=16, **defaults)


def test_options_a_builder_fixes_itself_are_not_listed():
    assert "depth" not in option_parameters("tsm_resnet18", "encoder")
    with pytest.raises(TypeError, match="multiple values for keyword argument 'depth'"):
        create_encoder("tsm_resnet18", depth=34)  # why: the builder passes depth itself


def _lofi(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, float]:
    """``lofi ARGS`` in a fresh process; its result and the CPU seconds it used."""
    src = str(Path(lofi.__file__).resolve().parents[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run([sys.executable, "-m", "lofi", *args], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return result, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def test_lofi_run_with_a_head_switch_and_foreign_options_stops_before_any_work(tmp_path):
    # CPU time, not wall time: on a shared machine the wall clock measures the other jobs
    result, cpu_sec = _lofi(tmp_path, "run", "activitynet", "-o", "model.head=actionformer", "-o",
                            "model.head_options={hidden_dim: 32}", "-o", f"out_dir={tmp_path / 'runs'}")
    assert result.returncode == 2
    assert "model.head_options.hidden_dim: 'hidden_dim' is not an option of head 'actionformer'" in result.stderr
    assert cpu_sec < 5.0
    assert not (tmp_path / "runs").exists()  # nothing was started


def test_lofi_run_with_a_head_switch_gets_past_the_config(tmp_path):
    result, _ = _lofi(tmp_path, "run", "synthetic", "-o", "model.head=gtad", "-o", PER_HEAD, "-o",
                      f"data.annotations={tmp_path / 'absent.json'}", "-o", f"out_dir={tmp_path / 'runs'}")
    assert result.returncode == 2
    assert result.stderr.strip().startswith(f"lofi run: {tmp_path / 'absent.json'}: annotation file not found")


def test_the_model_checks_come_from_above_the_config_layer():
    """``lofi.config`` alone checks keys, types and ranges; ``lofi.load_config`` adds the registry's checks, with the
    message still naming the override that set the value."""
    import lofi.config

    assert lofi.config.load_config(None, ["model.head=gtda"]).model.head == "gtda"  # no registry below models
    with pytest.raises(ConfigError, match=r"override 'model.head=gtda': model.head: unknown head 'gtda'; did you "
                                          r"mean 'gtad'\?"):
        load_config(None, ["model.head=gtda"])
    with pytest.raises(ConfigError, match=r"eval.tiou"):
        lofi.config.load_config(None, ["eval.tiou=0.5:0.4:0.1"])  # the tIoU parser lives in lofi.config
