"""Stage 2, the LoFi stage: encoder and TAL head trained end to end on untrimmed videos at low fidelity.

Each video is one window rescaled to ``L`` snippets (default), or with ``data.windows`` cut into sliding windows
of ``L`` snippets at the fixed snippet rate of which those holding an instance train
(:class:`~lofi.data.video_windows.SlidingVideoWindowDataset`).

Gradients of the head's localization loss flow into the encoder (this is what the paper adds). Each mini-batch
takes the fidelity of :class:`~lofi.core.fidelity.FidelitySchedule` (``fidelity.mode``: S, T, ST, C-short,
C-long, full or custom); the head runs at the batch's number of snippets with the same weights. The batch size is
the same at every fidelity. With ``train.partial_backprop`` only a share of each video's snippets carries gradients
into the encoder (:mod:`lofi.models.partial_backprop`). With ``fidelity.mode=auto`` the stage first plans for
``fidelity.memory`` (:mod:`lofi.train.plan`): the recommended fidelity schedule, encoder levers and partial back-prop
replace the configured ones for this stage, are logged and written to ``stage2_lofi/plan.json``, and are part of the
stage's identity. The result is the tuned encoder's weights, ``stage2_lofi/encoder.pt``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path

import torch

from lofi.config import FidelityConfig, PartialBackpropConfig
from lofi.core.fidelity import Fidelity, FidelitySchedule
from lofi.data.video_windows import SlidingVideoWindowDataset
from lofi.data.windows import FidelityBatchSampler, FidelityVideoDataset, VideoWindowDataset, collate_windows
from lofi.io import atomic_write
from lofi.models.partial_backprop import draw_grad_mask, step_seed
from lofi.runtime.builders import build_detector, frame_cache, save_encoder
from lofi.runtime.context import RunContext
from lofi.runtime.distributed import broadcast_object
from lofi.runtime.pretrained import check_encoder_start
from lofi.runtime.run_identity import weights_input
from lofi.train.builders import build_optimizer, build_scheduler, loop_config
from lofi.train.engine import StepInfo, Trainer, seed_everything
from lofi.train.loaders import batch_source
from lofi.train.plan import apply_plan, plan_for_run

STAGE_DIR = "stage2_lofi"
PLAN_FILE = "plan.json"
logger = logging.getLogger(__name__)


def fidelity_schedule(context: RunContext) -> FidelitySchedule:
    """The configured stage-2 schedule."""
    return schedule_of(context.config.fidelity)


def schedule_of(fc: FidelityConfig) -> FidelitySchedule:
    """The stage-2 schedule of a ``fidelity`` section (``mode`` ``auto`` is resolved by its plan first)."""
    custom = None
    if fc.mode == "custom":
        if fc.custom_num_snippets is None or fc.custom_frame_size_px is None:
            raise ValueError("fidelity.mode 'custom' needs fidelity.custom_num_snippets and "
                             "fidelity.custom_frame_size_px")
        custom = Fidelity("custom", fc.custom_num_snippets, fc.custom_frame_size_px)
    return FidelitySchedule(mode=fc.mode, full=Fidelity("full", fc.num_snippets, fc.frame_size_px), custom=custom,
                            cycle_steps=fc.cycle_steps)


def run_lofi(context: RunContext, *, encoder_weights: str | Path | None, resume: bool = True) -> Path:
    """Train stage 2 from ``encoder_weights`` (stage 1's, or any checkpoint; None, random weights, is refused under
    ``model.require_pretrained``) and return the tuned encoder's path."""
    if encoder_weights is None:
        check_encoder_start(context.config, None)
    out_dir = context.run_dir / STAGE_DIR
    plan = None
    if context.config.fidelity.mode == "auto":
        context, plan = auto_context(context)
    with context.guard(out_dir, "lofi", inputs=lofi_inputs(context, encoder_weights), resume=resume):
        if plan is not None and context.is_main:
            text = json.dumps(plan, indent=2) + "\n"
            atomic_write(out_dir / PLAN_FILE, lambda handle: handle.write(text.encode("utf-8")))
        return _train(context, out_dir, encoder_weights=encoder_weights, resume=resume)


def lofi_inputs(context: RunContext, encoder_weights: str | Path | None) -> dict[str, str]:
    """The digests stage 2's identity holds: the data and the weights it starts from."""
    return {**context.data_inputs(), **weights_input(encoder_weights)}


def optimizer_steps(context: RunContext) -> int:
    """Stage 2's optimiser steps on this process over the whole run (its sampler's length x epochs; the same at
    every fidelity, as the batch is)."""
    optim = context.config.train.optim
    sampler = _sampler(context, training_dataset(context, fidelity_schedule(context).fidelities))
    return optim.epochs * math.ceil(len(sampler) / optim.grad_accum_steps)


def auto_context(context: RunContext) -> tuple[RunContext, dict]:
    """``fidelity.mode=auto``: plan on rank 0 (every rank gets its result) and return the context whose config holds
    the recommendation, with the plan as a dict (what ``plan.json`` holds)."""
    planned = None
    if context.is_main:
        plan = plan_for_run(context.config, batch_per_rank=context.batch_per_rank(context.config.train.optim),
                            device=context.device)
        logger.info("fidelity.mode=auto, %s:\n%s", context.config.fidelity.memory, plan.table())
        planned = (apply_plan(context.config, plan), plan.to_dict())
    resolved, record = broadcast_object(planned)
    return dataclasses.replace(context, config=resolved), record


