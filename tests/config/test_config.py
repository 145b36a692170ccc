"""The config tree: presets load, overrides apply, bad keys and values are named with a suggestion."""

from __future__ import annotations

import pytest

from lofi.config import ConfigError, RunConfig, list_presets, load_config, save_config


def test_every_preset_loads_and_round_trips(tmp_path):
    assert {"synthetic", "activitynet", "hacs", "thumos14"} <= set(list_presets())
    for name in list_presets():
        config = load_config(name)
        assert isinstance(config, RunConfig) and config.name == name
        save_config(config, tmp_path / f"{name}.yaml")
        assert load_config(tmp_path / f"{name}.yaml") == config


def test_overrides_are_dotted_and_typed():
    config = load_config("synthetic", ["train.optim.lr=0.05", "fidelity.mode=T", "model.encoder_weights=w.pth",
                                       "data.cache_dir=null", "model.head_options={embed_dim: 32}"])
    assert config.train.optim.lr == 0.05 and config.fidelity.mode == "T"
    assert config.model.encoder_weights == "w.pth" and config.data.cache_dir is None
    assert config.model.head_options == {"embed_dim": 32}  # the synthetic preset's head is actionformer
    assert load_config(None, ["train.optim.lr=1"]).train.optim.lr == 1.0  # an int is a valid float


@pytest.mark.parametrize("override, message", [
    ("train.optim.lr_steps=3", "unknown key 'train.optim.lr_steps'; did you mean 'train.optim.lr_step_epochs'?"),
    ("trian.optim.lr=3", "unknown key 'trian'; did you mean 'train'?"),
    ("train.optim.lr=fast", "override 'train.optim.lr=fast': train.optim.lr: expected a number (e.g. 0.1, 1e-3), "
                            "got 'fast'"),
    ("fidelity.mode=C-medium", "fidelity.mode: 'C-medium' is not one of"),
    ("train.optim.epochs=2.5", "train.optim.epochs: expected an integer, got 2.5"),
    ("pretrain.enabled=yes please", "pretrain.enabled: expected true or false"),
    ("train.optim=3", "train.optim must be a mapping"),
    ("train.optim.lr", "expected KEY=VALUE"),
])
def test_bad_overrides_are_named(override, message):
    with pytest.raises(ConfigError) as info:
        load_config("synthetic", [override])
    assert message in str(info.value)


def test_bad_file_is_named(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  optim:\n    momentun: 0.8\n")
    with pytest.raises(ConfigError, match=r"run.yaml: unknown key 'train.optim.momentun'; did you mean "
                                          r"'train.optim.momentum'\?"):
        load_config(path)
    path.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="no such config file, and not a preset"):
        load_config(tmp_path / "absent.yaml")


def test_a_folder_named_like_a_preset_does_not_hide_it(tmp_path, monkeypatch):
    """The synthetic preset's data lives in ./synthetic/: that folder is data, not a config file."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "synthetic").mkdir()
    assert load_config("synthetic").name == "synthetic"
    (tmp_path / "synthetic").rmdir()
    (tmp_path / "synthetic").write_text("name: mine\n")  # a file of that name is the user's config
    assert load_config("synthetic").name == "mine"


def test_a_dotted_override_starts_a_null_optional_section(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("data:\n  windows: null\nfidelity:\n  num_snippets: 64\n")
    assert load_config(path).data.windows is None
    windows = load_config(path, ["data.windows.snippets_per_sec=3", "data.windows.stride_snippets=32"]).data.windows
    assert windows is not None and (windows.snippets_per_sec, windows.stride_snippets) == (3.0, 32)
    assert windows.min_inside_fraction == 0.5  # the rest from the section's defaults
    with pytest.raises(ConfigError, match="fidelity.num_snippets is a value, not a section"):
        load_config(path, ["fidelity.num_snippets.x=3"])


def test_partial_backprop_is_off_by_default_and_checked():
    assert load_config().train.partial_backprop is None
    partial = load_config(None, ["train.partial_backprop.share=0.3"]).train.partial_backprop
    assert partial is not None and (partial.share, partial.mode, partial.chunk_snippets) == (0.3, "random", 4)
    partial = load_config(None, ["train.partial_backprop={share: 0.15, mode: chunks, chunk_snippets: 8}"]).train
    assert partial.partial_backprop is not None and partial.partial_backprop.mode == "chunks"
    with pytest.raises(ConfigError, match=r"train\.partial_backprop\.share: must be in \(0, 1\]"):
        load_config(None, ["train.partial_backprop.share=0"])
    with pytest.raises(ConfigError, match=r"train\.partial_backprop\.mode: 'chunk' is not one of"):
        load_config(None, ["train.partial_backprop.mode=chunk"])
    with pytest.raises(ConfigError, match=r"unknown key 'train\.partial_backprop\.shares'; did you mean"):
        load_config(None, ["train.partial_backprop.shares=0.3"])
