"""What every stage needs: the config, the run directory, the device, the annotations and the process's rank."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from lofi.config import OptimConfig, RunConfig, save_config
from lofi.data.annotations import AnnotationSet
from lofi.data.formats import load_annotations
from lofi.data.skips import LOG_DIR, SkipLog, annotation_records
from lofi.train.builders import resolve_device


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

    def stage_dir(self, name: str) -> Path:
        path = self.run_dir / name
        if self.is_main:
            path.mkdir(parents=True, exist_ok=True)
        return path


def make_context(config: RunConfig, *, progress: bool = True) -> RunContext:
    """Load the annotations (a bad entry is an error naming it, unless ``data.on_error`` is ``skip``), resolve
    the device, read the rank from torch.distributed, and save the resolved config in the run directory."""
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
    if context.is_main:
        context.run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, context.run_dir / "config.yaml")
        if context.skip_log is not None:
            context.skip_log.record_all(annotation_records(loaded.problems))
    return context
