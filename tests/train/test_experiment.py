"""``lofi experiment lofi-table`` on tiny real synthetic videos: two cells of one seed end to end (every output file,
its numbers and configs), a rerun that recomputes nothing, a cell folder of another config refused rather than
mixed; and the cell plan (dependencies, overrides, the matched step counts), the floor weights, the source dataset
and the config section without training."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
import torch
from PIL import Image

from lofi.cli import main
from lofi.config import EXPERIMENT_CELLS, ConfigError, load_config, parse_memory_bytes
from lofi.core.fidelity import lofi_fidelities
from lofi.data.formats import load_annotations
from lofi.data.synthetic.motions import MOTION_PATTERNS
from lofi.errors import UserError
from lofi.models.memory import MemoryPrediction
from lofi.models.memory_measure import Levers
from lofi.models.memory_plan import Candidate, MemoryPlan, recommend, usable_bytes
from lofi.runtime.context import make_context
from lofi.runtime.run_identity import STAGE_KEYS, RunMismatchError, stage_identity
from lofi.train.experiment import experiment_spec, levers, run_lofi_table
from lofi.train.experiment.cells import AcpSource, Task, matched_steps, plan_tasks, task_steps, yaml_value
from lofi.train.experiment.layout import ExperimentLayout
from lofi.train.experiment.report import markdown_table, shown_thresholds, summarise
from lofi.train.experiment.runner import TaskOutcome
from lofi.train.experiment.source import make_source_dataset, source_settings
from lofi.train.experiment.stages import write_floor_encoder
from lofi.train.experiment.tasks import count_matched_steps, resolve

from _tiny import write_tiny_synthetic

SEED = 7
CELLS = "acp_plus,ST"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_tiny_synthetic(tmp_path_factory.mktemp("synth"))


def _overrides(dataset: Path, root: Path, *extra: str) -> list[str]:
    return [f"data.annotations={dataset / 'annotations.json'}", f"data.videos={dataset / 'videos'}",
            f"data.cache_dir={root / 'cache'}", f"out_dir={root}", "name=table", "device=cpu",
            "experiment.acp=null",  # the ACP encoder is model.encoder_weights (none): ACP+ is stage 1 from scratch
            "fidelity.num_snippets=8", "fidelity.frame_size_px=32", "data.frames_per_snippet=1", "data.frame_stride=1",
            "pretrain.num_snippets=1", "pretrain.frame_size_px=32", "pretrain.clip_sec=null",
            "pretrain.clips_per_range=1", "pretrain.preload_frames=false", "pretrain.background_per_video=1",
            "model.head=actionformer", "model.head_options={embed_dim: 16, num_levels: 2}", "eval.tiou=0.5,0.7,0.9",
            "pretrain.optim={optimizer: adamw, lr: 0.001, epochs: 2, batch_size: 4}",
            "train.optim={optimizer: adamw, lr: 0.0005, epochs: 1, batch_size: 2}",
            "head.optim={optimizer: adamw, lr: 0.003, epochs: 2, batch_size: 2}", *extra]


def _argv(overrides: list[str]) -> list[str]:
    return ["experiment", "lofi-table", "synthetic", *[x for o in overrides for x in ("-o", o)], "--seeds", str(SEED),
            "--cells", CELLS, "--jobs", "2"]


@pytest.fixture(scope="module")
def finished(dataset, tmp_path_factory):
    """The two cells run once (the tests below read it; the refusal test runs last)."""
    root = tmp_path_factory.mktemp("experiment")
    overrides = _overrides(dataset, root)
    lines: list[str] = []
    result = run_lofi_table("synthetic", [*overrides, f"experiment.seeds=[{SEED}]", "experiment.cells=[acp_plus, ST]"],
                            jobs=2, echo=lines.append)
    return root / "table", result, lines, overrides


def _snapshot(folder: Path, *, skip: tuple[str, ...] = ()) -> dict[str, tuple[int, str]]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in skip}


def test_two_cells_write_every_output(finished):
    exp, result, lines, _ = finished
    assert result.exit_status == 0, lines
    for cell in ("acp_plus", "ST"):
        assert f"[seed {SEED}] {cell}: start" in "\n".join(lines)
        assert re.search(rf"\[seed {SEED}\] {cell}: done in [\d.]+ s \(average mAP [\d.]+%\)", "\n".join(lines))
    records = {cell: json.loads((exp / f"seed{SEED}" / "cells" / cell / "record.json").read_text())
               for cell in ("acp_plus", "ST")}

    # table.md: one row per cell, the columns asked for, the numbers of the records
    table = (exp / "table.md").read_text().splitlines()
    header = next(i for i, line in enumerate(table) if line.startswith("| cell |"))
    assert table[header] == ("| cell | encoder | seeds | average mAP | mAP@0.5 | mAP@0.7 | mAP@0.9 | "
                             "boundary acc. (probe) |")
    rows = {row.split(" | ")[0][2:]: [c.strip() for c in row.strip("|").split("|")] for row in table[header + 2:]
            if row.startswith("|")}
    assert list(rows) == ["acp_plus", "ST"]
    for cell, row in rows.items():
        metrics = records[cell]["metrics"]
        assert len(row) == 8 and row[2] == "1"
        assert float(row[3]) == pytest.approx(100 * metrics["average_mAP"], abs=0.051)
        assert [float(v) for v in row[4:7]] == pytest.approx([100 * m for m in metrics["mAP"]], abs=0.051)
        assert 0 <= float(row[7]) <= 1
        assert float(row[7]) == pytest.approx(records[cell]["boundary_accuracy"], abs=0.0051)

    # results.json: every number, the cells' resolved configs and timings
    results = json.loads((exp / "results.json").read_text())
    assert results["seeds"] == [SEED] and results["cells"] == ["acp_plus", "ST"]
    runs = {r["name"]: r for r in results["runs"]}
    assert {r["status"] for r in runs.values()} == {"ok"} and runs["ST"]["seconds"] > 0
    for cell, record in records.items():
        head = json.loads((exp / f"seed{SEED}" / "cells" / cell / "stage3_head" / "metrics.json").read_text())
        assert runs[cell]["record"]["metrics"]["mAP"] == head["mAP"] == record["metrics"]["mAP"]
        assert results["summary"][cell]["average_mAP"]["mean"] == pytest.approx(head["average_mAP"])
        assert results["summary"][cell]["tiou"] == [0.5, 0.7, 0.9]
    acp_plus_encoder = exp / f"seed{SEED}" / "acp_plus" / "stage1_pretrain" / "encoder.pt"
    st = runs["ST"]["record"]
    assert [s["stage"] for s in st["steps"]] == ["lofi", "extract", "head"]
    assert st["config"]["fidelity"]["mode"] == "ST" and st["config"]["seed"] == SEED
    assert st["config"]["model"]["encoder_weights"] == str(acp_plus_encoder)
    assert st["config"]["out_dir"] == str(exp / f"seed{SEED}" / "cells") and st["config"]["name"] == "ST"
    assert st["steps"][0]["optimizer_steps"] == 2 and st["steps"][0]["seconds"] > 0  # 4 training videos, batch 2
    frozen = runs["acp_plus"]["record"]
    assert [s["stage"] for s in frozen["steps"]] == ["extract", "head"]
    assert frozen["config"]["train"]["enabled"] is False and frozen["config"]["pretrain"]["enabled"] is False
    assert [s["status"] for s in results["shared"]] == ["ok"] and results["shared"][0]["name"] == "acp_plus_stage1"
    # every stage ran in its own run folder, inside its guard (identity and config beside its results)
    for stage_dir in ("acp_plus/stage1_pretrain", "cells/ST/stage2_lofi", "cells/ST/features", "cells/ST/stage3_head",
                      "cells/acp_plus/features", "cells/acp_plus/stage3_head"):
        for name in ("identity.json", "config.yaml"):
            assert (exp / f"seed{SEED}" / stage_dir / name).is_file(), (stage_dir, name)

    for name in ("bars.png", "curves.png"):
        with Image.open(exp / name) as image:
            image.verify()
        with Image.open(exp / name) as image:
            assert image.format == "PNG" and image.width > 600 and image.height > 400


def test_a_rerun_recomputes_nothing(finished, capsys):
    exp, _, _, overrides = finished
    report = ("table.md", "results.json", "bars.png", "curves.png")
    before = _snapshot(exp, skip=report)
    table = (exp / "table.md").read_text()
    assert main(_argv(overrides)) == 0
    out = capsys.readouterr().out
    for task in ("acp_plus_stage1", "acp_plus", "ST"):
        assert re.search(rf"\[seed {SEED}\] {task}: reused \([\d.]+ s when it ran", out), task
    assert ": start" not in out
    assert _snapshot(exp, skip=report) == before  # no stage, record or log touched
    assert (exp / "table.md").read_text() == table


def test_matched_step_counts_are_the_steps_the_stages_run(finished):
    """Counted from the samplers without training, they equal what stage 1 and stage 2 ran in the cells above."""
    exp, _, _, overrides = finished
    spec = experiment_spec("synthetic", overrides)
    counts = count_matched_steps(spec, SEED)
    st = json.loads((exp / f"seed{SEED}" / "cells" / "ST" / "record.json").read_text())
    assert counts.stage2_steps == st["steps"][0]["optimizer_steps"] == 2
    rows = [json.loads(line) for line in (exp / f"seed{SEED}" / "acp_plus" / "stage1_pretrain" / "metrics.jsonl")
            .read_text().splitlines()]
    stage1_steps = [r["step"] for r in rows if r.get("kind") == "epoch"]
    assert counts.stage1_steps_per_epoch == stage1_steps[0] and stage1_steps[-1] == 2 * stage1_steps[0]
    assert counts.epochs == max(1, round(counts.stage2_steps / counts.stage1_steps_per_epoch))


def test_a_cell_folder_of_another_config_is_refused_not_mixed(finished, capsys):
    """Stage 2's lr changed: the ST cell's folder holds stage 2 of the old lr, so that stage refuses it (naming the
    key) and nothing there changes; acp_plus (no stage 2) is reused; the exit status says a task failed."""
    exp, _, _, overrides = finished
    st_dir = exp / f"seed{SEED}" / "cells" / "ST"
    before = _snapshot(st_dir, skip=("log.txt", ".lofi.lock"))  # the lock records its last holder
    assert main(_argv([*overrides, "train.optim.lr=0.002"])) == 3
    captured = capsys.readouterr()
    assert f"[seed {SEED}] acp_plus: reused" in captured.out
    failed = re.search(rf"\[seed {SEED}\] ST: FAILED after [\d.]+ s: (.*)", captured.out, re.S)
    assert failed and "holds results of other settings" in failed.group(1) and "train.optim.lr" in failed.group(1)
    assert f"seed{SEED}/ST" in captured.err and "did not finish" in captured.err
    assert _snapshot(st_dir, skip=("log.txt", ".lofi.lock")) == before
    row = next(line for line in (exp / "table.md").read_text().splitlines() if line.startswith("| ST |"))
    assert "| 0 | failed (seed 7)" in row


def test_the_cell_plan(tmp_path):
    layout = ExperimentLayout(tmp_path / "exp")
    source = AcpSource(annotations=str(layout.source_data / "annotations.json"),
                       videos=str(layout.source_data / "videos"), synthetic=True)
    tasks = plan_tasks(cells=EXPERIMENT_CELLS, seeds=[1, 2], acp=source)
    by_key = {t.key: t for t in tasks}
    order = [t.key for t in tasks]
    assert order[:2] == ["source_data", "full_levers_plan"]
    assert all(order.index(d) < order.index(t.key) for t in tasks for d in t.deps)  # dependencies run first
    assert by_key["seed1/acp_stage1"].deps == ("source_data",)
    assert by_key["seed2/acp_plus_stage1"].deps == ("seed2/acp_stage1",)
    assert by_key["seed1/floor"].deps == ("seed1/floor_weights",) and by_key["seed1/acp"].deps == ("seed1/acp_stage1",)
    assert all(by_key[f"seed2/{c}"].deps == ("seed2/acp_plus_stage1",)
               for c in ("acp_plus", "matched_steps", "S", "T", "ST", "C-short", "C-long"))
    assert by_key["seed2/full_levers"].deps == ("seed2/acp_plus_stage1", "full_levers_plan")
    assert sum(t.cell for t in tasks) == 2 * len(EXPERIMENT_CELLS)
    # a checkpoint for ACP: nothing to generate or train before ACP+; no ACP at all: the acp cell is refused
    checkpoint = plan_tasks(cells=["acp", "ST"], seeds=[1], acp=AcpSource(weights="kinetics.pt"))
    assert [t.key for t in checkpoint] == ["seed1/acp_plus_stage1", "seed1/acp", "seed1/ST"]
    assert checkpoint[1].deps == ()
    with pytest.raises(UserError, match="experiment.acp"):
        plan_tasks(cells=["acp"], seeds=[1], acp=AcpSource())

    # the steps: every stage's config is the base config plus overrides that name its run folder and inputs
    acp_plus = yaml_value(layout.acp_plus_encoder(1))
    steps = task_steps(by_key["seed1/ST"], layout=layout, acp=source)
    tuned = layout.cell_dir(1, "ST") / "stage2_lofi" / "encoder.pt"
    assert [(s.stage, s.encoder) for s in steps] == [("lofi", str(layout.acp_plus_encoder(1))),
                                                      ("extract", str(tuned)), ("head", None)]
    assert {"fidelity.mode=ST", f"model.encoder_weights={acp_plus}", "seed=1",
            "train.enabled=true"} <= set(steps[0].overrides)
    config = load_config("synthetic", steps[0].overrides)
    assert config.run_dir == layout.cell_dir(1, "ST") and config.fidelity.mode == "ST" and config.seed == 1
    floor = task_steps(by_key["seed2/floor"], layout=layout, acp=source)
    assert [(s.stage, s.encoder) for s in floor] == [("extract", str(layout.floor_encoder(2))), ("head", None)]
    assert task_steps(by_key["seed2/floor_weights"], layout=layout, acp=source)[0].stage == "init"
    acp_step = task_steps(by_key["seed1/acp_stage1"], layout=layout, acp=source)[0]
    acp_stage1 = load_config("synthetic", acp_step.overrides)
    assert acp_stage1.data.annotations == source.annotations and acp_stage1.run_dir == layout.acp_dir(1)
    levers = ["fidelity.mode=full", 'model.encoder_options={"checkpoint_stages": true}']
    full = task_steps(by_key["seed1/full_levers"], layout=layout, acp=source, lever_overrides=levers)
    assert set(levers) <= set(full[0].overrides) and not set(levers[1:]) & set(full[1].overrides + full[2].overrides)
    assert load_config("synthetic", full[0].overrides).model.encoder_options == {"checkpoint_stages": True}

    # matched_steps: the whole stage-1 epochs nearest stage 2's steps, the warm-up the same share of the run
    matched = matched_steps(stage2_steps=10, stage1_steps_per_epoch=4, base_epochs=12, base_warmup_epochs=1.0)
    assert (matched.epochs, matched.steps, matched.warmup_epochs) == (3, 12, 0.25)
    assert matched_steps(stage2_steps=1, stage1_steps_per_epoch=9, base_epochs=2, base_warmup_epochs=0).epochs == 1
    pretrain = task_steps(by_key["seed1/matched_steps"], layout=layout, acp=source, matched=matched)
    assert [s.stage for s in pretrain] == ["pretrain", "extract", "head"]
    config = load_config("synthetic", pretrain[0].overrides)
    assert (config.pretrain.optim.epochs, config.pretrain.optim.warmup_epochs) == (3, 0.25)
    assert config.model.encoder_weights == str(layout.acp_plus_encoder(1)) and config.pretrain.enabled


def test_floor_weights_are_seeded_reused_and_guarded(dataset, tmp_path):
    def context(seed: int):
        config = load_config("synthetic", [*_overrides(dataset, tmp_path), f"seed={seed}", "name=floor"])
        return make_context(config, progress=False)

    path = write_floor_encoder(context(1))
    again = write_floor_encoder(context(1))
    assert again == path and path.stat().st_mtime_ns == again.stat().st_mtime_ns  # reused, not written again
    other = tmp_path / "other"
    weights = torch.load(path, weights_only=True)
    config = load_config("synthetic", [*_overrides(dataset, other), "seed=1", "name=floor"])
    fresh = torch.load(write_floor_encoder(make_context(config, progress=False)), weights_only=True)
    assert all(torch.equal(weights[k], fresh[k]) for k in weights)  # the seed alone decides them
    with pytest.raises(RunMismatchError, match="seed: 1 -> 2"):
        write_floor_encoder(context(2))


def test_the_source_dataset_has_the_next_classes_and_is_reused(dataset, tmp_path):
    settings = source_settings(dataset / "annotations.json", seed=None)
    assert (settings.class_offset, settings.num_classes, settings.seed, settings.width_px) == (2, 2, 4, 64)
    folder = tmp_path / "source"
    annotations = make_source_dataset(folder, settings, workers=1)
    classes = set(load_annotations(annotations).annotations.classes)
    assert classes <= set(tuple(MOTION_PATTERNS)[2:4]) and not classes & {"circle_cw", "circle_ccw"}
    mtime = annotations.stat().st_mtime_ns
    assert make_source_dataset(folder, settings, workers=1).stat().st_mtime_ns == mtime  # reused
    with pytest.raises(UserError, match="other settings"):
        make_source_dataset(folder, source_settings(dataset / "annotations.json", seed=9), workers=1)
    with pytest.raises(UserError, match="synthetic.json"):
        source_settings(tmp_path / "elsewhere" / "annotations.json", seed=None)


#: Fingerprints main recorded for the presets before the experiment section existed (inputs {"x": "y"}).
# the synthetic preset's as of its move to the discrepancy layout and G-TAD (issue 20)
RECORDED_BEFORE = {"synthetic": {"pretrain": "30d6476ee0abf51b", "lofi": "a8ed55e1f25ff6b1",
                                 "extract": "5b21af5375732aff", "head": "479dfd72cf2b94bd"},
                   "activitynet": {"pretrain": "09b96ffd5679a494", "lofi": "3d1d476a563e4eb9",
                                   "extract": "cbd12abd4549e86e", "head": "f757742fd12e9e1e"}}
#: The settings the presets had then, where they have changed since (ActivityNet moved to the paper's 8 frames per
#: snippet and one-snippet stage-1 clips; its checkpoint path and model.require_pretrained are in no identity).
SETTINGS_BEFORE = {"synthetic": [], "activitynet": ["data.frames_per_snippet=1", "pretrain.num_snippets=8"]}


@pytest.mark.parametrize("preset", sorted(RECORDED_BEFORE))
def test_the_experiment_section_is_in_no_stage_identity(preset):
    base = load_config(preset, SETTINGS_BEFORE[preset])
    other = load_config(preset, [*SETTINGS_BEFORE[preset], "experiment.seeds=[1, 2]", "experiment.cells=[ST]",
                                 "experiment.acp_weights=k.pt", "experiment.acp=null", "model.encoder_weights=null",
                                 "model.require_pretrained=false"])
    for stage, fingerprint in RECORDED_BEFORE[preset].items():
        assert stage_identity(stage, base, {"x": "y"}).fingerprint == fingerprint, stage  # recorded runs still match
    for stage in STAGE_KEYS:
        identity = stage_identity(stage, other, {"x": "y"})
        assert identity.fingerprint == stage_identity(stage, base, {"x": "y"}).fingerprint, stage
        assert not any(key.startswith("experiment") for key in identity.config), stage


@pytest.mark.parametrize("override, message", [
    ("experiment.cells=[ST, STT]", "experiment.cells: 'STT' is not one of"),
    ("experiment.seeds=[1, 1]", "experiment.seeds: must be distinct"),
    ("experiment.seeds=101", "experiment.seeds: expected a list"),
    ("experiment.acp={synthetic: true, annotations: a.json}", "experiment.acp.synthetic: set either"),
    ("experiment.acp={annotations: a.json}", "experiment.acp.videos: a source dataset needs"),
    ("experiment.acp_weights=k.pt", "experiment.acp_weights: the ACP encoder comes from"),
    ("experiment.cell=[ST]", "did you mean 'experiment.cells'"),
])
def test_experiment_config_mistakes_name_the_key(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config("synthetic", [override])


def test_the_table_shows_the_thresholds_nearest_0_5_0_7_0_9_once():
    assert shown_thresholds([0.5 + 0.05 * i for i in range(10)]) == [0, 4, 8]
    assert shown_thresholds([0.3, 0.4, 0.5, 0.6, 0.7]) == [2, 4]  # THUMOS14: 0.7 is the nearest to 0.9 too


def _fake_plan_for_run(peaks: dict[tuple[str, str], int]):
    """A stand-in for ``plan_for_run`` (whose probes take minutes): the given peaks per (fidelity, levers), the
    planner's own recommendation for the config's budget."""
    def plan_for_run(config, *, batch_per_rank, device, cycle="C-long"):
        usable = usable_bytes(parse_memory_bytes(config.fidelity.memory), config.fidelity.memory_headroom)
        fidelities = lofi_fidelities(num_snippets=config.fidelity.num_snippets,
                                     frame_size_px=config.fidelity.frame_size_px)
        candidates = tuple(
            Candidate(fidelity=fidelities[name], levers=Levers.parse(levers), relative_seconds=1.0, fits=peak <= usable,
                      prediction=MemoryPrediction(param_bytes=peak, grad_bytes=0, optimizer_bytes=0, frames_bytes=0,
                                                  encoder_saved_bytes=0, encoder_peak_bytes=0, head_bytes=0,
                                                  head_retained_bytes=0, optimizer_step_bytes=0, seconds=1.0))
            for (name, levers), peak in peaks.items())
        return MemoryPlan(budget_bytes=parse_memory_bytes(config.fidelity.memory), batch_size=batch_per_rank,
                          frames_per_snippet=1, optimizer="adamw", encoder="e", head="h", candidates=candidates,
                          recommendation=recommend(candidates, cycle=cycle, budget_bytes=usable),
                          headroom=config.fidelity.memory_headroom)

    return plan_for_run


#: ST without levers peaks at 500: full fidelity fits it with checkpointing (first) or not at all (second).
_PEAKS = {("full", "none"): 1000, ("S", "none"): 600, ("T", "none"): 550, ("ST", "none"): 500,
          ("S", "checkpoint"): 250, ("T", "checkpoint"): 240, ("ST", "checkpoint"): 200}


@pytest.mark.parametrize("full_checkpoint_peak, fits", [(400, True), (700, False)])
def test_full_levers_plans_for_the_peak_of_st_without_levers(dataset, tmp_path, monkeypatch, full_checkpoint_peak,
                                                            fits):
    """The plan stage: budget = ST's peak without levers, the planner's full-fidelity choice as stage-2 overrides (or
    the reason none fits), in plan.json inside the run-identity guard; the cell then runs with those levers on
    stage 2 only, or is skipped with the reason, and its table row says so."""
    monkeypatch.setattr(levers, "plan_for_run", _fake_plan_for_run({**_PEAKS, ("full", "checkpoint"):
                                                                    full_checkpoint_peak}))
    overrides = _overrides(dataset, tmp_path, "experiment.cells=[full_levers]", "experiment.seeds=[1]")
    spec = experiment_spec("synthetic", overrides)
    plan_step = task_steps(Task("full_levers_plan", None, cell=False), layout=spec.layout, acp=spec.acp)[0]
    context = make_context(spec.step_config(plan_step.overrides), progress=False)
    record = levers.plan_full_levers(context)
    assert (record["budget_bytes"], record["headroom"], record["fits"]) == (500, 0.0, fits)
    path = spec.layout.plan_dir / "plan.json"
    assert json.loads(path.read_text()) == record and (spec.layout.plan_dir / "identity.json").is_file()
    mtime = path.stat().st_mtime_ns
    assert levers.plan_full_levers(context) == record and path.stat().st_mtime_ns == mtime  # reused
    with pytest.raises(RunMismatchError, match="fidelity.num_snippets"):
        levers.plan_full_levers(make_context(spec.step_config([*plan_step.overrides, "fidelity.num_snippets=16"]),
                                             progress=False))

    task = Task("full_levers", 1, cell=True, deps=("seed1/acp_plus_stage1", "full_levers_plan"))
    resolved = resolve(spec, task)
    assert resolved.info["full_levers"]["budget_bytes"] == 500
    if fits:
        assert (record["levers"], record["predicted_peak_bytes"]) == ("checkpoint", 400)
        stage2, stage3 = (load_config("synthetic", [*overrides, *s.overrides]) for s in resolved.steps[:2])
        assert stage2.fidelity.mode == stage3.fidelity.mode == "full" and stage2.train.partial_backprop is None
        assert stage2.model.encoder_options.get("checkpoint_stages") is True
        assert "checkpoint_stages" not in stage3.model.encoder_options  # stage 3 extracts as every cell does
        return
    assert resolved.skipped == record["reason"] and resolved.steps == ()
    assert "no full-fidelity lever set fits 500 B" in record["reason"]
    assert "700 B (levers checkpoint)" in record["reason"]
    outcome = TaskOutcome(task, "skipped", message=resolved.skipped, info=resolved.info)
    row = next(line for line in markdown_table(spec, summarise(["full_levers"], {task.key: outcome})).splitlines()
               if line.startswith("| full_levers |"))
    assert "| 0 | skipped (seed 1): no full-fidelity lever set fits" in row
