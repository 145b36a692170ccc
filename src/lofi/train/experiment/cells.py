"""What each cell of ``lofi experiment lofi-table`` is: the encoder its stage 3 extracts with, the stage that made
that encoder, and the tasks (shared stages first) they depend on, as overrides of the base config.

Every cell ends with the same stage 3 (full-fidelity features of its encoder, then a fresh head, evaluated):

- ``floor``: the seeded random initial encoder, frozen;
- ``acp``: the ACP encoder, frozen: ``experiment.acp_weights`` / ``model.encoder_weights`` (a Kinetics
  checkpoint), or stage 1 on ``experiment.acp``'s source dataset of other classes;
- ``acp_plus``: stage 1 on the target's clips from the ACP encoder (the paper's ACP+), frozen;
- ``matched_steps``: stage 1 again from ``acp_plus``'s encoder for as many optimiser steps as stage 2 takes, frozen;
- ``S``, ``T``, ``ST``, ``C-short``, ``C-long``: stage 2 (LoFi) from ``acp_plus``'s encoder at that ``fidelity.mode``;
- ``full_levers``: stage 2 at full fidelity with the memory levers the planner picks for the budget of ST without
  levers (:mod:`lofi.train.experiment.levers`), or skipped when none fits.

Shared per seed: the floor weights, the ACP stage 1 and the ACP+ stage 1; shared by all seeds: the synthetic source
dataset and the memory plan. Nothing here reads data: the step counts of ``matched_steps`` and the plan's levers are
passed in (:func:`lofi.train.experiment.tasks.resolve` reads them once their inputs exist).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

from lofi.config import EXPERIMENT_CELLS, RunConfig
from lofi.errors import UserError
from lofi.runtime.pretrained import check_encoder_start
from lofi.train.experiment.layout import ExperimentLayout, stage_encoder

Start = Literal["floor", "acp", "acp_plus"]
Training = Literal["pretrain", "lofi"]

#: Shared tasks: the synthetic source dataset and full_levers' plan (once), then per seed the floor weights, stage 1
#: on the source dataset (ACP) and stage 1 on the target from it (ACP+).
SOURCE_DATA, LEVERS_PLAN, FLOOR_WEIGHTS, ACP_STAGE1, ACP_PLUS_STAGE1 = (
    "source_data", "full_levers_plan", "floor_weights", "acp_stage1", "acp_plus_stage1")


@dataclass(frozen=True)
class CellSpec:
    """One cell: the encoder it starts from, the stage that trains it further (None: frozen as it is) and, for
    stage 2, the ``fidelity.mode`` (``levers``: at the plan's memory levers)."""

    start: Start
    what: str  # the table's description of the encoder
    training: Training | None = None
    mode: str | None = None
    levers: bool = False


CELLS: dict[str, CellSpec] = {
    "floor": CellSpec(start="floor", what="random initial encoder (frozen)"),
    "acp": CellSpec(start="acp", what="ACP: source classes only (frozen)"),
    "acp_plus": CellSpec(start="acp_plus", what="ACP+: then target clips (frozen)"),
    "matched_steps": CellSpec(start="acp_plus", training="pretrain", what="ACP+, more stage 1 (stage 2's steps)"),
    **{mode: CellSpec(start="acp_plus", training="lofi", mode=mode, what=f"ACP+, then LoFi {mode}")
       for mode in ("S", "T", "ST", "C-short", "C-long")},
    "full_levers": CellSpec(start="acp_plus", training="lofi", mode="full", levers=True,
                            what="ACP+, then full fidelity + levers"),
}
assert tuple(CELLS) == EXPERIMENT_CELLS, "every cell of lofi.config.ExperimentCell has a spec, in order"


@dataclass(frozen=True)
class AcpSource:
    """Where the ACP encoder comes from: a checkpoint (``weights``; None: there is none), or stage 1 on a source
    dataset (``annotations`` and ``videos``), which ``synthetic`` says the experiment generates first."""

    weights: str | None = None
    annotations: str | None = None
    videos: str | None = None
    synthetic: bool = False

    @property
    def trains(self) -> bool:
        """Whether the ACP encoder is trained here (stage 1 on the source dataset)."""
        return self.annotations is not None


def acp_source(config: RunConfig, layout: ExperimentLayout) -> AcpSource:
    """The ACP source that ``config.experiment`` asks for (default: ``model.encoder_weights``)."""
    experiment = config.experiment
    acp = experiment.acp if experiment is not None else None
    if acp is None:
        weights = experiment.acp_weights if experiment is not None and experiment.acp_weights else None
        return AcpSource(weights=weights or config.model.encoder_weights)
    if acp.synthetic:
        return AcpSource(annotations=str(layout.source_data / "annotations.json"),
                         videos=str(layout.source_data / "videos"), synthetic=True)
    return AcpSource(annotations=acp.annotations, videos=acp.videos)


def start_weights(config: RunConfig, acp: AcpSource) -> tuple[str, str | None]:
    """The config key and the checkpoint that the experiment's trained encoders start from: stage 1 on the source
    dataset starts from ``model.encoder_weights``; without one, ACP+ starts from the ACP checkpoint."""
    if acp.trains:
        return "model.encoder_weights", config.model.encoder_weights
    given = config.experiment is not None and config.experiment.acp_weights is not None
    return ("experiment.acp_weights" if given else "model.encoder_weights"), acp.weights


def check_start_weights(config: RunConfig, acp: AcpSource, cells: Sequence[str]) -> None:
    """Before any task: the checkpoint of :func:`start_weights` is a file (or, without
    ``model.require_pretrained``, none), unless every cell is ``floor``, which starts from no checkpoint."""
    if any(CELLS[c].start != "floor" for c in cells if c in CELLS):
        key, weights = start_weights(config, acp)
        check_encoder_start(config, weights, key=key)


@dataclass(frozen=True)
class Task:
    """One unit of work, run in its own process: a shared stage (``cell`` False) or a cell of one seed;
    ``deps`` are the keys of the tasks that must have finished first."""

    name: str
    seed: int | None
    cell: bool
    deps: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return self.name if self.seed is None else f"seed{self.seed}/{self.name}"

    @property
    def label(self) -> str:
        """How progress lines name it: ``[seed 101] ST``."""
        return f"[{'all seeds' if self.seed is None else f'seed {self.seed}'}] {self.name}"


def plan_tasks(*, cells: Sequence[str], seeds: Sequence[int], acp: AcpSource) -> list[Task]:
    """The shared tasks the ``cells`` need, then each seed's cells, with their dependencies (in an order that
    runs every dependency before what needs it)."""
    unknown = [c for c in cells if c not in CELLS]
    if unknown:
        raise UserError(f"experiment.cells: unknown cell {unknown[0]!r}; cells: {', '.join(CELLS)}")
    if "acp" in cells and not acp.trains and acp.weights is None:
        raise UserError("experiment.cells: cell 'acp' needs an ACP encoder: set experiment.acp (a source dataset, or "
                        "{synthetic: true}) or experiment.acp_weights / model.encoder_weights (a checkpoint), or "
                        "leave the cell out")
    specs = [CELLS[c] for c in cells]
    needs_acp_plus = any(s.start == "acp_plus" for s in specs)
    needs_acp_stage1 = acp.trains and ("acp" in cells or needs_acp_plus)
    tasks: list[Task] = []
    if needs_acp_stage1 and acp.synthetic:
        tasks.append(Task(SOURCE_DATA, None, cell=False))
    if any(s.levers for s in specs):
        tasks.append(Task(LEVERS_PLAN, None, cell=False))
    for seed in seeds:
        def key(name: str) -> str:
            return Task(name, seed, cell=False).key

        if "floor" in cells:
            tasks.append(Task(FLOOR_WEIGHTS, seed, cell=False))
        if needs_acp_stage1:
            tasks.append(Task(ACP_STAGE1, seed, cell=False, deps=(SOURCE_DATA,) if acp.synthetic else ()))
        if needs_acp_plus:
            tasks.append(Task(ACP_PLUS_STAGE1, seed, cell=False,
                              deps=(key(ACP_STAGE1),) if needs_acp_stage1 else ()))
    for seed in seeds:
        for name in cells:
            spec = CELLS[name]
            start = {"floor": (FLOOR_WEIGHTS,), "acp": (ACP_STAGE1,) if acp.trains else (),
                     "acp_plus": (ACP_PLUS_STAGE1,)}[spec.start]
            deps = tuple(Task(d, seed, cell=False).key for d in start) + ((LEVERS_PLAN,) if spec.levers else ())
            tasks.append(Task(name, seed, cell=True, deps=deps))
    return tasks


@dataclass(frozen=True)
class Step:
    """One stage of a task, run inside its run-identity guard: ``stage`` (a stage of
    :data:`lofi.runtime.run_identity.STAGE_KEYS`), the overrides of the base config it runs under (its run folder
    among them), and for ``lofi`` and ``extract`` the encoder weights it starts from or extracts with."""

    stage: str
    overrides: tuple[str, ...]
    encoder: str | None = None


@dataclass(frozen=True)
class MatchedSteps:
    """``matched_steps``: stage 2 takes ``stage2_steps`` optimiser steps; stage 1, ``stage1_steps_per_epoch`` per
    epoch, runs ``epochs`` of them (the whole number nearest, at least one), its warm-up kept as the same share of
    the run as the base config's."""

    stage2_steps: int
    stage1_steps_per_epoch: int
    epochs: int
    warmup_epochs: float

    @property
    def steps(self) -> int:
        return self.epochs * self.stage1_steps_per_epoch

    def to_dict(self) -> dict[str, float]:
        return {"stage2_optimizer_steps": self.stage2_steps, "optimizer_steps": self.steps,
                "stage1_steps_per_epoch": self.stage1_steps_per_epoch, "epochs": self.epochs,
                "warmup_epochs": self.warmup_epochs}


def matched_steps(*, stage2_steps: int, stage1_steps_per_epoch: int, base_epochs: int,
                  base_warmup_epochs: float) -> MatchedSteps:
    """The stage-1 epochs nearest to ``stage2_steps`` optimiser steps (see :class:`MatchedSteps`)."""
    if stage2_steps < 1 or stage1_steps_per_epoch < 1:
        raise ValueError(f"step counts must be >= 1, got {stage2_steps} and {stage1_steps_per_epoch}")
    epochs = max(1, math.floor(stage2_steps / stage1_steps_per_epoch + 0.5))
    return MatchedSteps(stage2_steps=stage2_steps, stage1_steps_per_epoch=stage1_steps_per_epoch, epochs=epochs,
                        warmup_epochs=base_warmup_epochs * epochs / base_epochs)


def yaml_value(value: object) -> str:
    """``value`` as an override's YAML (JSON is YAML): paths quoted whatever characters they hold."""
    return json.dumps(str(value) if isinstance(value, Path) else value)


def run_folder(run_dir: Path, *, seed: int | None) -> tuple[str, ...]:
    """The overrides that make ``run_dir`` a run's folder (``out_dir/name``), with the run's ``seed``."""
    folder = (f"out_dir={yaml_value(run_dir.parent)}", f"name={yaml_value(run_dir.name)}")
    return folder if seed is None else (*folder, f"seed={seed}")


def task_steps(task: Task, *, layout: ExperimentLayout, acp: AcpSource, matched: MatchedSteps | None = None,
               lever_overrides: Sequence[str] | None = None) -> list[Step]:
    """The steps of ``task``; ``matched`` for ``matched_steps`` and ``lever_overrides`` (the plan's) for
    ``full_levers`` are needed there. The source dataset is not a stage: it has no steps."""
    seed = task.seed
    only_stage1 = ("pretrain.enabled=true", "train.enabled=false")
    if not task.cell:
        if task.name == SOURCE_DATA:
            return []
        if task.name == LEVERS_PLAN:
            return [Step("plan", (*run_folder(layout.plan_dir, seed=None), "pretrain.enabled=false",
                                  "train.enabled=true"))]
        assert seed is not None
        if task.name == FLOOR_WEIGHTS:
            return [Step("init", run_folder(layout.floor_dir(seed), seed=seed))]
        if task.name == ACP_STAGE1:
            assert acp.annotations is not None and acp.videos is not None
            source = [f"data.annotations={yaml_value(acp.annotations)}", f"data.videos={yaml_value(acp.videos)}",
                      "data.format=null", "data.cache_dir=null"]  # its own videos (ids may repeat the target's)
            if acp.synthetic:
                source += ["data.train_subset=training", "data.val_subset=validation"]
            return [Step("pretrain", (*run_folder(layout.acp_dir(seed), seed=seed), *source, *only_stage1))]
        if task.name == ACP_PLUS_STAGE1:
            start = layout.acp_encoder(seed) if acp.trains else acp.weights
            return [Step("pretrain", (*run_folder(layout.acp_plus_dir(seed), seed=seed), *only_stage1,
                                      f"model.encoder_weights={yaml_value(start)}"))]
        raise ValueError(f"unknown shared task {task.name!r}")
    assert seed is not None
    spec = CELLS[task.name]
    run_dir = layout.cell_dir(seed, task.name)
    start_encoder = {"floor": layout.floor_encoder(seed),
                     "acp": layout.acp_encoder(seed) if acp.trains else acp.weights,
                     "acp_plus": layout.acp_plus_encoder(seed)}[spec.start]
    frozen = (*run_folder(run_dir, seed=seed), f"model.encoder_weights={yaml_value(start_encoder)}",
              "pretrain.enabled=false", "train.enabled=false")
    if spec.training is None:
        return [Step("extract", frozen, encoder=str(start_encoder)), Step("head", frozen)]
    if spec.training == "pretrain":
        if matched is None:
            raise ValueError(f"cell {task.name!r} needs its step counts (matched)")
        trained = (*frozen, "pretrain.enabled=true", f"pretrain.optim.epochs={matched.epochs}",
                   f"pretrain.optim.warmup_epochs={yaml_value(matched.warmup_epochs)}")
        encoder = str(stage_encoder(run_dir, "pretrain"))
        return [Step("pretrain", trained), Step("extract", trained, encoder=encoder), Step("head", trained)]
    stage3 = (*frozen, "train.enabled=true", f"fidelity.mode={spec.mode}")
    stage2 = stage3
    if spec.levers:
        if lever_overrides is None:
            raise ValueError(f"cell {task.name!r} needs the plan's lever overrides")
        stage2 = (*stage3, *lever_overrides)  # the levers are stage 2's: stage 3 extracts as every other cell does
    encoder = str(stage_encoder(run_dir, "lofi"))
    return [Step("lofi", stage2, encoder=str(start_encoder)), Step("extract", stage3, encoder=encoder),
            Step("head", stage3)]


def task_folder(layout: ExperimentLayout, task: Task) -> Path:
    """Where ``task`` keeps its record and log: its run folder (the source dataset's folder for the data)."""
    if task.name == SOURCE_DATA:
        return layout.source_data
    if task.name == LEVERS_PLAN:
        return layout.plan_dir
    assert task.seed is not None
    if task.cell:
        return layout.cell_dir(task.seed, task.name)
    shared = {FLOOR_WEIGHTS: layout.floor_dir, ACP_STAGE1: layout.acp_dir, ACP_PLUS_STAGE1: layout.acp_plus_dir}
    return shared[task.name](task.seed)
