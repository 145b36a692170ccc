"""The real-data presets never start their encoder from random weights by accident: ``model.require_pretrained``
stops ``lofi pretrain``, ``lofi run`` and ``lofi experiment lofi-table`` before any work when the Kinetics checkpoint
is not there (naming the file and the two ways on), an explicit opt-out gets past it, and the synthetic preset (from
scratch) is unaffected. Every case stops before reading data, so each takes well under a second."""

from __future__ import annotations

from pathlib import Path

import pytest

from lofi.cli import main
from lofi.config import ConfigError, load_config
from lofi.runtime.pretrained import FROM_SCRATCH, MissingWeightsError, check_encoder_start
from lofi.train.experiment import experiment_spec
from lofi.train.experiment.cells import check_start_weights

CHECKPOINT = "data/checkpoints/TSM_kinetics_RGB_resnet18_shift8_blockres_avg_segment8_e50.pth"
REAL_PRESETS = ("activitynet", "hacs", "thumos14")


@pytest.mark.parametrize("preset", REAL_PRESETS)
def test_the_real_presets_name_their_checkpoint_and_the_papers_protocol(preset):
    config = load_config(preset)
    assert config.model.require_pretrained and config.model.encoder_weights == CHECKPOINT
    assert (config.model.encoder, config.model.head, config.data.frames_per_snippet) == ("tsm_resnet18", "gtad", 8)
    assert config.fidelity.frame_size_px == 224 and config.experiment is not None
    assert config.experiment.acp is None and config.experiment.acp_weights is None  # ACP: the checkpoint itself
    assert not load_config("synthetic").model.require_pretrained  # the CPU demo trains from scratch


@pytest.mark.parametrize("argv", [["pretrain", "activitynet"], ["run", "hacs"],
                                  ["experiment", "lofi-table", "thumos14"]])
def test_a_missing_checkpoint_stops_before_any_work(argv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the presets' relative paths: nothing of them exists here
    assert main([*argv, "-o", f"out_dir={tmp_path / 'runs'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lofi {' '.join(argv[:-1])}: model.encoder_weights: {CHECKPOINT}: not found")
    assert "model.require_pretrained" in err and FROM_SCRATCH in err and "-o model.encoder_weights=PATH" in err
    assert "annotation" not in err  # refused before the annotations were read
    assert not (tmp_path / "runs").exists()


def test_null_weights_alone_are_refused_and_none_is_not_a_file_name(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["pretrain", "activitynet", "-o", "model.encoder_weights=null"]) == 2
    err = capsys.readouterr().err
    assert "model.encoder_weights: null, but model.require_pretrained is true" in err and FROM_SCRATCH in err
    with pytest.raises(ConfigError) as info:
        load_config("activitynet", ["model.encoder_weights=none"])
    message = str(info.value)
    assert "override 'model.encoder_weights=none'" in message and "model.encoder_weights=null" in message
    with pytest.raises(ConfigError, match="experiment.acp_weights"):
        load_config("activitynet", ["experiment.acp_weights=None"])


def test_the_opt_out_and_a_present_checkpoint_get_past_the_check(tmp_path, capsys, monkeypatch):
    """Both go on to the next thing a run needs, the annotations (absent here)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "checkpoints").mkdir(parents=True)
    for extra in (FROM_SCRATCH.replace("-o ", "").split(), []):
        if not extra:
            (tmp_path / CHECKPOINT).write_bytes(b"weights")  # only its presence is checked before the data
        assert main(["run", "activitynet", *[x for o in extra for x in ("-o", o)]]) == 2
        err = capsys.readouterr().err
        assert "annotation file not found" in err and "encoder_weights" not in err, extra
    assert main(["run", "synthetic", "-o", f"data.annotations={tmp_path / 'absent.json'}"]) == 2
    assert "annotation file not found" in capsys.readouterr().err  # from scratch, as before


def test_a_folder_or_a_missing_file_is_refused_with_or_without_the_flag(tmp_path):
    folder = load_config("synthetic", [f"model.encoder_weights={tmp_path}"])
    with pytest.raises(MissingWeightsError, match="is a folder, not a weights file; check the path"):
        check_encoder_start(folder, folder.model.encoder_weights)
    check_encoder_start(load_config("synthetic"), None)  # from scratch: allowed without the flag
    with pytest.raises(MissingWeightsError, match=r"model.encoder_weights: null, but model.require_pretrained"):
        check_encoder_start(load_config("synthetic", ["model.require_pretrained=true"]), None)


def test_the_experiment_checks_the_checkpoint_its_encoders_start_from(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = experiment_spec("activitynet")
    check_start_weights(spec.config, spec.acp, ["floor"])  # the random encoder alone needs no checkpoint
    with pytest.raises(MissingWeightsError, match=f"model.encoder_weights: {CHECKPOINT}: not found"):
        check_start_weights(spec.config, spec.acp, ["floor", "C-long"])
    other = experiment_spec("activitynet", ["experiment.acp_weights=kinetics.pt"])
    with pytest.raises(MissingWeightsError, match="experiment.acp_weights: kinetics.pt: not found"):
        check_start_weights(other.config, other.acp, ["acp"])
    Path("kinetics.pt").write_bytes(b"weights")
    check_start_weights(other.config, other.acp, ["acp", "ST"])
