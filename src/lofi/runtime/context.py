"""What every stage needs: the config, the run directory, the device, the annotations and the process's rank."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ContextManager

import torch
import torch.distributed as dist

from lofi.config import OptimConfig, RunConfig
from lofi.data.annotations import AnnotationSet
from lofi.data.formats import load_annotations
from lofi.data.skips import LOG_DIR, SkipLog, annotation_records
from lofi.runtime.distributed import broadcast_object
from lofi.runtime.run_identity import StageStart, dataset_inputs, stage_guard, stage_identity

#: What a mismatch message offers besides ``--no-resume`` for folders inside the run directory.
RUN_DIR_HINT = ("run in another folder (-o out_dir=DIR or -o name=NAME); note that `lofi run --no-resume` starts "
                "all its stages over, while `lofi train-head --features RUN_DIR/features_lofi --out DIR` reruns "
                "only a head")
OUT_HINT = "write to another folder (--out DIR)"


@dataclass
class RunContext:
    """One process's view of a run."""

    config: RunConfig
    run_dir: Path
    device: torch.device
    annotations: AnnotationSet
    rank: int = 0
    world_size: int = 1
    progress: bool = True
    skip_log: SkipLog | None = None  # what --skip-invalid left out (None: nothing may be skipped)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.annotations.classes

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def subset(self, name: str) -> AnnotationSet:
        """The videos of subset ``name`` that have a video file to read (all of them are checked at load)."""
        videos = self.annotations.subset(name)
        if not len(videos):
            raise ValueError(f"{self.config.data.annotations}: no video in subset {name!r} "
                             f"(subsets present: {', '.join(sorted({v.subset for v in self.annotations}))})")
        return videos

    def batch_per_rank(self, optim: OptimConfig) -> int:
        """Items per micro-batch on this process: the global batch split over processes and accumulation."""
        share, rest = divmod(optim.batch_size, self.world_size * optim.grad_accum_steps)
        if share < 1 or rest:
            raise ValueError(f"batch_size {optim.batch_size} must be a multiple of processes x grad_accum_steps "
                             f"({self.world_size} x {optim.grad_accum_steps})")
        return share

    def data_inputs(self, *, videos: bool = True) -> dict[str, str]:
        """Digests of the annotations and (``videos``) of the training and evaluation videos' files."""
        data = self.config.data
        ids = [v.video_id for v in self.annotations.subset(data.train_subset, data.val_subset)] if videos else None
        return dataset_inputs(self.config, ids)

    def guard(self, folder: Path, stage: str, *, inputs: dict[str, str], resume: bool,
              subsets: tuple[str, ...] | None = None) -> ContextManager[StageStart]:
        """:func:`~lofi.runtime.run_identity.stage_guard` for ``stage`` in ``folder``: the folder's lock, and its
        results checked against (or replaced by) this config's identity; every process waits until it is ready."""
        self.check_stage_settings(subsets)  # before anything in the folder may be replaced
        identity = stage_identity(stage, self.config, inputs)
        inside = Path(os.path.abspath(folder)).is_relative_to(os.path.abspath(self.run_dir))
        return stage_guard(folder, identity, self.config, resume=resume, is_main=self.is_main,
                           new_folder_hint=RUN_DIR_HINT if inside else OUT_HINT, share=broadcast_object)

    def check_stage_settings(self, subsets: tuple[str, ...] | None = None) -> None:
        """Fail now, not after ``--no-resume`` has cleared a folder: the stage's ``subsets`` (default: the
        training and evaluation subsets) hold videos, and every stage's batch splits over the processes and
        accumulation steps."""
        data = self.config.data
        for name in (data.train_subset, data.val_subset) if subsets is None else subsets:
            self.subset(name)
        for optim in (self.config.pretrain.optim, self.config.train.optim, self.config.head.optim):
            self.batch_per_rank(optim)

    def stage_dir(self, name: str) -> Path:
        path = self.run_dir / name
        if self.is_main:
            path.mkdir(parents=True, exist_ok=True)
        return path


def make_context(config: RunConfig, *, progress: bool = True) -> RunContext:
    """Load the annotations (a bad entry is an error naming it, unless ``data.on_error`` is ``skip``), resolve
    the device and read the rank from torch.distributed. Nothing is written but the skip log (with ``on_error``
    ``skip``): each stage records its config beside its outputs when it starts for real (:meth:`RunContext.guard`)."""
    device = resolve_device(config.device)
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", torch.cuda.current_device())
    skipping = config.data.on_error == "skip"
    loaded = load_annotations(config.data.annotations, format=config.data.format,
                              on_invalid="skip" if skipping else "raise")
    context = RunContext(config=config, run_dir=config.run_dir, device=device, annotations=loaded.annotations,
                         rank=rank, world_size=world, progress=progress and rank == 0,
                         skip_log=SkipLog(config.run_dir / LOG_DIR) if skipping else None)
    if context.is_main and context.skip_log is not None:
        context.skip_log.record_all(annotation_records(loaded.problems))
    return context


def resolve_device(name: str) -> torch.device:
    """``"auto"``: CUDA when available, else CPU; ``"cuda"`` without a GPU is an error that says so."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but torch sees no GPU; use device: auto or cpu")
    return torch.device(name)
