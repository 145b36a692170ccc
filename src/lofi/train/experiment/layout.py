"""Where ``lofi experiment lofi-table`` keeps everything, under the experiment folder (the config's
``out_dir/name``)::

    EXP/
      source_data/                 the synthetic source dataset of the ACP encoder (experiment.acp.synthetic)
      plan/                        full_levers' memory plan (plan.json), for every seed
      seed101/
        floor/encoder.pt           the seeded random initial encoder
        acp/stage1_pretrain/       stage 1 on the source dataset (the ACP encoder)
        acp_plus/stage1_pretrain/  stage 1 on the target from the ACP encoder (ACP+), shared by the cells below
        cells/<cell>/              the cell's own stages (stage1_pretrain/ or stage2_lofi/), features/,
                                   stage3_head/, record.json (its numbers, configs, timings) and log.txt
      results.json  table.md  bars.png  curves.png

Every folder that holds a stage is a run folder (``run_dir``) of a config derived from the base one by overrides
(``out_dir``, ``name``), so each stage keeps its ``identity.json`` and ``config.yaml`` as ``lofi run`` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lofi.train.lofi_stage import STAGE_DIR as STAGE2_DIR
from lofi.train.pretrain import STAGE_DIR as STAGE1_DIR

ENCODER_FILE = "encoder.pt"
RECORD_FILE = "record.json"
LOG_FILE = "log.txt"
FEATURES_DIR = "features"
HEAD_DIR = "stage3_head"


@dataclass(frozen=True)
class ExperimentLayout:
    """The paths of one experiment under ``root``."""

    root: Path

    @property
    def source_data(self) -> Path:
        return self.root / "source_data"

    @property
    def plan_dir(self) -> Path:
        return self.root / "plan"

    def seed_dir(self, seed: int) -> Path:
        return self.root / f"seed{seed}"

    def floor_dir(self, seed: int) -> Path:
        return self.seed_dir(seed) / "floor"

    def acp_dir(self, seed: int) -> Path:
        return self.seed_dir(seed) / "acp"

    def acp_plus_dir(self, seed: int) -> Path:
        return self.seed_dir(seed) / "acp_plus"

    def cell_dir(self, seed: int, cell: str) -> Path:
        return self.seed_dir(seed) / "cells" / cell

    def floor_encoder(self, seed: int) -> Path:
        return self.floor_dir(seed) / ENCODER_FILE

    def acp_encoder(self, seed: int) -> Path:
        """The ACP encoder that stage 1 on the source dataset writes."""
        return self.acp_dir(seed) / STAGE1_DIR / ENCODER_FILE

    def acp_plus_encoder(self, seed: int) -> Path:
        return self.acp_plus_dir(seed) / STAGE1_DIR / ENCODER_FILE

    @property
    def results_json(self) -> Path:
        return self.root / "results.json"

    @property
    def table_md(self) -> Path:
        return self.root / "table.md"

    @property
    def bars_png(self) -> Path:
        return self.root / "bars.png"

    @property
    def curves_png(self) -> Path:
        return self.root / "curves.png"


def stage_folder(run_dir: Path, stage: str) -> Path:
    """The folder a stage of a run writes in (see :mod:`lofi.runtime.run_identity`'s stage names)."""
    folders = {"pretrain": run_dir / STAGE1_DIR, "lofi": run_dir / STAGE2_DIR, "extract": run_dir / FEATURES_DIR,
               "head": run_dir / HEAD_DIR, "init": run_dir, "plan": run_dir}
    return folders[stage]


def stage_encoder(run_dir: Path, stage: str) -> Path:
    """The encoder file a training stage (``pretrain``, ``lofi``, ``init``) of a run writes."""
    return stage_folder(run_dir, stage) / ENCODER_FILE
