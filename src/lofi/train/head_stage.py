"""Stage 3's second half: a fresh head trained on frozen full-fidelity features, then evaluated.

The head is built at the full snippet count and trained on the training subset's feature files. Its raw outputs on
the evaluation subset are decoded and saved (``raw_predictions.json``, and ``video_scores.json`` for class-agnostic
proposals: G-TAD and BMN with ``proposal_labels="video"``), suppressed into ``predictions.json`` and scored with the
ActivityNet mAP (``metrics.json``, as ``lofi evaluate`` writes it, and its pictures).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from lofi.data.annotations import AnnotationSet
from lofi.data.feature_windows import FeatureWindowDataset, collate_feature_windows
from lofi.data.batches import iter_batches
from lofi.data.features import FeatureDataset, collate_features, find_feature_file
from lofi.data.formats import write_results
from lofi.eval import evaluate_detection
from lofi.eval.detection import DetectionResult, parse_tiou_thresholds
from lofi.eval.plots import write_evaluation_plots
from lofi.eval.report import detection_metrics_json, write_metrics_json
from lofi.infer.predict import finish_predictions, predict_features, write_raw
from lofi.io import atomic_torch_save, atomic_write
from lofi.models import create_head
from lofi.models.options import head_kwargs
from lofi.postprocess import PostprocessConfig
from lofi.runtime.context import RunContext
from lofi.runtime.distributed import barrier
from lofi.runtime.run_identity import RunMismatchError, features_input, is_complete, read_identity
from lofi.train.builders import build_optimizer, build_scheduler, loop_config
from lofi.train.engine import Trainer, seed_everything
from lofi.train.loaders import IndexKeyed, batch_source, single_fidelity_sampler

logger = logging.getLogger(__name__)

#: The head's class names in the order of its outputs, beside ``head.pt`` (what ``lofi export`` reads).
CLASSES_FILE = "classes.json"


@dataclass(frozen=True)
class HeadStageResult:
    """Where stage 3 wrote its head and predictions, and the evaluation."""

    head_path: Path
    predictions_path: Path
    result: DetectionResult


def _with_features(videos: AnnotationSet, features_dir: Path, *, what: str, skip: bool) -> AnnotationSet:
    """The videos of ``videos`` that have a feature file. A missing one is an error unless ``skip`` (the
    ``--skip-invalid`` of the command that extracted, or this one): then the video is left out, with a warning."""
    kept = [v for v in videos if find_feature_file(features_dir, v.video_id) is not None]
    if len(kept) < len(videos):
        missing = [v.video_id for v in videos if find_feature_file(features_dir, v.video_id) is None]
        if not skip:
            raise FileNotFoundError(f"{features_dir}: {len(missing)} of {len(videos)} {what} videos have no feature "
                                    f"file (first: {missing[0]!r}); extract them (`lofi extract`), or pass "
                                    f"--skip-invalid to leave them out")
        logger.warning("%s: %d of %d videos have no feature file in %s (skipped at extraction); left out",
                       what, len(videos) - len(kept), len(videos), features_dir)
    if not kept:
        raise FileNotFoundError(f"{features_dir}: no feature file for any {what} video; run `lofi extract` first")
    return AnnotationSet.from_videos(kept, classes=videos.classes, source=videos.source)


def feature_set(context: RunContext, features_dir: Path, videos: AnnotationSet
                ) -> FeatureDataset | FeatureWindowDataset:
    """The head's items of ``videos``: whole videos, or with ``data.windows`` their sliding windows."""
    windows = context.config.data.windows
    if windows is None:
        return FeatureDataset(features_dir=features_dir, annotations=videos, classes=context.classes)
    return FeatureWindowDataset(features_dir=features_dir, annotations=videos, classes=context.classes,
                                window_snippets=context.config.fidelity.num_snippets,
                                stride_snippets=windows.stride_snippets, snippets_per_sec=windows.snippets_per_sec,
                                min_inside_fraction=windows.min_inside_fraction, merge=windows.merge)


def _collate_for(dataset: FeatureDataset | FeatureWindowDataset):
    return collate_feature_windows if isinstance(dataset, FeatureWindowDataset) else collate_features


def postprocess_config(context: RunContext) -> PostprocessConfig:
    ev = context.config.eval
    return PostprocessConfig(method=ev.method, iou_threshold=ev.iou_threshold, sigma=ev.sigma,
                             min_score=ev.min_score, max_detections=ev.max_detections)


