"""Numbers in YAML 1.2 spelling (``1e-3``, ``1E-3``, ``.5``, ``+1.0``) read as numbers, in files and in ``-o``
overrides; strings and booleans read as before; non-finite values stop where they make no sense."""

from __future__ import annotations

import pytest

from lofi import load_config
from lofi.config import ConfigError, parse_yaml, save_config
from lofi.models.options import head_kwargs


@pytest.mark.parametrize("text, number", [
    ("1e-3", 1e-3), ("1E-3", 1e-3), ("1e+3", 1e3), ("1e3", 1e3), ("-2.5e-4", -2.5e-4), ("1.0e3", 1e3),
    ("5.e-1", 0.5), (".5", 0.5), ("+1.0", 1.0), ("-.5", -0.5), ("+.5e1", 5.0), ("1_000", 1000), ("0.1", 0.1), ("3", 3),
])
def test_yaml_12_numbers_are_numbers(text, number):
    value = parse_yaml(text)
    assert value == pytest.approx(number) and not isinstance(value, (str, bool))


@pytest.mark.parametrize("text, value", [
    ("'1e-3'", "1e-3"), ("1e-3x", "1e-3x"), ("e3", "e3"), ("1e", "1e"), ("fast", "fast"), ("0.5,0.75", "0.5,0.75"),
    ("0.5:0.95:0.05", "0.5:0.95:0.05"), ("-.", "-."), ("true", True), ("false", False), ("null", None), ("nan", "nan"),
])
def test_strings_booleans_and_null_are_unchanged(text, value):
    assert parse_yaml(text) == value


def test_exponent_numbers_in_a_file_and_in_overrides(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("name: exp\ntrain:\n  optim: {lr: 1e-3, weight_decay: 5E-5}\nhead:\n  optim:\n    lr: .5\n"
                    "pretrain:\n  optim: {lr: +1.0, batch_size: 32}\neval:\n  min_score: 1e-4\n")
    config = load_config(path, ["pretrain.optim.weight_decay=1e-6", "head.optim.weight_decay=2E-2"])
    assert config.train.optim.lr == pytest.approx(1e-3) and config.train.optim.weight_decay == pytest.approx(5e-5)
    assert config.head.optim.lr == 0.5 and config.pretrain.optim.lr == 1.0
    assert config.pretrain.optim.weight_decay == pytest.approx(1e-6) and config.head.optim.weight_decay == 0.02
    assert config.eval.min_score == pytest.approx(1e-4)
    save_config(config, tmp_path / "saved.yaml")  # written and read back as the same numbers
    assert load_config(tmp_path / "saved.yaml") == config


def test_exponent_numbers_inside_model_options():
    config = load_config("synthetic", ["model.head=actionformer",
                                       "model.head_options={actionformer: {dropout: 1e-1, prior_prob: 1E-2}}"])
    assert head_kwargs(config.model) == {"dropout": pytest.approx(0.1), "prior_prob": pytest.approx(0.01)}


def test_a_quoted_number_is_still_text_where_text_is_expected():
    assert load_config(None, ["name='1e3'"]).name == "1e3"
    with pytest.raises(ConfigError, match=r"name: expected a string, got 1000.0 \(quote it to keep it as text\)"):
        load_config(None, ["name=1e3"])


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan"])
def test_non_finite_numbers_are_refused_where_meaningless(value):
    with pytest.raises(ConfigError, match=r"train\.optim\.lr: must be a finite number > 0"):
        load_config(None, [f"train.optim.lr={value}"])
    with pytest.raises(ConfigError, match=r"pretrain\.optim\.weight_decay: must be a finite number >= 0"):
        load_config(None, [f"pretrain.optim.weight_decay={value}"])


@pytest.mark.parametrize("text, expected", [("24GB", 24 * 10 ** 9), ("24GiB", 24 * 2 ** 30), ("500MB", 500 * 10 ** 6),
                                            ("1.5TB", 1_500_000_000_000), ("512 mib", 512 * 2 ** 20),
                                            ("2kB", 2000)])
def test_memory_sizes_are_decimal_gb_and_binary_gib(text, expected):
    from lofi.config import parse_memory_bytes

    assert parse_memory_bytes(text) == expected


@pytest.mark.parametrize("text", ["24", "24G", "GB", "-1GB", "0GB", "1.5 XB"])
def test_bad_memory_sizes_say_what_to_write(text):
    from lofi.config import parse_memory_bytes

    with pytest.raises(ValueError, match="memory size"):
        parse_memory_bytes(text)


def test_fidelity_mode_auto_needs_a_valid_memory_at_load():
    from lofi.config import ConfigError, load_config

    assert load_config("synthetic", ["fidelity.mode=auto", "fidelity.memory=24GB"]).fidelity.memory == "24GB"
    with pytest.raises(ConfigError, match="fidelity.memory"):
        load_config("synthetic", ["fidelity.mode=auto"])
    with pytest.raises(ConfigError, match="fidelity.memory.*memory size"):
        load_config("synthetic", ["fidelity.memory=24 bananas"])


@pytest.mark.parametrize("value", ["1", "-0.1", "1.5"])
def test_memory_headroom_is_a_share_below_one(value):
    with pytest.raises(ConfigError, match=r"fidelity\.memory_headroom: must be"):
        load_config(None, ["fidelity.mode=auto", "fidelity.memory=24GB", f"fidelity.memory_headroom={value}"])
    assert load_config(None, ["fidelity.memory_headroom=0"]).fidelity.memory_headroom == 0
