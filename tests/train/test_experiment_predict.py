"""``lofi experiment lofi-table --dry-run`` on the tiny synthetic dataset: every row's fidelities, steps and peaks
are the experiment's own step counts and the memory model's predictions called directly; measured step times turn
into hours, a measurement at other settings is refused; full_levers shows its plan; nothing is trained or written.
The memory model is fitted at tiny probe sizes (seconds) in place of lofi plan's default ones (minutes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lofi.cli import main
from lofi.core.fidelity import Fidelity, lofi_fidelities
from lofi.errors import UserError
from lofi.models.memory import MemoryModel, fit_memory_model
from lofi.models.memory_measure import Levers
from lofi.models.memory_plan import format_bytes
from lofi.models.options import head_kwargs
from lofi.models.step_times import StepTimes
from lofi.train.experiment import experiment_spec, levers, predict
from lofi.train.experiment.tasks import count_matched_steps
from lofi.train.plan import PLANNED_OPTIONS, run_encoder_options

from _tiny import write_tiny_synthetic
from test_experiment import _PEAKS, _fake_plan_for_run, _overrides

SEED = 7
CELLS = "[floor, acp_plus, matched_steps, ST, C-long]"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_tiny_synthetic(tmp_path_factory.mktemp("synth"))


@pytest.fixture(scope="module")
def small_model():
    """A memory model of the run's encoder and head at tiny probes, with and without checkpointing; one per
    encoder, head (with their options) and frames per snippet, as lofi plan keeps one per process."""
    fitted: dict[str, MemoryModel] = {}

    def memory_model(config, *, device, stage):
        options = {k: v for k, v in run_encoder_options(config, stage=stage).items() if k not in PLANNED_OPTIONS}
        key = repr((config.model.encoder, config.model.head, config.data.frames_per_snippet, options,
                    head_kwargs(config.model)))
        if key not in fitted:
            fitted[key] = fit_memory_model(
                encoder=config.model.encoder, head=config.model.head,
                frames_per_snippet=config.data.frames_per_snippet, levers=(Levers(), Levers(checkpoint=True)),
                encoder_options=options, head_options=head_kwargs(config.model), device=device,
                probe_sizes=((2, 64), (2, 96), (4, 96)))
        return fitted[key]

    return memory_model


def _spec(dataset: Path, root: Path, *extra: str):
    overrides = _overrides(dataset, root, f"experiment.seeds=[{SEED}]", f"experiment.cells={CELLS}",
                           "train.optim={optimizer: adamw, lr: 0.0005, epochs: 3, batch_size: 2}", *extra)
    return experiment_spec("synthetic", overrides), overrides


def test_every_row_is_the_memory_model_and_the_experiments_step_counts(dataset, tmp_path, small_model):
    spec, _ = _spec(dataset, tmp_path)
    result = predict.predict_experiment(spec, memory_model=small_model)
    assert not (tmp_path / "table").exists() and not (tmp_path / "cache").exists()  # nothing written
    rows = {r.name: r for r in result.rows}
    assert list(rows) == ["acp_plus_stage1", "floor", "acp_plus", "matched_steps", "ST", "C-long"]
    assert rows["floor"].training is None and rows["acp_plus"].training is None
    counts = count_matched_steps(spec, SEED)  # what the experiment itself counts before matched_steps runs
    assert counts.stage2_steps == 6  # 4 training videos, batch 2, 3 epochs

    config = spec.config
    stage2 = small_model(config, device="cpu", stage="lofi")
    fidelities = lofi_fidelities(num_snippets=8, frame_size_px=32)
    st = rows["ST"].training
    assert [(f.fidelity, f.steps) for f in st.fidelities] == [(fidelities["ST"], 6)]
    assert st.batch_per_process == 2 and st.levers == Levers() and st.optimizer == "adamw"
    direct = stage2.predict(fidelity=fidelities["ST"], batch_size=2, levers=Levers(), optimizer="adamw")
    assert st.fidelities[0].prediction == direct and st.peak_bytes == direct.peak_bytes
    cycle = rows["C-long"].training  # one epoch at each of S, T, ST
    assert [(f.fidelity.name, f.steps) for f in cycle.fidelities] == [("S", 2), ("T", 2), ("ST", 2)]
    assert cycle.steps == 6 and cycle.peak_bytes == max(
        stage2.predict(fidelity=fidelities[n], batch_size=2, optimizer="adamw").peak_bytes for n in ("S", "T", "ST"))

    stage1 = small_model(config, device="cpu", stage="pretrain")
    clip = Fidelity("clip", 1, 32)
    plus, matched = rows["acp_plus_stage1"].training, rows["matched_steps"].training
    assert plus.steps == 2 * counts.stage1_steps_per_epoch and matched.steps == counts.steps
    for training in (plus, matched):
        assert training.stage == "pretrain" and training.batch_per_process == 4
        assert training.fidelities[0].prediction == stage1.predict_encoder(fidelity=clip, batch_size=4,
                                                                           optimizer="adamw")
    assert plus.fidelities[0].prediction.head_bytes == 0  # the encoder alone
    assert plus.seconds is None and st.seconds is None  # no step times: no hours invented

    text = result.table()
    assert "nothing is trained" in text and "start checkpoint: none (model.encoder_weights)" in text
    assert f"{format_bytes(direct.peak_bytes):>12}" in next(line for line in text.splitlines()
                                                              if line.startswith("ST "))
    assert "benchmarks/train_speed.py --device cuda --encoder tsm_resnet18_slim --head actionformer" in text
    assert "--batch 2 --optimizer adamw --fidelities S T ST --levers none --output step_times_none.json" in text

    # two accumulation steps per optimiser step: one video per micro-batch, the same optimiser steps
    accumulated, _ = _spec(dataset, tmp_path, "train.optim.grad_accum_steps=2")
    halves = {r.name: r for r in predict.predict_experiment(accumulated, memory_model=small_model).rows}
    assert halves["ST"].training.batch_per_process == 1 and halves["ST"].training.steps == 6
    assert halves["ST"].training.peak_bytes == stage2.predict(fidelity=fidelities["ST"], batch_size=1,
                                                              optimizer="adamw").peak_bytes


def _times(path: Path, *, batch: int, rows: dict[str, float]) -> Path:
    fidelities = lofi_fidelities(num_snippets=8, frame_size_px=32)
    return StepTimes(device="test GPU", torch="x", encoder="tsm_resnet18_slim", head="actionformer",
                     frames_per_snippet=1, batch_size=batch, optimizer="adamw",
                     seconds={(fidelities[n].num_snippets, fidelities[n].frame_size_px, "none"): sec
                              for n, sec in rows.items()}).write(path)


def test_measured_step_times_give_hours_and_other_settings_are_refused(dataset, tmp_path, small_model):
    spec, _ = _spec(dataset, tmp_path)
    path = _times(tmp_path / "times.json", batch=2, rows={"S": 1.0, "T": 2.0, "ST": 3.0})
    assert StepTimes.read(path).step_sec(lofi_fidelities(num_snippets=8, frame_size_px=32)["T"], Levers()) == 2.0
    result = predict.predict_experiment(spec, step_times=[path], memory_model=small_model)
    rows = {r.name: r for r in result.rows}
    assert rows["ST"].training.seconds == 6 * 3.0 and rows["C-long"].training.seconds == 2 * (1.0 + 2.0 + 3.0)
    assert rows["matched_steps"].training.seconds is None  # stage 1 is not measured by train_speed.py
    assert f"step s: {path}, measured on test GPU" in result.table()
    partial = _times(tmp_path / "partial.json", batch=2, rows={"ST": 3.0})
    rows = {r.name: r for r in predict.predict_experiment(spec, step_times=[partial], memory_model=small_model).rows}
    assert rows["C-long"].training.fidelities[0].step_sec is None and rows["C-long"].training.seconds is None
    rest = _times(tmp_path / "rest.json", batch=2, rows={"S": 1.0, "T": 2.0})  # two files, one per measurement
    rows = {r.name: r for r in predict.predict_experiment(spec, step_times=[partial, rest],
                                                          memory_model=small_model).rows}
    assert rows["C-long"].training.seconds == 2 * (1.0 + 2.0 + 3.0)
    other = _times(tmp_path / "batch4.json", batch=4, rows={"ST": 3.0})
    with pytest.raises(UserError) as info:
        predict.predict_experiment(spec, step_times=[other], memory_model=small_model)
    assert str(other) in str(info.value) and "batch_size: measured 4, the run's 2" in str(info.value)
    assert "--batch 2" in str(info.value)
    (tmp_path / "bad.json").write_text('{"format": "lofi.step_times/1", "rows": []}')
    with pytest.raises(ValueError, match=r"bad.json: a step-times file with a bad entry \(missing key 'device'\)"):
        StepTimes.read(tmp_path / "bad.json")


@pytest.mark.parametrize("full_checkpoint_peak, fits", [(400, True), (700, False)])
def test_full_levers_shows_the_plan_it_runs(dataset, tmp_path, small_model, monkeypatch, full_checkpoint_peak, fits):
    monkeypatch.setattr(levers, "plan_for_run", _fake_plan_for_run({**_PEAKS, ("full", "checkpoint"):
                                                                    full_checkpoint_peak}))
    spec, _ = _spec(dataset, tmp_path, "experiment.cells=[full_levers]")
    (row,) = [r for r in predict.predict_experiment(spec, memory_model=small_model).rows if r.cell]
    if not fits:
        assert row.training is None and row.note.startswith("skipped: no full-fidelity lever set fits 500 B")
        return
    full = lofi_fidelities(num_snippets=8, frame_size_px=32)["full"]
    assert [f.fidelity for f in row.training.fidelities] == [full] and row.training.levers == Levers(checkpoint=True)
    assert "budget of ST without levers (500 B)" in row.note
    assert row.training.peak_bytes == small_model(spec.config, device="cpu", stage="lofi").predict(
        fidelity=full, batch_size=2, levers=Levers(checkpoint=True), optimizer="adamw").peak_bytes


def test_the_cli_prints_the_dry_run_and_keeps_its_flags_to_it(dataset, tmp_path, small_model, monkeypatch, capsys):
    monkeypatch.setattr(predict, "memory_model_for_run", small_model)
    _, overrides = _spec(dataset, tmp_path)
    argv = ["experiment", "lofi-table", "synthetic", *[x for o in overrides for x in ("-o", o)], "--cells", "ST",
            "-o", "train.optim.grad_accum_steps=2"]
    assert main([*argv, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "nothing is trained" in out and any(line.startswith("ST ") and " 1 " in line for line in out.splitlines())
    assert main([*argv, "--step-times", str(tmp_path / "t.json")]) == 2
    assert "--step-times: only with --dry-run" in capsys.readouterr().err
    assert not (tmp_path / "table").exists()


def test_a_source_dataset_not_made_yet_leaves_its_stage_1_uncounted(dataset, tmp_path, small_model):
    spec, _ = _spec(dataset, tmp_path, "experiment.acp={synthetic: true}", "experiment.cells=[acp]")
    rows = predict.predict_experiment(spec, memory_model=small_model).rows
    assert [(r.name, r.cell) for r in rows] == [("acp_stage1", False), ("acp", True)]
    stage1 = rows[0].training
    assert stage1.stage == "pretrain" and stage1.steps is None
    assert str(spec.layout.source_data / "annotations.json") in stage1.steps_note
    assert rows[1].training is None and not spec.layout.source_data.exists()  # nothing generated
