"""``lofi experiment lofi-table``: the same stage 3 (full-fidelity features, a fresh head, evaluated) after each
cell's encoder (:mod:`.cells`), per seed, with the stages the cells share run once per seed and reused on a rerun
(:mod:`.runner`, :mod:`.tasks`), then the table, the JSON and the plots (:mod:`.report`). Its dry run
(:mod:`.predict`) says what each cell would train, and the predicted memory and time, before anything runs.

    run_lofi_table("synthetic", ["data.annotations=...", "experiment.seeds=[101, 102]"], jobs=2)
    print(predict_lofi_table("activitynet", ["train.optim.grad_accum_steps=8"]).table())
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from lofi.config import ExperimentConfig
from lofi.runtime.configs import load_run_config
from lofi.train.experiment.cells import acp_source, check_start_weights, plan_tasks
from lofi.train.experiment.layout import ExperimentLayout
from lofi.train.experiment.report import write_report
from lofi.train.experiment.runner import Echo, TaskOutcome, run_tasks
from lofi.train.experiment.tasks import ExperimentSpec

if TYPE_CHECKING:
    from lofi.train.experiment.predict import ExperimentPrediction

#: The exit status when the experiment finished but some tasks failed (or could not run because of one).
EXIT_TASKS_FAILED = 3


@dataclass(frozen=True)
class ExperimentResult:
    """What ran: every task's outcome, the files written, and the exit status (0, or :data:`EXIT_TASKS_FAILED`)."""

    outcomes: dict[str, TaskOutcome]
    written: list[Path]
    table: str

    @property
    def failed(self) -> list[str]:
        return [key for key, o in self.outcomes.items() if o.status in ("failed", "blocked")]

    @property
    def exit_status(self) -> int:
        return EXIT_TASKS_FAILED if self.failed else 0


def experiment_spec(source: str, overrides: Sequence[str] = ()) -> ExperimentSpec:
    """The experiment of config ``source`` (a YAML file or a preset) with ``overrides``: its folder is the config's
    ``out_dir/name``; ``experiment.seeds`` and ``experiment.cells`` say what runs."""
    config = load_run_config(source, overrides)
    experiment = config.experiment or ExperimentConfig()
    layout = ExperimentLayout(config.run_dir)
    return ExperimentSpec(source=str(source), overrides=tuple(overrides), config=config, layout=layout,
                          acp=acp_source(config, layout), seeds=tuple(experiment.seeds), cells=tuple(experiment.cells))


def run_lofi_table(source: str, overrides: Sequence[str] = (), *, jobs: int = 1,
                   echo: Echo = print) -> ExperimentResult:
    """Run (or reuse) every task of the experiment, up to ``jobs`` at once, and write its report."""
    spec = experiment_spec(source, overrides)
    check_start_weights(spec.config, spec.acp, spec.cells)  # model.require_pretrained: not from random weights
    tasks = plan_tasks(cells=spec.cells, seeds=spec.seeds, acp=spec.acp)
    cells = sum(t.cell for t in tasks)
    echo(f"lofi experiment lofi-table: {_count(len(spec.cells), 'cell')} x {_count(len(spec.seeds), 'seed')} "
         f"({_count(cells, 'cell run')}, {_count(len(tasks) - cells, 'shared stage')}), {jobs} at a time, in "
         f"{spec.layout.root}")
    outcomes = run_tasks(spec, tasks, jobs=jobs, echo=echo)
    written = write_report(spec, outcomes)
    return ExperimentResult(outcomes=outcomes, written=written, table=spec.layout.table_md.read_text(encoding="utf-8"))


def predict_lofi_table(source: str, overrides: Sequence[str] = (), *, device: str = "cpu",
                       step_times: Sequence[str | Path] = ()) -> ExperimentPrediction:
    """The dry run (:mod:`.predict`): per cell, what it trains, its steps, the predicted peak memory per process and,
    with ``step_times`` files, its hours; nothing is trained or written."""
    from lofi.train.experiment.predict import predict_experiment

    return predict_experiment(experiment_spec(source, overrides), device=device,
                              step_times=step_times)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


__all__ = ["EXIT_TASKS_FAILED", "ExperimentResult", "experiment_spec", "predict_lofi_table", "run_lofi_table"]