def training_dataset(context: RunContext, fidelities: dict[str, Fidelity]) -> FidelityVideoDataset:
    """Whole videos rescaled to ``L`` snippets, or with ``data.windows`` the sliding windows that hold instances."""
    config = context.config
    shared = dict(annotations=context.subset(config.data.train_subset), videos_dir=config.data.videos,
                  classes=context.classes, fidelities=fidelities, frames_per_snippet=config.data.frames_per_snippet,
                  frame_stride=config.data.frame_stride, cache=frame_cache(context, fidelities), augment=True,
                  on_error=config.data.on_error, seed=config.seed, skip_log=context.skip_log)
    windows = config.data.windows
    if windows is None:
        return VideoWindowDataset(**shared)
    dataset = SlidingVideoWindowDataset(**shared, window_snippets=config.fidelity.num_snippets,
                                        stride_snippets=windows.stride_snippets,
                                        snippets_per_sec=windows.snippets_per_sec,
                                        min_inside_fraction=windows.min_inside_fraction)
    if len(dataset) == 0:
        raise ValueError(f"{context.annotations.source}: no window of the {config.data.train_subset!r} videos holds "
                         f"an instance (windows of {config.fidelity.num_snippets} snippets at "
                         f"{windows.snippets_per_sec:g} per second); check data.windows and the annotations")
    return dataset


def _sampler(context: RunContext, dataset: FidelityVideoDataset) -> FidelityBatchSampler:
    optim = context.config.train.optim
    return FidelityBatchSampler(num_items=len(dataset), batch_size=context.batch_per_rank(optim),
                                schedule=fidelity_schedule(context), shuffle=True, seed=context.config.seed,
                                grad_accum_steps=optim.grad_accum_steps, num_replicas=context.world_size,
                                rank=context.rank)


def grad_mask(partial: PartialBackpropConfig, frames: torch.Tensor, info: StepInfo, *, seed: int,
              rank: int = 0) -> torch.Tensor:
    """The snippets of this micro-batch that carry gradients (``train.partial_backprop``), ``[B, T]`` bool on the
    frames' device; drawn from the run's seed, the optimiser step, the micro-batch in it and the rank, so a
    resumed run draws what the interrupted one would have."""
    b, t = frames.shape[:2]
    mask = draw_grad_mask(batch_size=b, num_snippets=t, share=partial.share, mode=partial.mode,
                          chunk_snippets=partial.chunk_snippets,
                          seed=step_seed(seed, global_step=info.global_step, accum_index=info.accum_index, rank=rank))
    return mask.to(frames.device)  # [B, T]


def warn_train_mode_batchnorm(encoder: torch.nn.Module, *, where: str) -> bool:
    """Log a warning (and return True) when ``encoder`` trains BatchNorm layers in train mode: partial back-prop
    then normalises its chosen and no-grad snippets with different batch statistics, close to but not a full
    forward's (:mod:`lofi.models.partial_backprop`)."""
    was_training = encoder.training
    encoder.train()
    in_train_mode = [name for name, m in encoder.named_modules()
                     if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training]
    encoder.train(was_training)
    if in_train_mode:
        logger.warning("%s with %d BatchNorm layers in train mode (first: %s): each group of snippets is normalised "
                       "with its own batch statistics, so the gradients are close to, not equal to, full "
                       "back-prop's on the chosen snippets; set train.frozen_bn=true for exact ones (ETAD's setting)",
                       where, len(in_train_mode), in_train_mode[0])
    return bool(in_train_mode)


def _train(context: RunContext, out_dir: Path, *, encoder_weights: str | Path | None, resume: bool) -> Path:
    config, optim = context.config, context.config.train.optim
    dataset = training_dataset(context, fidelity_schedule(context).fidelities)
    sampler = _sampler(context, dataset)
    seed_everything(config.seed)  # the same initial head weights on every run and every process
    model = build_detector(context, encoder_weights).to(context.device)
    optimizer = build_optimizer(model.parameters(), optim, lr_scales=[(model.encoder, config.train.encoder_lr_scale)])

    partial = config.train.partial_backprop
    if partial is not None and context.is_main:
        warn_train_mode_batchnorm(model.encoder, where="train.partial_backprop")

    def loss_fn(net: torch.nn.Module, batch: dict, info: StepInfo) -> dict[str, torch.Tensor]:
        frames = batch["frames"]  # [B, T, F, 3, H, W]; the trainer moved the batch to the device
        mask = None if partial is None else grad_mask(partial, frames, info, seed=config.seed, rank=context.rank)
        losses = model.loss(net(frames, grad_mask=mask), batch["targets"])  # the head's raw outputs into its loss
        return {**losses, "num_snippets": torch.tensor(float(frames.shape[1]))}

    trainer = Trainer(model=model, optimizer=optimizer,
                      scheduler=build_scheduler(optimizer, optim, steps_per_epoch=len(sampler)), loss_fn=loss_fn,
                      batches=batch_source(dataset, sampler, collate_windows, num_workers=config.data.num_workers,
                                           device=context.device, seed=config.seed),
                      steps_per_epoch=len(sampler), run_dir=out_dir, config=loop_config(optim, seed=config.seed),
                      device=context.device, progress=context.progress)
    trainer.fit(resume=resume)
    return save_encoder(context, model.encoder, out_dir / "encoder.pt")
