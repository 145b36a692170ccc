"""What the training commands of the CLI do (``lofi pretrain``, ``train``, ``extract``, ``train-head``, ``run``,
``demo``); the CLI only parses arguments. Each works alone or under ``torchrun`` (one process per GPU, or per CPU
with gloo), reading the resolved config and the previous stage's outputs from the run directory."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Iterator, Sequence

from lofi.config import RunConfig
from lofi.runtime.configs import load_run_config
from lofi.runtime import distributed
from lofi.runtime.context import RunContext, make_context
from lofi.runtime.pretrained import check_encoder_start

STAGE1_ENCODER = Path("stage1_pretrain") / "encoder.pt"
STAGE2_ENCODER = Path("stage2_lofi") / "encoder.pt"


@contextlib.contextmanager
def run_context(config: RunConfig, *, progress: bool = True) -> Iterator[RunContext]:
    """A :class:`RunContext`, inside torch.distributed when launched by torchrun (cleaned up on the way out)."""
    started = distributed.init_distributed()
    try:
        context = make_context(config, progress=progress)
        try:
            yield context
        except BaseException:  # interrupted or failed: list what was skipped so far (the log is kept for a resume)
            report_skips(context, wait=False)
            raise
        report_skips(context)
    finally:
        if started:
            distributed.cleanup()


def report_skips(context: RunContext, *, wait: bool = True) -> None:
    """With --skip-invalid: merge what every process skipped into ``RUN_DIR/skipped.json`` and print the list
    (``wait``: once every rank is done; else what is recorded so far, on the way out of a failed command)."""
    from lofi.data.skips import finish_skip_log

    if context.skip_log is None:
        return
    if wait:
        distributed.barrier()  # every rank has recorded its skips
    if context.is_main:
        try:
            print(finish_skip_log(context.skip_log, context.run_dir))
        except OSError as exc:
            if wait:
                raise
            print(f"could not write {context.run_dir / 'skipped.json'}: {exc}", file=sys.stderr)


def previous_encoder(context: RunContext, *candidates: Path) -> Path | None:
    """The first of the run's enabled stages' encoder files that exists, else the configured
    ``model.encoder_weights``. A stage turned off (``pretrain.enabled`` / ``train.enabled`` false) is passed over,
    so ``lofi train`` and ``lofi run`` start from the same weights; a stage that started but left no encoder is an
    error (not a silent start from scratch), and so is a start from random weights under
    ``model.require_pretrained`` (:func:`~lofi.runtime.pretrained.check_encoder_start`)."""
    enabled = {STAGE1_ENCODER: context.config.pretrain.enabled, STAGE2_ENCODER: context.config.train.enabled}
    for relative in candidates:
        if not enabled.get(relative, True):
            continue
        path = context.run_dir / relative
        if path.is_file():
            return path
        if (path.parent / "identity.json").is_file():
            raise FileNotFoundError(f"{path}: that stage started in this run folder but has not finished; run it "
                                    f"again to finish it (`lofi {'pretrain' if relative == STAGE1_ENCODER else 'train'}"
                                    f"` with the same config), or give --encoder-weights")
    weights = context.config.model.encoder_weights
    check_encoder_start(context.config, weights)  # model.require_pretrained: no start from random weights
    return Path(weights) if weights else None


def pretrain(config: RunConfig, *, resume: bool = True) -> Path:
    from lofi.train.pretrain import run_pretrain

    check_encoder_start(config, config.model.encoder_weights)  # before the annotations are read
    with run_context(config) as context:
        return run_pretrain(context, resume=resume)


def train(config: RunConfig, *, encoder_weights: str | None = None, resume: bool = True) -> Path:
    from lofi.train.lofi_stage import run_lofi

    with run_context(config) as context:
        weights = Path(encoder_weights) if encoder_weights else previous_encoder(context, STAGE1_ENCODER)
        return run_lofi(context, encoder_weights=weights, resume=resume)


def extract(config: RunConfig, *, encoder_weights: str | None = None, out: str | None = None,
            resume: bool = True) -> Path:
    from lofi.infer.extract import extract_features

    with run_context(config) as context:
        weights = Path(encoder_weights) if encoder_weights else previous_encoder(context, STAGE2_ENCODER,
                                                                                 STAGE1_ENCODER)
        return extract_features(context, encoder_weights=weights,
                                features_dir=Path(out) if out else context.run_dir / "features", resume=resume)


def train_head(config: RunConfig, *, features: str, out: str | None = None, resume: bool = True):
    from lofi.train.head_stage import run_head_stage

    with run_context(config) as context:
        return run_head_stage(context, features_dir=features,
                              out_dir=Path(out) if out else context.run_dir / "stage3_head", resume=resume)


def run(config: RunConfig, *, resume: bool = True, baseline: bool = True):
    from lofi.train.pipeline import comparison_table, run_all

    check_encoder_start(config, config.model.encoder_weights)  # stage 1, or stage 2 without it, starts from them
    with run_context(config) as context:
        results = run_all(context, resume=resume, baseline=baseline)
        if context.is_main:
            print(comparison_table(results))
        return results


def demo_dataset_config(*, num_videos: int, num_classes: int, seed: int):
    """The demo's synthetic dataset: the discrepancy layout (one class per video, onsets and offsets as long as the
    middle, so that frozen classification features cannot place the boundaries) at 96x96, 1-2 distractors, larger
    objects and the shape cue (a per-frame class cue that the small CPU encoder learns in minutes), so that the
    three stages fit in minutes on a CPU."""
    from lofi.data.synthetic import SyntheticConfig

    return SyntheticConfig.for_layout("discrepancy", num_videos=num_videos, num_classes=num_classes, seed=seed,
                                      width_px=96, height_px=96, num_distractors=(1, 2), object_radius_frac=(0.1, 0.14),
                                      shape_cue=True)


def demo(*, out: str | Path, videos: int, classes: int, seed: int, overrides: Sequence[str] = (),
         progress: bool = True, data_only: bool = False) -> int:
    """Generate the synthetic dataset (once) and run the three stages on it with the ``synthetic`` preset;
    ``data_only``: generate and check it, train nothing (the data of ``lofi experiment lofi-table synthetic``)."""
    from lofi.data.check import run_check
    from lofi.data.synthetic import generate_dataset
    from lofi.data.synthetic.generate import GENERATOR_VERSION, generated_with
    from lofi.train.pipeline import comparison_table, run_all

    started = time.perf_counter()
    out = Path(out)
    data_dir = out / "synthetic"
    synth = demo_dataset_config(num_videos=videos, num_classes=classes, seed=seed)
    if not (data_dir / "annotations.json").is_file():
        print(f"generating {videos} synthetic videos of {classes} classes in {data_dir}")
        dataset = generate_dataset(data_dir, synth, progress=progress)
        print(f"{dataset.num_frames} frames in {dataset.seconds:.1f} s ({dataset.frames_per_sec:.0f} frames/s)")
    else:
        made_with = generated_with(data_dir)
        if made_with != (GENERATOR_VERSION, synth.to_dict()):
            print(f"lofi demo: {data_dir} holds a synthetic dataset made with other settings or another generator "
                  f"version than this demo's (see its synthetic.json); remove {out} or pick another --out",
                  file=sys.stderr)
            return 2
        print(f"using the synthetic dataset in {data_dir}")
    report = run_check(data_dir / "annotations.json", videos_dir=data_dir / "videos")
    print(report.format())
    if not report.ok:
        return 1
    if data_only:
        return 0
    config = load_run_config("synthetic", [f"data.annotations={data_dir / 'annotations.json'}",
                                       f"data.videos={data_dir / 'videos'}", f"data.cache_dir={out / 'cache'}",
                                       f"out_dir={out / 'runs'}", f"seed={seed}", *overrides])
    with run_context(config, progress=progress) as context:
        results = run_all(context)
        if not context.is_main:
            return 0
        minutes = (time.perf_counter() - started) / 60
        print()
        print(f"LoFi demo: {len(context.annotations)} videos, {len(context.classes)} classes, "
              f"{config.model.encoder} + {config.model.head}, full fidelity {config.fidelity.num_snippets} x "
              f"{config.fidelity.frame_size_px}^2, stage 2 in mode {config.fidelity.mode}; {minutes:.1f} min")
        print(comparison_table(results))
        print(f"run directory: {context.run_dir} (a folder per stage with its config.yaml, checkpoints and metrics; "
              f"comparison.png)")
    return 0
