"""``lofi experiment lofi-table CONFIG --dry-run``: what each cell would train, its optimiser steps, the predicted
peak memory of its steps and, with measured step times, its hours, before anything runs.

For each cell (and each shared stage 1 the cells start from) the row names the stage that trains the encoder
(none for the frozen cells: their only training is stage 3's head on features), the fidelities it trains at, its
levers and micro-batch (each task of the experiment is one process), and per fidelity:

- **steps**: counted as the experiment counts them (:func:`~lofi.train.experiment.tasks.count_matched_steps`:
  the samplers' lengths x epochs) when the annotations are there, else left as a formula;
- **peak**: one step's predicted peak per process from the memory model that ``lofi plan`` uses
  (:func:`lofi.train.plan.memory_model_for_run`: probed on the probe device, tensors only); stage 1 is the encoder
  alone (:meth:`~lofi.models.memory.MemoryModel.predict_encoder`); ``full_levers`` shows the plan that cell runs
  (:func:`lofi.train.experiment.levers.full_levers_record`);
- **step s** and **hours**: from step-times files (:mod:`lofi.models.step_times`, written by
  ``benchmarks/train_speed.py --output``) measured at the run's settings; without them, nothing is invented.

Nothing trains, nothing is written: the memory model probes small steps in this process.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Sequence

import torch

from lofi.config import OptimConfig, RunConfig
from lofi.core.fidelity import Fidelity, FidelitySchedule, lofi_fidelities
from lofi.errors import UserError
from lofi.models.memory import MemoryModel, MemoryPrediction
from lofi.models.memory_measure import Levers
from lofi.models.memory_plan import format_bytes
from lofi.models.step_times import StepTimes
from lofi.runtime.context import make_context
from lofi.runtime.pretrained import FROM_SCRATCH, MissingWeightsError
from lofi.train import pretrain
from lofi.train.experiment import levers as full_levers
from lofi.train.experiment.cells import (ACP_PLUS_STAGE1, ACP_STAGE1, CELLS, MatchedSteps, Task, check_start_weights,
                                         start_weights, task_steps)
from lofi.train.experiment.tasks import ExperimentSpec, count_matched_steps
from lofi.train.lofi_stage import schedule_of
from lofi.train.plan import memory_model_for_run, run_levers

Stage = Literal["pretrain", "lofi"]
#: ``memory_model_for_run``'s signature: the fitted memory model of a config's stage (tests pass a smaller one).
MemoryModelFor = Callable[..., MemoryModel]
#: Overrides of the configs the steps are counted with: no cache folder is made, no frames are preloaded.
_COUNTING = ("data.cache_dir=null", "pretrain.preload_frames=false")


@dataclass(frozen=True)
class FidelityRow:
    """One fidelity a stage trains at: its optimiser steps there (None: not counted), its predicted step and the
    measured seconds of one step (None: not measured)."""

    fidelity: Fidelity
    steps: int | None
    prediction: MemoryPrediction
    step_sec: float | None

    @property
    def seconds(self) -> float | None:
        return None if self.steps is None or self.step_sec is None else self.steps * self.step_sec


@dataclass(frozen=True)
class TrainingPrediction:
    """A stage that trains the encoder: stage 1 (``pretrain``) or stage 2 (``lofi``) at its fidelities."""

    stage: Stage
    levers: Levers
    batch_per_process: int
    optimizer: str
    fidelities: tuple[FidelityRow, ...]
    steps_note: str  # how the steps were counted, or the formula when they were not

    @property
    def steps(self) -> int | None:
        counts = [f.steps for f in self.fidelities]
        return None if any(c is None for c in counts) else sum(counts)  # type: ignore[misc]

    @property
    def peak_bytes(self) -> int:
        return max(f.prediction.peak_bytes for f in self.fidelities)

    @property
    def seconds(self) -> float | None:
        times = [f.seconds for f in self.fidelities]
        return None if any(t is None for t in times) else sum(times)  # type: ignore[misc]


@dataclass(frozen=True)
class TaskPrediction:
    """One row: a cell (``cell`` True) or a shared stage, what it trains (None: nothing, its encoder is frozen), and
    a note (the frozen encoder; why ``full_levers`` is skipped)."""

    name: str
    cell: bool
    what: str
    training: TrainingPrediction | None
    note: str = ""


@dataclass(frozen=True)
class ExperimentPrediction:
    """Every row of the dry run, and what the header and footer say about them."""

    source: str
    overrides: tuple[str, ...]
    config: RunConfig
    seeds: tuple[int, ...]
    probe_device: str
    rows: tuple[TaskPrediction, ...]
    checkpoint: str  # the start checkpoint and whether it is there
    steps_counted: bool
    data_note: str
    measured: tuple[tuple[str, StepTimes], ...]  # each step-times file and what it holds

    def table(self) -> str:
        """The dry run as text (:func:`format_prediction`)."""
        return format_prediction(self)


def batch_per_process(optim: OptimConfig) -> int:
    """Items per micro-batch of an experiment task's one process: the batch over its accumulation steps (the config
    checks that they divide it)."""
    return optim.batch_size // optim.grad_accum_steps


def predict_experiment(spec: ExperimentSpec, *, device: torch.device | str = "cpu",
                       step_times: Sequence[str | Path] = (),
                       memory_model: MemoryModelFor | None = None) -> ExperimentPrediction:
    """The dry run of ``spec``'s cells, each task one process as ``lofi experiment`` runs it (its micro-batch: the
    batch over ``grad_accum_steps``), the memory model probed on ``device`` (``memory_model``: default
    :func:`memory_model_for_run`), and ``step_times`` (step-times files; a row is taken from the first that has it)
    for the hours."""
    memory_model = memory_model or memory_model_for_run
    config = spec.config
    measured = tuple((str(path), StepTimes.read(path)) for path in step_times)
    annotations = Path(config.data.annotations)
    counted = _count(spec) if annotations.exists() else None
    predictor = _Predictor(spec=spec, device=str(torch.device(device)), measured=measured,
                           matched=counted, memory_model=memory_model)
    if any(CELLS[c].training == "lofi" for c in spec.cells):  # the head at every stage-2 T, in one probe
        fidelities = lofi_fidelities(num_snippets=config.fidelity.num_snippets,
                                     frame_size_px=config.fidelity.frame_size_px)
        memory_model(config, device=predictor.device, stage="lofi").probe_heads(
            [f.num_snippets for f in fidelities.values()])
    rows = [predictor.shared(name) for name in _shared_tasks(spec)] + [predictor.cell(c) for c in spec.cells]
    key, weights = start_weights(config, spec.acp)
    try:
        check_start_weights(config, spec.acp, spec.cells)
        checkpoint = f"{weights} ({key}): found" if weights else f"none ({key}): the encoders start from random weights"
    except MissingWeightsError:
        checkpoint = (f"{weights} ({key}): NOT THERE, so the experiment stops before any work; add the file, or "
                      f"-o {key}=PATH" + (f"; from random weights: {FROM_SCRATCH}"
                                          if config.model.require_pretrained else ""))
    data_note = (f"{annotations}: steps counted from its '{config.data.train_subset}' subset" if counted else
                 f"{annotations}: not found, so the steps are formulas (N: the training items of "
                 f"'{config.data.train_subset}')")
    return ExperimentPrediction(source=spec.source, overrides=spec.overrides, config=config, seeds=spec.seeds,
                                probe_device=str(torch.device(device)), rows=tuple(rows), checkpoint=checkpoint,
                                steps_counted=counted is not None, data_note=data_note, measured=measured)


def _count(spec: ExperimentSpec) -> MatchedSteps:
    return count_matched_steps(spec, spec.seeds[0], overrides=_COUNTING)


def _shared_tasks(spec: ExperimentSpec) -> list[str]:
    """The shared stage-1 tasks the cells need (as :func:`~lofi.train.experiment.cells.plan_tasks` plans them)."""
    starts = {CELLS[c].start for c in spec.cells}
    needs_plus = "acp_plus" in starts
    return ([ACP_STAGE1] if spec.acp.trains and ("acp" in starts or needs_plus) else []) + \
        ([ACP_PLUS_STAGE1] if needs_plus else [])


@dataclass
class _Predictor:
    """Builds the rows: the configs each task trains with, their memory and their steps."""

    spec: ExperimentSpec
    device: str
    measured: tuple[tuple[str, StepTimes], ...]
    matched: MatchedSteps | None  # the counts on the target (None: its annotations are not there)
    memory_model: MemoryModelFor

    def shared(self, name: str) -> TaskPrediction:
        spec = self.spec
        seed = spec.seeds[0]
        if name == ACP_STAGE1:
            step = task_steps(Task(ACP_STAGE1, seed, cell=False), layout=spec.layout, acp=spec.acp)[0]
            config = spec.step_config(step.overrides)
            source = Path(config.data.annotations)
            steps, note = None, (f"{config.pretrain.optim.epochs} x ceil(N / {config.pretrain.optim.batch_size}), N: "
                                 f"the source dataset's training clips ({source} is made by the experiment)")
            if source.exists():
                counting = make_context(spec.step_config([*step.overrides, *_COUNTING]), progress=False)
                per_epoch = pretrain.optimizer_steps_per_epoch(counting)
                steps, note = config.pretrain.optim.epochs * per_epoch, "counted"
            return TaskPrediction(ACP_STAGE1, False, "stage 1 on the source dataset (the ACP encoder)",
                                  self._stage1(config, steps, note))
        config = spec.config
        epochs, batch = config.pretrain.optim.epochs, config.pretrain.optim.batch_size
        if self.matched is None:
            steps, note = None, f"{epochs} x ceil(N / {batch}), N: training clips"
        else:
            steps, note = epochs * self.matched.stage1_steps_per_epoch, "counted"
        start = "the ACP encoder" if spec.acp.trains else (spec.acp.weights or "random weights")
        return TaskPrediction(ACP_PLUS_STAGE1, False, f"stage 1 on the target from {start} (ACP+)",
                              self._stage1(config, steps, note))

    def cell(self, name: str) -> TaskPrediction:
        spec, cell = self.spec, CELLS[name]
        if cell.training is None:
            what = cell.what
            if name == "acp" and not spec.acp.trains:
                what = f"ACP: the checkpoint {spec.acp.weights} (frozen)"
            return TaskPrediction(name, True, what, None, note="frozen: only stage 3 trains (a head on features)")
        if cell.training == "pretrain":
            steps, note = None, "stage 2's steps, in whole stage-1 epochs"
            if self.matched is not None:
                steps, note = self.matched.steps, (f"{self.matched.epochs} stage-1 epochs, nearest stage 2's "
                                                   f"{self.matched.stage2_steps} steps")
            return TaskPrediction(name, True, cell.what, self._stage1(spec.config, steps, note))
        step = task_steps(Task(name, spec.seeds[0], cell=True), layout=spec.layout, acp=spec.acp,
                          lever_overrides=())[0]  # the levers come from the plan below
        config = spec.step_config(step.overrides)
        if not cell.levers:
            return TaskPrediction(name, True, cell.what, self._stage2(config))
        batch = batch_per_process(config.train.optim)
        record = full_levers.full_levers_record(config, batch_per_rank=batch, device=self.device)
        if not record["fits"]:
            return TaskPrediction(name, True, cell.what, None, note=f"skipped: {record['reason']}")
        planned = spec.step_config([*step.overrides, *record["overrides"]])
        budget = format_bytes(record["budget_bytes"])
        return TaskPrediction(name, True, cell.what, self._stage2(planned),
                              note=f"levers for the budget of ST without levers ({budget})")

    def _stage1(self, config: RunConfig, steps: int | None, note: str) -> TrainingPrediction:
        optim = config.pretrain.optim
        batch = batch_per_process(optim)
        levers = run_levers(config, stage="pretrain")
        fidelity = Fidelity("clip", config.pretrain.num_snippets, config.pretrain.frame_size_px)
        model = self.memory_model(config, device=self.device, stage="pretrain")
        prediction = _predict(lambda: model.predict_encoder(fidelity=fidelity, batch_size=batch, levers=levers,
                                                            optimizer=optim.optimizer), levers)
        return TrainingPrediction("pretrain", levers, batch, optim.optimizer,
                                  (FidelityRow(fidelity, steps, prediction, None),), note)

    def _stage2(self, config: RunConfig) -> TrainingPrediction:
        optim = config.train.optim
        batch = batch_per_process(optim)
        levers = run_levers(config)
        schedule = schedule_of(config.fidelity)
        model = self.memory_model(config, device=self.device, stage="lofi")
        for path, times in self.measured:
            wrong = times.mismatches(encoder=config.model.encoder, head=config.model.head,
                                     frames_per_snippet=config.data.frames_per_snippet, batch_size=batch,
                                     optimizer=optim.optimizer)
            if wrong:
                raise UserError(f"{path}: measured at other settings than this run's stage 2 ({'; '.join(wrong)}); "
                                f"measure again with {train_speed_command(config, batch)}")
        total = None if self.matched is None else self.matched.stage2_steps
        counts = _steps_per_fidelity(schedule, total_steps=total, epochs=optim.epochs)
        rows = []
        for name, fidelity in schedule.fidelities.items():
            prediction = _predict(lambda: model.predict(fidelity=fidelity, batch_size=batch, levers=levers,
                                                        optimizer=optim.optimizer), levers)
            step_sec = next((sec for _, times in self.measured
                             if (sec := times.step_sec(fidelity, levers)) is not None), None)
            rows.append(FidelityRow(fidelity, None if counts is None else counts[name], prediction, step_sec))
        kind = "windows with an instance" if config.data.windows is not None else "videos"
        note = "counted" if total is not None else f"{optim.epochs} x ceil(N / {optim.batch_size}), N: training {kind}"
        return TrainingPrediction("lofi", levers, batch, optim.optimizer, tuple(rows), note)


def _predict(call: Callable[[], MemoryPrediction], levers: Levers) -> MemoryPrediction:
    try:
        return call()
    except KeyError:
        raise UserError(f"levers {levers.name}: the memory model probes checkpointing, bf16 autocast and partial "
                        f"back-prop at 0.3 (lofi plan's levers), not these; predict with those levers") from None


def _steps_per_fidelity(schedule: FidelitySchedule, *, total_steps: int | None,
                        epochs: int) -> dict[str, int] | None:
    """The optimiser steps at each of the schedule's fidelities over ``total_steps`` steps of ``epochs`` epochs."""
    if total_steps is None:
        return None
    per_epoch = total_steps // epochs
    counts = {name: 0 for name in schedule.fidelities}
    for step in range(total_steps):
        counts[schedule.at(epoch=step // per_epoch, step=step).name] += 1
    return counts


def train_speed_command(config: RunConfig, batch: int, *, fidelities: Sequence[str] = ("full", "S", "T", "ST"),
                        levers: Sequence[str] = ("none",), output: str = "step_times.json") -> str:
    """The ``benchmarks/train_speed.py`` line that measures ``config``'s stage-2 steps at ``batch`` per process."""
    args = ["python", "benchmarks/train_speed.py", "--device", "cuda", "--encoder", config.model.encoder,
            "--head", config.model.head, "--num-snippets", str(config.fidelity.num_snippets),
            "--frame-size", str(config.fidelity.frame_size_px),
            "--frames-per-snippet", str(config.data.frames_per_snippet), "--batch", str(batch),
            "--optimizer", config.train.optim.optimizer, "--fidelities", *fidelities, "--levers", *levers,
            "--output", output]
    return shlex.join(args)


# -- the text ---------------------------------------------------------------------------------------------------
_HEADER = (f"{'task':<16} {'trains':<7} {'fidelity':<8} {'T x px':>9} {'levers':<18} {'batch':>5} {'steps':>9} "
           f"{'peak/process':>12} {'step s':>7} {'hours':>8}")


def format_prediction(prediction: ExperimentPrediction) -> str:
    """The header (model, fidelity, checkpoint, data), one line per (row, fidelity), then the footer."""
    config = prediction.config
    model, full = config.model, config.fidelity
    seeds = ", ".join(map(str, prediction.seeds))
    command = shlex.join([prediction.source, *[x for o in prediction.overrides for x in ("-o", o)]])
    lines = [f"lofi experiment lofi-table {command} --dry-run: a prediction; nothing is trained",
             f"{model.encoder} + {model.head}, {config.data.frames_per_snippet} frame(s) per snippet, full fidelity "
             f"{full.num_snippets} x {full.frame_size_px} px; one process per task (batch: per micro-batch, the "
             f"batch over grad_accum_steps); seeds {seeds} (each runs every row once)",
             f"start checkpoint: {prediction.checkpoint}",
             f"data: {prediction.data_note}", "", _HEADER]
    for row in prediction.rows:
        lines.extend(_row_lines(row))
    lines.append("")
    lines.extend(_footer(prediction))
    return "\n".join(lines)


def _row_lines(row: TaskPrediction) -> list[str]:
    training = row.training
    trains = "-" if training is None else {"pretrain": "stage 1", "lofi": "stage 2"}[training.stage]
    if training is None:
        return [f"{row.name:<16} {trains:<7} {row.note}  [{row.what}]"]
    lines = []
    for i, f in enumerate(training.fidelities):
        first = i == 0
        steps = "-" if f.steps is None else f"{f.steps:,}"
        lines.append(f"{row.name if first else '':<16} {trains if first else '':<7} {f.fidelity.name:<8} "
                     f"{f'{f.fidelity.num_snippets} x {f.fidelity.frame_size_px}':>9} "
                     f"{training.levers.name if first else '':<18} "
                     f"{str(training.batch_per_process) if first else '':>5} {steps:>9} "
                     f"{format_bytes(f.prediction.peak_bytes):>12} {_number(f.step_sec, 3):>7} "
                     f"{_number(None if f.seconds is None else f.seconds / 3600, 1):>8}")
    if len(training.fidelities) > 1:
        steps = "-" if training.steps is None else f"{training.steps:,}"
        seconds = training.seconds
        lines.append(f"{'':<16} {'':<7} {'all':<8} {'':>9} {'':<18} {'':>5} {steps:>9} "
                     f"{format_bytes(training.peak_bytes):>12} {'':>7} "
                     f"{_number(None if seconds is None else seconds / 3600, 1):>8}")
    notes = [n for n in (training.steps_note if training.steps_note != "counted" else "", row.note) if n]
    if notes:
        lines.append(f"{'':<16} {'':<7} ({'; '.join(notes)})  [{row.what}]")
    else:
        lines.append(f"{'':<16} {'':<7} [{row.what}]")
    return lines


def _number(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _footer(prediction: ExperimentPrediction) -> list[str]:
    config = prediction.config
    stage2 = [r.training for r in prediction.rows if r.training is not None and r.training.stage == "lofi"]
    lines = [f"peak/process: the memory model's tensor bytes of one training step (probed on "
             f"{prediction.probe_device}; lofi plan's model); a CUDA process needs more (its context, the "
             f"allocator's fragmentation): keep about 10% free, as lofi plan does",
             f"stage 3 (every cell): features at {config.fidelity.num_snippets} x {config.fidelity.frame_size_px} px "
             f"with the frozen encoder (no gradients), then a fresh {config.model.head} head for "
             f"{config.head.optim.epochs} epochs: not in the memory model"]
    if not prediction.measured:
        groups: dict[str, list[str]] = {}  # the stage-2 fidelities of each lever combination
        for training in stage2:
            names = groups.setdefault(training.levers.name, [])
            names.extend(f.fidelity.name for f in training.fidelities if f.fidelity.name not in names)
        batch = stage2[0].batch_per_process if stage2 else batch_per_process(config.train.optim)
        lines.append("step s, hours: no step times given, so none are predicted; measure stage 2's steps on your "
                     "GPU (one line per lever combination)")
        order = ("full", "S", "T", "ST")
        for name, fidelities in sorted(groups.items(), key=lambda item: (item[0] != "none", item[0])):
            lines.append("  " + train_speed_command(config, batch, fidelities=sorted(fidelities, key=order.index),
                                                    levers=(name,), output=f"step_times_{name}.json"))
        lines.append("  then add --step-times FILE for each (stage-1 steps are not measured by train_speed.py)")
    else:
        for path, times in prediction.measured:
            lines.append(f"step s: {path}, measured on {times.device} (torch {times.torch})")
        lines.append("hours = steps x step s, per seed (stage-1 steps are not measured by train_speed.py)")
        total = [r.training.seconds for r in prediction.rows if r.training is not None]
        if total and all(t is not None for t in total):
            hours = sum(total) * len(prediction.seeds) / 3600  # type: ignore[arg-type]
            lines.append(f"encoder training of every row x {len(prediction.seeds)} seed(s): {hours:.1f} hours "
                         f"(stage 3 not counted)")
    return lines


__all__ = ["ExperimentPrediction", "FidelityRow", "TaskPrediction", "TrainingPrediction", "batch_per_process",
           "format_prediction", "predict_experiment", "train_speed_command"]
