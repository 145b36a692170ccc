"""Running one step of a task (a stage, inside its run-identity guard), and telling whether a step has finished
already under the same identity (so that the experiment reuses it without opening it again).

A step's folder follows from its config's run folder (:func:`lofi.train.experiment.layout.stage_folder`); its
identity is what the stage itself records (:func:`lofi.runtime.run_identity.stage_identity` over the same inputs
the stage digests: :func:`~lofi.train.pretrain.pretrain_inputs`, ...). A folder that holds results of another
identity is never reused here: the stage's own guard then refuses it, naming what differs.
"""

from __future__ import annotations

from pathlib import Path

from lofi.infer.extract import extract_features, extract_inputs
from lofi.runtime.builders import build_encoder, save_encoder
from lofi.runtime.context import RunContext
from lofi.runtime.run_identity import (RunMismatchError, StageIdentity, is_complete, read_identity,
                                       stage_identity)
from lofi.train.engine import seed_everything
from lofi.train.experiment.cells import Step
from lofi.train.experiment.layout import ENCODER_FILE, FEATURES_DIR, stage_folder
from lofi.train.experiment.levers import PLAN_FILE, plan_full_levers, plan_inputs
from lofi.train.head_stage import head_inputs, run_head_stage
from lofi.train.lofi_stage import lofi_inputs, run_lofi
from lofi.train.pretrain import pretrain_inputs, run_pretrain

#: The file each stage writes last: its presence (under a matching identity) means the stage finished. Extraction
#: records that it finished in its identity instead (:func:`~lofi.runtime.run_identity.is_complete`).
FINAL_FILE = {"init": ENCODER_FILE, "pretrain": ENCODER_FILE, "lofi": ENCODER_FILE, "head": "head.pt",
              "plan": PLAN_FILE}


def write_floor_encoder(context: RunContext) -> Path:
    """The encoder's initial weights drawn from ``seed`` (what stage 1 would start from without weights), saved as
    ``run_dir/encoder.pt`` inside stage ``init``'s guard so that the features' identity digests the file."""
    path = context.run_dir / ENCODER_FILE
    with context.guard(context.run_dir, "init", inputs={}, resume=True) as start:
        if start.reusing and path.is_file():
            return path
        seed_everything(context.config.seed)
        return save_encoder(context, build_encoder(context, None), path)


def step_inputs(context: RunContext, step: Step) -> dict[str, str]:
    """The input digests the step's stage records in its identity."""
    if step.stage == "init":
        return {}
    if step.stage == "plan":
        return plan_inputs(context)
    if step.stage == "pretrain":
        return pretrain_inputs(context)
    if step.stage == "lofi":
        return lofi_inputs(context, step.encoder)
    if step.stage == "extract":
        return extract_inputs(context, step.encoder)
    if step.stage == "head":
        return head_inputs(context, context.run_dir / FEATURES_DIR)
    raise ValueError(f"unknown stage {step.stage!r}")


def finished_identity(context: RunContext, step: Step) -> StageIdentity | None:
    """The step's identity when its folder holds its finished results under it, else None (not started, not
    finished, an input missing, or results of another identity: running the stage then resumes or refuses)."""
    folder = stage_folder(context.run_dir, step.stage)
    try:
        recorded = read_identity(folder)
    except RunMismatchError:
        return None
    if recorded is None or recorded.stage != step.stage:
        return None
    finished = is_complete(folder) if step.stage == "extract" else (folder / FINAL_FILE[step.stage]).is_file()
    if not finished or (step.encoder is not None and not Path(step.encoder).is_file()):
        return None
    identity = stage_identity(step.stage, context.config, step_inputs(context, step))
    return identity if identity.fingerprint == recorded.fingerprint else None


def run_step(context: RunContext, step: Step) -> Path:
    """Run ``step``'s stage (its guard resumes, starts fresh or refuses another identity's results); the path of
    what it made (an encoder, a features folder, a head, a plan)."""
    run_dir = context.run_dir
    if step.stage == "init":
        return write_floor_encoder(context)
    if step.stage == "plan":
        plan_full_levers(context)
        return run_dir / PLAN_FILE
    if step.stage == "pretrain":
        return run_pretrain(context)
    if step.stage == "lofi":
        return run_lofi(context, encoder_weights=step.encoder)
    if step.stage == "extract":
        return extract_features(context, encoder_weights=step.encoder, features_dir=stage_folder(run_dir, "extract"))
    if step.stage == "head":
        return run_head_stage(context, features_dir=run_dir / FEATURES_DIR,
                              out_dir=stage_folder(run_dir, "head")).head_path
    raise ValueError(f"unknown stage {step.stage!r}")