def evaluate_head(context: RunContext, head: torch.nn.Module, dataset: FeatureDataset | FeatureWindowDataset, *,
                  ground_truth: AnnotationSet, out_dir: Path | None = None,
                  plots: bool = False) -> tuple[DetectionResult, dict]:
    """Predict ``dataset``'s videos, suppress, and score against ``ground_truth``; with ``out_dir``, save the raw
    candidates, the predictions, ``metrics.json`` and (``plots``) the pictures."""
    config = context.config
    batch_size = context.batch_per_rank(config.head.optim)
    batches = iter_batches(dataset, batch_size=batch_size, collate=_collate_for(dataset))
    raw = predict_features(head, batches, classes=context.classes, device=context.device)
    head.train()
    predictions = finish_predictions(raw, postprocess_config(context), video_top_k=config.eval.video_top_k)
    result = evaluate_detection(ground_truth, predictions, tiou_thresholds=parse_tiou_thresholds(config.eval.tiou),
                                subset=None, keep_curves=plots)
    if out_dir is not None:
        write_raw(raw, out_dir)
        write_results(predictions, out_dir / "predictions.json")
        write_metrics_json(detection_metrics_json(result), out_dir / "metrics.json")
        if plots:
            write_evaluation_plots(result, ground_truth, predictions, out_dir / "plots")
    return result, predictions


def head_inputs(context: RunContext, features_dir: str | Path) -> dict[str, str]:
    """The digests a head stage's identity holds: the annotations and the features folder (its identity, files)."""
    return {**context.data_inputs(videos=False), **features_input(features_dir)}


def run_head_stage(context: RunContext, *, features_dir: str | Path, out_dir: str | Path,
                   resume: bool = True, eval_every_epochs: int = 5) -> HeadStageResult:
    """Train a head from scratch on ``features_dir`` and evaluate it; everything goes to ``out_dir``."""
    features_dir, out = Path(features_dir), Path(out_dir)
    if not features_dir.is_dir():
        raise FileNotFoundError(f"{features_dir}: features folder not found; run `lofi extract` first")
    recorded = read_identity(features_dir)
    if recorded is not None and (recorded.stage != "extract" or not is_complete(features_dir)):
        raise RunMismatchError(f"{features_dir}: not a finished features folder (its extraction did not finish, is "
                               f"still running, or the folder holds another stage); run `lofi extract` to finish it")
    with context.guard(out, "head", inputs=head_inputs(context, features_dir), resume=resume):
        return _train_and_evaluate(context, features_dir, out, resume=resume, eval_every_epochs=eval_every_epochs)


def _train_and_evaluate(context: RunContext, features_dir: Path, out: Path, *, resume: bool,
                        eval_every_epochs: int) -> HeadStageResult:
    config, optim = context.config, context.config.head.optim
    skip = config.data.on_error == "skip"
    train_videos = _with_features(context.subset(config.data.train_subset), features_dir, what="training", skip=skip)
    val_videos = _with_features(context.subset(config.data.val_subset), features_dir, what="evaluation", skip=skip)
    train_set = feature_set(context, features_dir, train_videos)
    val_set = feature_set(context, features_dir, val_videos)
    feature_dim = int(train_set[0]["features"].shape[0])
    seed_everything(config.seed)  # the same initial weights on every run and every process
    head = create_head(config.model.head, in_dim=feature_dim, num_classes=len(context.classes),
                       num_snippets=config.fidelity.num_snippets, **head_kwargs(config.model)).to(context.device)
    optimizer = build_optimizer(head.parameters(), optim)
    sampler = single_fidelity_sampler(num_items=len(train_set), batch_size=context.batch_per_rank(optim),
                                      shuffle=True, seed=config.seed, rank=context.rank,
                                      num_replicas=context.world_size, grad_accum_steps=optim.grad_accum_steps)

    def loss_fn(net: torch.nn.Module, batch: dict, info: object) -> dict[str, torch.Tensor]:
        return head.loss(net(batch["features"]), batch["targets"])  # the trainer moved the batch to the device

    def on_epoch_end(epoch: int, trainer: Trainer) -> dict[str, float]:
        last = epoch + 1 == optim.epochs
        if not context.is_main or not (last or (epoch + 1) % max(1, eval_every_epochs) == 0):
            return {}
        result, _ = evaluate_head(context, head, val_set, ground_truth=val_videos)
        return {"val_average_mAP": result.average_mAP, "val_mAP@first_tiou": float(result.mAP[0])}

    trainer = Trainer(model=head, optimizer=optimizer,
                      scheduler=build_scheduler(optimizer, optim, steps_per_epoch=len(sampler)), loss_fn=loss_fn,
                      batches=batch_source(IndexKeyed(train_set), sampler, _collate_for(train_set), num_workers=0,
                                           device=context.device, seed=config.seed),
                      steps_per_epoch=len(sampler), run_dir=out, config=loop_config(optim, seed=config.seed),
                      device=context.device, progress=context.progress, on_epoch_end=on_epoch_end)
    trainer.fit(resume=resume)
    head_path = out / "head.pt"
    result, _ = evaluate_head(context, head, val_set, ground_truth=val_videos, out_dir=out if context.is_main else None,
                              plots=context.is_main)
    if context.is_main:
        atomic_torch_save(head.state_dict(), head_path)
        classes = json.dumps({"classes": list(context.classes)}, indent=1) + "\n"  # the order of the head's outputs
        atomic_write(out / CLASSES_FILE, lambda f: f.write(classes.encode("utf-8")))
    barrier()
    return HeadStageResult(head_path=head_path, predictions_path=out / "predictions.json", result=result)
