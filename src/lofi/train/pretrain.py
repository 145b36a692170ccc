"""Stage 1: the encoder trained as an action classifier on trimmed clips cut from the dataset's own annotations.

Each ground-truth segment of the training subset is a clip of its class; with ``pretrain.background`` the
unannotated spans give clips of an extra background class. The encoder starts from ``model.encoder_weights``
when given (a TSM-release or torchvision checkpoint: nothing is downloaded), else from scratch, which
``model.require_pretrained`` (the real-data presets) refuses. The result is the
encoder's weights, ``stage1_pretrain/encoder.pt``, for stage 2 and for the frozen-features baseline.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from lofi.data.augment import ClipAugment
from lofi.data.batches import iter_batches
from lofi.data.clips import ClipDataset, collate_clips
from lofi.data.windows import FidelityBatchSampler
from lofi.models.classifier import ClipClassifier
from lofi.runtime.builders import build_encoder, save_encoder
from lofi.runtime.context import RunContext
from lofi.runtime.pretrained import check_encoder_start
from lofi.runtime.run_identity import weights_input
from lofi.train.builders import build_optimizer, build_scheduler, loop_config
from lofi.train.engine import Trainer, seed_everything
from lofi.train.loaders import IndexKeyed, batch_source, single_fidelity_sampler

STAGE_DIR = "stage1_pretrain"


def _clip_dataset(context: RunContext, subset: str, *, augment: bool) -> ClipDataset:
    """Training clips (``augment``: random places, augmentation) or the evaluation clips (at most 2 per range,
    evenly spaced, centre crops)."""
    config, stage = context.config, context.config.pretrain
    clips_per_range = stage.clips_per_range if augment else min(2, stage.clips_per_range)
    return ClipDataset(annotations=context.subset(subset), videos_dir=config.data.videos, classes=context.classes,
                       num_snippets=stage.num_snippets, frames_per_snippet=config.data.frames_per_snippet,
                       frame_size_px=stage.frame_size_px, frame_stride=config.data.frame_stride,
                       background=stage.background, background_per_video=stage.background_per_video,
                       segment_margin_frac=stage.segment_margin_frac, augment=augment, seed=config.seed,
                       on_error=config.data.on_error, clip_sec=stage.clip_sec, clips_per_range=clips_per_range,
                       preload=stage.preload_frames, balance_classes=stage.balance_classes and augment,
                       skip_log=context.skip_log,
                       augmentation=ClipAugment(crop_scale=(stage.crop_scale_min, 1.0), flip=stage.flip,
                                                color_jitter=stage.color_jitter,
                                                channel_shuffle=stage.channel_shuffle))


@torch.no_grad()
def clip_accuracy(model: ClipClassifier, dataset: ClipDataset, *, device: torch.device, batch_size: int) -> float:
    """Top-1 accuracy of ``model`` on ``dataset`` (background included as a class)."""
    model.eval()
    correct = total = 0
    for batch in iter_batches(dataset, batch_size=batch_size, collate=collate_clips):
        logits = model(batch["frames"].to(device))  # [B, C+1]
        correct += int((logits.argmax(dim=1).cpu() == batch["labels"]).sum())
        total += int(batch["labels"].numel())
    model.train()
    return correct / max(total, 1)


def pretrain_inputs(context: RunContext) -> dict[str, str]:
    """The digests stage 1's identity holds: the data and the weights it starts from (``model.encoder_weights``)."""
    return {**context.data_inputs(), **weights_input(context.config.model.encoder_weights)}


def optimizer_steps_per_epoch(context: RunContext) -> int:
    """Stage 1's optimiser steps per epoch on this process (its training clips, batch and accumulation)."""
    sampler = _sampler(context, _clip_dataset(context, context.config.data.train_subset, augment=True))
    return math.ceil(len(sampler) / context.config.pretrain.optim.grad_accum_steps)


def run_pretrain(context: RunContext, *, resume: bool = True) -> Path:
    """Train stage 1 and return the path of the encoder's weights (refused before any work when it would start
    from random weights under ``model.require_pretrained``, or from a weights file that is not there)."""
    check_encoder_start(context.config, context.config.model.encoder_weights)
    out_dir = context.run_dir / STAGE_DIR
    with context.guard(out_dir, "pretrain", inputs=pretrain_inputs(context), resume=resume):
        return _train(context, out_dir, resume=resume)


def _sampler(context: RunContext, train_set: ClipDataset) -> FidelityBatchSampler:
    optim = context.config.pretrain.optim
    return single_fidelity_sampler(num_items=len(train_set), batch_size=context.batch_per_rank(optim), shuffle=True,
                                   seed=context.config.seed, rank=context.rank, num_replicas=context.world_size,
                                   grad_accum_steps=optim.grad_accum_steps)


def _train(context: RunContext, out_dir: Path, *, resume: bool) -> Path:
    config, stage = context.config, context.config.pretrain
    train_set = _clip_dataset(context, config.data.train_subset, augment=True)
    val_set = _clip_dataset(context, config.data.val_subset, augment=False)
    num_outputs = len(context.classes) + (1 if stage.background else 0)
    seed_everything(config.seed)  # the same initial weights on every run and every process
    model = ClipClassifier(encoder=build_encoder(context, config.model.encoder_weights),
                           num_classes=num_outputs).to(context.device)
    optimizer = build_optimizer(model.parameters(), stage.optim)
    sampler = _sampler(context, train_set)

    def loss_fn(net: torch.nn.Module, batch: dict, info: object) -> dict[str, torch.Tensor]:
        logits = net(batch["frames"])  # [B, C+1]; the trainer moved the batch to the device
        labels = batch["labels"]
        loss = F.cross_entropy(logits, labels)
        return {"loss": loss, "accuracy": (logits.argmax(dim=1) == labels).float().mean().detach()}

    def on_epoch_end(epoch: int, trainer: Trainer) -> dict[str, float]:
        if not context.is_main:
            return {}
        return {"val_clip_accuracy": clip_accuracy(model, val_set, device=context.device,
                                                   batch_size=context.batch_per_rank(stage.optim))}

    trainer = Trainer(model=model, optimizer=optimizer,
                      scheduler=build_scheduler(optimizer, stage.optim, steps_per_epoch=len(sampler)),
                      loss_fn=loss_fn, batches=batch_source(IndexKeyed(train_set), sampler, collate_clips,
                                                            num_workers=0 if stage.preload_frames
                                                            else config.data.num_workers,
                                                            device=context.device, seed=config.seed),
                      steps_per_epoch=len(sampler), run_dir=out_dir, config=loop_config(stage.optim, seed=config.seed),
                      device=context.device, progress=context.progress, on_epoch_end=on_epoch_end)
    trainer.fit(resume=resume)
    return save_encoder(context, model.encoder, out_dir / "encoder.pt")
