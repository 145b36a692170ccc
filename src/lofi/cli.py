"""The ``lofi`` command. Sub-commands parse arguments and call the library; they hold no logic of their own.

A user's mistake (:func:`user_errors`) is one line, ``lofi CMD: <file or key>: <problem>; <what to do>``, and exit
status 2; Ctrl-C is one line and 130; ``-v`` adds the traceback to both. Any other exception is a bug in lofi: its
traceback is shown, with a line saying so, and the status is 1.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import re
import sys
import traceback
from pathlib import Path
from typing import Sequence

from lofi.version import __version__

#: lofi.data.synthetic.config.LAYOUTS, spelled out so that building the parser imports nothing (a test compares them)
SYNTH_LAYOUTS: tuple[str, ...] = ("mixed", "activitynet", "thumos", "discrepancy")

#: Commands that resume from their last checkpoint when run again.
TRAINING_COMMANDS = ("pretrain", "train", "train-head", "run", "demo", "experiment lofi-table")

SKIP_INVALID_HELP = ("leave out invalid annotation entries and unreadable videos instead of stopping at the first; "
                     "what was left out is listed at the end and in skipped.json (docs/data.md)")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _headroom(text: str) -> float:
    """``0.1`` or ``10%`` -> 0.1, in [0, 1)."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a share such as 0.1 or 10%, got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1) (0% to under 100%), got {text!r}")
    return value


def _synthetic_config(args: argparse.Namespace):
    from lofi.data.synthetic import SyntheticConfig

    overrides = dict(num_videos=args.videos, num_classes=args.classes, class_offset=args.class_offset, seed=args.seed,
                     width_px=args.width, height_px=args.height, fps=args.fps,
                     validation_fraction=args.validation_fraction)
    if args.boundary_cue_px is not None:
        overrides["boundary_cue_px"] = args.boundary_cue_px
    # a bound not given keeps the layout's
    if args.min_duration_sec is not None or args.max_duration_sec is not None:
        low, high = SyntheticConfig.for_layout(args.layout).video_duration_sec
        overrides["video_duration_sec"] = (low if args.min_duration_sec is None else args.min_duration_sec,
                                           high if args.max_duration_sec is None else args.max_duration_sec)
    if args.max_instances is not None:
        overrides["max_instances_per_video"] = args.max_instances
    return SyntheticConfig.for_layout(args.layout, **overrides)


def _add_synth_options(parser: argparse.ArgumentParser, *, videos: int, classes: int) -> None:
    parser.add_argument("--layout", choices=SYNTH_LAYOUTS, default="mixed",
                        help="mixed: several classes per video (default); activitynet: one class per video, 1-3 "
                             "long actions; thumos: several classes per video, many short actions; discrepancy: "
                             "activitynet's with onsets and offsets as long as the middle, which frozen "
                             "classification features cannot place (docs/synthetic.md, Layouts)")
    parser.add_argument("--videos", type=_positive_int, default=videos, help=f"number of videos (default {videos})")
    parser.add_argument("--classes", type=_positive_int, default=classes,
                        help=f"number of action classes, at most 12 (default {classes})")
    parser.add_argument("--class-offset", type=int, default=0, metavar="K",
                        help="class k is motion pattern k + K, so that a source dataset of other classes can be made "
                             "(--classes + K at most 12; default 0)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same dataset")
    parser.add_argument("--width", type=int, default=128, help="frame width in px, even (default 128)")
    parser.add_argument("--height", type=int, default=128, help="frame height in px, even (default 128)")
    parser.add_argument("--fps", type=float, default=15.0, help="frame rate (default 15)")
    parser.add_argument("--min-duration-sec", type=float, default=None,
                        help="shortest video in s (default: the layout's; 20 for mixed)")
    parser.add_argument("--max-duration-sec", type=float, default=None,
                        help="longest video in s (default: the layout's; 40 for mixed)")
    parser.add_argument("--max-instances", type=_positive_int, default=None,
                        help="at most this many actions per video (default: the layout's; as many as fit for mixed)")
    parser.add_argument("--validation-fraction", type=float, default=0.34,
                        help="share of videos in the validation subset (default 0.34)")
    parser.add_argument("--boundary-cue-px", type=float, default=None,
                        help="strength of the onset/offset jitter cue in px (default: the layout's; 2.0, 4.0 for "
                             "discrepancy)")
    parser.add_argument("--workers", type=int, default=0, help="processes; 0 = one per core (default)")


def _cmd_synth(args: argparse.Namespace) -> int:
    from lofi.data.synthetic import generate_dataset

    config = _synthetic_config(args)
    dataset = generate_dataset(args.out_dir, config, workers=args.workers, progress=not args.quiet)
    print(f"wrote {len(dataset.annotations)} videos to {dataset.videos_dir}")
    print(f"annotations: {dataset.annotations_path}")
    print(f"generation metadata: {dataset.metadata_path}")
    print(f"{dataset.num_frames} frames in {dataset.seconds:.1f} s ({dataset.frames_per_sec:.0f} frames/s, "
          f"rendering and H.264 encoding)")
    print()
    print(dataset.annotations.summary().format())
    return 0


def _cmd_data_check(args: argparse.Namespace) -> int:
    from lofi.data.check import run_check

    report = run_check(args.annotations, videos_dir=args.videos, format=args.format, skip_invalid=args.skip_invalid,
                       duration_tolerance_sec=args.duration_tolerance)
    print(report.format())
    return 0 if report.ok else 1


def _int_list(text: str) -> list[int]:
    """``101,102,103`` -> [101, 102, 103]."""
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, e.g. 101,102,103, got {text!r}") \
            from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer, e.g. 101")
    return values


def _name_list(text: str) -> list[str]:
    """``acp_plus,ST`` -> ["acp_plus", "ST"] (checked against the config's cell names when it loads)."""
    return [part.strip() for part in text.split(",") if part.strip()]


def _cmd_experiment(args: argparse.Namespace) -> int:
    import json

    from lofi.train.experiment import run_lofi_table

    overrides = list(args.override)  # the flags are config values: experiment.seeds, experiment.cells
    if args.seeds is not None:
        overrides.append(f"experiment.seeds={json.dumps(args.seeds)}")
    if args.cells is not None:
        overrides.append(f"experiment.cells={json.dumps(args.cells)}")
    if args.dry_run:
        from lofi.train.experiment import predict_lofi_table

        print(predict_lofi_table(args.config, overrides, device=args.probe_device,
                                 step_times=args.step_times).table())
        return 0
    given = [flag for flag, value in (("--step-times", args.step_times), ("--probe-device", args.probe_device != "cpu"))
             if value]
    if given:
        from lofi.errors import UserError

        raise UserError(f"{', '.join(given)}: only with --dry-run (the prediction); a run uses the config's "
                        f"device")
    result = run_lofi_table(args.config, overrides, jobs=args.jobs, echo=lambda line: print(line, flush=True))
    print()
    print(result.table, end="")
    for path in result.written:
        print(f"wrote {path}")
    if result.failed:
        print(f"lofi experiment lofi-table: {len(result.failed)} of {len(result.outcomes)} tasks did not finish: "
              f"{', '.join(result.failed)} (their lines above say why; run the same command again to resume)",
              file=sys.stderr)
    return result.exit_status


def _cmd_demo(args: argparse.Namespace) -> int:
    from lofi.train.commands import demo

    return demo(out=args.out, videos=args.videos, classes=args.classes, seed=args.seed,
                overrides=_with_skip_invalid(args), progress=not args.quiet, data_only=args.data_only)


def _with_skip_invalid(args: argparse.Namespace) -> list[str]:
    """The ``-o`` overrides, and ``data.on_error=skip`` last when ``--skip-invalid`` is given."""
    return [*args.override, *(["data.on_error=skip"] if args.skip_invalid else [])]


def _cmd_stage(args: argparse.Namespace) -> int:
    from lofi.runtime.configs import load_run_config
    from lofi.train import commands

    config = load_run_config(args.config, _with_skip_invalid(args))
    resume = not args.no_resume
    if args.command == "pretrain":
        print(f"stage 1 encoder: {commands.pretrain(config, resume=resume)}")
    elif args.command == "train":
        print(f"stage 2 encoder: {commands.train(config, encoder_weights=args.encoder_weights, resume=resume)}")
    elif args.command == "extract":
        features = commands.extract(config, encoder_weights=args.encoder_weights, out=args.out, resume=resume)
        print(f"features: {features}")
    elif args.command == "train-head":
        stage = commands.train_head(config, features=args.features, out=args.out, resume=resume)
        print(stage.result.format())
        print(f"head: {stage.head_path}; predictions: {stage.predictions_path}")
    else:
        commands.run(config, resume=resume, baseline=not args.no_baseline)
    return 0


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", metavar="CONFIG", help="run config YAML, or a preset name (synthetic, activitynet, "
                                                         "hacs, thumos14)")
    parser.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                        help="set a config value, e.g. -o train.optim.lr=0.05 (repeatable)")
    parser.add_argument("--no-resume", action="store_true",
                        help="start over instead of resuming from the stage's last checkpoint")
    parser.add_argument("--skip-invalid", action="store_true", help=SKIP_INVALID_HELP.replace(
        "skipped.json", "RUN_DIR/skipped.json"))
    parser.set_defaults(func=_cmd_stage)


def _metrics_path(output: str | None) -> Path | None:
    """``--output``: a file (its folder is made now, when missing, so that a bad path fails before the work), or
    an existing folder: ``metrics.json`` in it."""
    if output is None:
        return None
    path = Path(output)
    path = path / "metrics.json" if path.is_dir() else path
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from lofi.data.formats import load_annotations, read_results_table
    from lofi.eval import evaluate_detection, evaluate_proposals
    from lofi.eval.detection import parse_tiou_thresholds
    from lofi.eval.report import detection_metrics_json, proposal_metrics_json, write_metrics_json

    proposals = args.task == "proposals"
    output = _metrics_path(args.output)
    thresholds = parse_tiou_thresholds(args.tiou)
    loaded = load_annotations(args.ground_truth, format=args.format, as_annotated=True,
                              on_invalid="skip" if args.skip_invalid else "raise")
    ground_truth = loaded.annotations
    predictions = read_results_table(args.predictions)
    if proposals:
        result = evaluate_proposals(ground_truth, predictions, tiou_thresholds=thresholds, subset=args.subset,
                                    max_avg_proposals=args.max_proposals)
    else:
        result = evaluate_detection(ground_truth, predictions, tiou_thresholds=thresholds,
                                    subset=args.subset, keep_curves=bool(args.plots))
    print(result.format())
    warnings = [p for p in loaded.problems if p.severity == "warning"]  # errors: left out by --skip-invalid
    if warnings:
        print(f"note: the ground truth has {len(warnings)} warnings (duplicates, segments past the video's "
              f"duration: `lofi data check` lists them); evaluated as annotated, as the official evaluator does")
    counts = result.counts
    if proposals:
        if counts.num_videos_without_proposals:
            print(f"note: {counts.num_videos_without_proposals} of {counts.num_videos} videos have no proposal; "
                  f"their segments are not recalled")
    else:
        if counts.num_outside_subset:
            print(f"note: {counts.num_outside_subset} predictions are for videos outside the evaluated ground "
                  f"truth; they count as false positives")
        if counts.num_unknown_label:
            print(f"note: {counts.num_unknown_label} predictions have labels without ground truth in the subset; "
                  f"ignored")
    if output is not None:
        metrics = proposal_metrics_json(result) if proposals else detection_metrics_json(result)
        write_metrics_json(metrics, output)
        print(f"metrics written to {output}")
    if args.plots:
        from lofi.eval.plots import plot_recall_vs_proposals, write_evaluation_plots

        if proposals:
            paths = [plot_recall_vs_proposals(result, Path(args.plots) / "recall_vs_proposals.png")]
        else:
            paths = write_evaluation_plots(result, ground_truth.subset(args.subset), predictions, args.plots)
        for path in paths:
            print(f"wrote {path}")
    if args.skip_invalid:
        _report_skipped_ground_truth(loaded.problems, output.parent if output else args.plots)
    return 0


def _report_skipped_ground_truth(problems, out_dir: str | Path | None) -> None:
    """``--skip-invalid``: print the ground-truth entries left out, and write them to ``out_dir/skipped.json``."""
    from lofi.data.skips import SKIPPED_FILE, annotation_records, format_skipped, write_skipped

    records = annotation_records(problems)
    path = write_skipped(records, Path(out_dir) / SKIPPED_FILE) if out_dir is not None else None
    print(format_skipped(records, path))


def _cmd_postprocess(args: argparse.Namespace) -> int:
    from lofi.data.formats import read_results_table, read_video_scores, write_results
    from lofi.postprocess import PostprocessConfig
    from lofi.postprocess.replay import postprocess_table

    config = PostprocessConfig(method=args.method, iou_threshold=args.iou_threshold, sigma=args.sigma,
                               min_score=args.min_score, max_detections=args.top_k, class_agnostic=args.class_agnostic)
    table = read_results_table(args.predictions)
    video_scores = read_video_scores(args.video_scores) if args.video_scores else None
    detections = postprocess_table(table, config, video_scores=video_scores, video_top_k=args.video_top_k,
                                   fuse=args.fuse)
    write_results(detections, args.output)
    kept = sum(len(d) for d in detections.values())
    print(f"{len(table)} candidates in {len(table.video_ids)} videos -> {kept} detections ({config.method}); "
          f"written to {args.output}")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from lofi.models import count_parameters, create_encoder, create_head, list_models

    print("encoders (frames [B, T, F, 3, H, W] -> features [B, D, T])")
    print(f"  {'name':<16} {'params':>8} {'D':>5}  description")
    for entry in list_models("encoder"):
        encoder = create_encoder(entry.name)
        print(f"  {entry.name:<16} {count_parameters(encoder) / 1e6:>7.2f}M {encoder.feature_dim:>5}  "
              f"{entry.description}")
    print(f"heads (features [B, {args.in_dim}, {args.num_snippets}] -> raw outputs; {args.num_classes} classes)")
    print(f"  {'name':<16} {'params':>8}  description")
    for entry in list_models("head"):
        head = create_head(entry.name, in_dim=args.in_dim, num_classes=args.num_classes,
                           num_snippets=args.num_snippets)
        print(f"  {entry.name:<16} {count_parameters(head) / 1e6:>7.2f}M  {entry.description}")
    return 0


#: ``lofi detect``'s exit status when it finished but left out videos it could not decode.
EXIT_SKIPPED = 3


#: ``lofi plan``'s model flags and their defaults when no CONFIG is given (with one, the config holds them).
_PLAN_DEFAULTS = {"encoder": "tsm_resnet18", "head": "gtad", "num_snippets": 100, "frame_size": 224,
                  "frames_per_snippet": 8, "optimizer": "sgd"}


def _cmd_plan(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    import torch

    from lofi.errors import UserError
    from lofi.train.plan import DEFAULT_HEADROOM, make_plan, plan_for_run

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.config is None:
        if args.override:
            raise UserError("-o sets a value of a run config: give the CONFIG to plan for (e.g. lofi plan "
                            "synthetic --memory 8GB -o model.encoder=tsm_resnet34)")
        if args.memory is None:
            raise UserError("--memory is needed: the device memory per process, e.g. --memory 24GB")
        flags = {name: default if getattr(args, name) is None else getattr(args, name)
                 for name, default in _PLAN_DEFAULTS.items()}
        plan = make_plan(memory=args.memory, encoder=flags["encoder"], head=flags["head"], batch_size=args.batch or 1,
                         num_snippets=flags["num_snippets"], frame_size_px=flags["frame_size"],
                         frames_per_snippet=flags["frames_per_snippet"], optimizer=flags["optimizer"],
                         device=args.device, cycle=args.cycle,
                         headroom=DEFAULT_HEADROOM if args.headroom is None else args.headroom)
    else:
        from lofi.runtime.configs import load_run_config

        given = [f"--{name.replace('_', '-')}" for name in _PLAN_DEFAULTS if getattr(args, name) is not None]
        if given:
            raise UserError(f"{', '.join(given)}: with a CONFIG the run's config holds these; set them with -o "
                            f"(model.encoder, model.head, fidelity.num_snippets, fidelity.frame_size_px, "
                            f"data.frames_per_snippet, train.optim.optimizer)")
        config = load_run_config(args.config, args.override)
        fidelity = config.fidelity
        if args.memory is not None:
            fidelity = dataclasses.replace(fidelity, memory=args.memory)
        if args.headroom is not None:
            fidelity = dataclasses.replace(fidelity, memory_headroom=args.headroom)
        if fidelity.memory is None:
            raise UserError(f"{args.config}: fidelity.memory is not set: give --memory, e.g. --memory 24GB")
        optim = config.train.optim
        batch = args.batch or max(1, optim.batch_size // optim.grad_accum_steps)
        plan = plan_for_run(dataclasses.replace(config, fidelity=fidelity), batch_per_rank=batch,
                            device=args.device, cycle=args.cycle)
    print(plan.table())
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(plan.to_dict(), indent=2) + "\n")
        print(f"plan: {args.output}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from lofi.infer.model_file import read_model_spec
    from lofi.train.export import export_run

    path = export_run(args.run_dir, args.output, path=args.path)
    spec = read_model_spec(path)
    windows = (f"sliding windows of {spec.num_snippets} snippets at {spec.windows.snippets_per_sec:g}/s"
               if spec.windows else f"each video as {spec.num_snippets} snippets")
    print(f"model written to {path} ({path.stat().st_size / 1e6:.1f} MB): {spec.encoder} + {spec.head}, "
          f"{len(spec.classes)} classes, {windows}, {spec.frame_size_px}px frames")
    return 0


def _float_in_unit(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value


def _cmd_detect(args: argparse.Namespace) -> int:
    from lofi.infer.detect_run import run_detect
    from lofi.infer.detector import Detector

    detector = Detector.load(args.model, device=args.device, batch_size=args.batch_size,
                             decode_threads=args.decode_threads, torch_threads=args.torch_threads)
    ground_truth = None
    if args.ground_truth:
        from lofi.data.formats import load_annotations

        ground_truth = load_annotations(args.ground_truth, as_annotated=True).annotations

    def show(result) -> None:
        if result.ok and not args.output and not args.csv:  # nothing written: the detections go to the terminal
            best = ", ".join(f"{d.label} {d.start_sec:.1f}-{d.end_sec:.1f}s ({d.score:.2f})"
                             for d in result.detections[:5])
            print(f"{result.video_id}: {len(result.detections)} detections{': ' + best if best else ''}")

    summary = run_detect(detector, args.videos, output=args.output, csv_path=args.csv, plots_dir=args.plots,
                         html_dir=args.html, ground_truth=ground_truth, threshold=args.threshold, top_k=args.top_k,
                         progress=not args.quiet, on_video=show)
    done = len(summary.results) - len(summary.skipped)
    print(f"{done} videos, {sum(len(d) for d in summary.detections.values())} detections in {summary.seconds:.1f} s")
    for path in summary.written:
        print(f"wrote {path}")
    if summary.skipped:
        print(f"lofi detect: {len(summary.skipped)} of {len(summary.results)} videos skipped (cannot be decoded):",
              file=sys.stderr)
        for result in summary.skipped:
            print(f"  {result.path}: {result.error}", file=sys.stderr)
        return EXIT_SKIPPED
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lofi", description="Temporal action localization with LoFi training.")
    parser.add_argument("--version", action="version", version=f"lofi {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    synth = commands.add_parser("synth", help="write a procedural synthetic untrimmed-video dataset")
    synth.add_argument("out_dir", metavar="OUT_DIR", help="output folder (videos/, annotations.json, synthetic.json)")
    _add_synth_options(synth, videos=24, classes=6)
    synth.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    synth.set_defaults(func=_cmd_synth)

    data = commands.add_parser("data", help="inspect datasets")
    data_commands = data.add_subparsers(dest="data_command", metavar="COMMAND")
    data_commands.required = True
    check = data_commands.add_parser(
        "check", help="validate annotations (and videos) and print a report; exit 1 if problems are found")
    check.add_argument("annotations", metavar="ANNOTATIONS",
                       help="ActivityNet/HACS JSON, THUMOS14 annotation folder, or CSV (video,start,end,label[,subset])")
    check.add_argument("--videos", metavar="DIR", help="folder of video files to check against the annotations")
    check.add_argument("--format", choices=["activitynet", "hacs", "thumos14", "csv"],
                       help="annotation format (default: from the path)")
    check.add_argument("--skip-invalid", action="store_true",
                       help="drop invalid entries and report them (the exit code still reports problems)")
    check.add_argument("--duration-tolerance", type=float, default=1.0, metavar="SEC",
                       help="allowed difference between annotated and file durations (default 1.0 s)")
    check.set_defaults(func=_cmd_data_check)

    evaluate = commands.add_parser("evaluate",
                                   help="detection mAP (or proposal AR@AN) of ActivityNet-format predictions")
    evaluate.add_argument("--ground-truth", required=True, metavar="GT", help="ground truth annotations")
    evaluate.add_argument("--predictions", required=True, metavar="PRED.json",
                          help="ActivityNet results JSON: results.{video}[{label, score, segment}]")
    evaluate.add_argument("--subset", default="validation", help="subset of the ground truth (default validation)")
    evaluate.add_argument("--tiou", default="0.5:0.95:0.05",
                          help="thresholds: START:STOP:STEP, a comma list, or thumos14 (default 0.5:0.95:0.05)")
    evaluate.add_argument("--format", choices=["activitynet", "hacs", "thumos14", "csv"],
                          help="ground truth format (default: from the path)")
    evaluate.add_argument("--output", metavar="metrics.json",
                          help="write the metrics as JSON (a missing folder is made; a folder: metrics.json in it)")
    evaluate.add_argument("--task", choices=["detection", "proposals"], default="detection",
                          help="detection mAP (default), or proposals: AR@AN and AUC, labels ignored")
    evaluate.add_argument("--max-proposals", type=float, default=100, metavar="AN",
                          help="proposals: the largest average number of proposals per video (default 100)")
    evaluate.add_argument("--plots", metavar="DIR",
                          help="write PNGs: mAP vs tIoU, per-class AP, precision-recall, timelines of a few videos")
    evaluate.add_argument("--skip-invalid", action="store_true",
                          help="leave out invalid ground-truth entries instead of stopping; they are listed at the "
                               "end and in skipped.json beside --output (or in --plots)")
    evaluate.set_defaults(func=_cmd_evaluate)

    post = commands.add_parser("postprocess", help="NMS / Soft-NMS on saved raw predictions, without the model")
    post.add_argument("--predictions", required=True, metavar="RAW.json",
                      help="ActivityNet results JSON of raw candidates: results.{video}[{label, score, segment}]")
    post.add_argument("--output", required=True, metavar="PRED.json", help="where to write the detections")
    post.add_argument("--method", choices=["soft_nms_gaussian", "soft_nms_linear", "nms", "none"],
                      default="soft_nms_gaussian", help="suppression (default soft_nms_gaussian)")
    post.add_argument("--iou-threshold", type=float, default=0.5,
                      help="NMS: suppress above this IoU; linear Soft-NMS: decay above it (default 0.5)")
    post.add_argument("--sigma", type=float, default=0.5, help="Gaussian Soft-NMS width (default 0.5)")
    post.add_argument("--min-score", type=float, default=1e-3, help="drop detections below (default 0.001)")
    post.add_argument("--top-k", type=_positive_int, default=100, help="detections kept per video (default 100)")
    post.add_argument("--class-agnostic", action="store_true", help="suppress across classes")
    post.add_argument("--video-scores", metavar="SCORES.json",
                      help="video-level class scores (results.{video}[{label, score}]): candidates become "
                           "class-agnostic proposals given the video's top classes")
    post.add_argument("--video-top-k", type=_positive_int, default=2,
                      help="with --video-scores: classes per proposal (default 2)")
    post.add_argument("--fuse", choices=["multiply", "geometric"], default="multiply",
                      help="with --video-scores: proposal x class score, or its square root (default multiply)")
    post.set_defaults(func=_cmd_postprocess)

    export = commands.add_parser("export", help="a trained run's detector as one model file (safetensors, no pickle)")
    export.add_argument("run_dir", metavar="RUN_DIR", help="the run folder (OUT_DIR/NAME, holding stage3_head_*)")
    export.add_argument("-o", "--output", required=True, metavar="FILE", help="the model file to write (model.lofi)")
    export.add_argument("--path", choices=("lofi", "frozen"), default="lofi",
                        help="which detector of the run: the LoFi-tuned encoder (default) or the frozen baseline")
    export.set_defaults(func=_cmd_export)

    detect = commands.add_parser("detect", help="find the actions in video files with an exported model")
    detect.add_argument("videos", nargs="+", metavar="VIDEO_OR_DIR", help="video files, or folders of them")
    detect.add_argument("--model", required=True, metavar="FILE", help="a model file (lofi export)")
    detect.add_argument("--output", metavar="FILE", help="ActivityNet results JSON (lofi evaluate reads it)")
    detect.add_argument("--csv", metavar="FILE", help="detections as CSV: video_id,label,start_sec,end_sec,score")
    detect.add_argument("--plots", metavar="DIR", help="a timeline PNG per video")
    detect.add_argument("--html", metavar="DIR", help="a viewer page: each video beside its detections")
    detect.add_argument("--ground-truth", metavar="FILE", help="annotations to show beside the detections")
    detect.add_argument("--threshold", type=_float_in_unit, default=0.0, help="lowest score kept (default 0)")
    detect.add_argument("--top-k", type=_positive_int, help="most detections kept per video (default: the model's)")
    detect.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    detect.add_argument("--batch-size", type=_positive_int, default=4,
                        help="chunks of snippets (or whole videos) per encoder call (default 4)")
    detect.add_argument("--decode-threads", type=int, default=1, help="FFmpeg decoding threads (0: FFmpeg chooses)")
    detect.add_argument("--torch-threads", type=_positive_int, default=None,
                        help="the model's CPU threads (default: the cores left by the decoder threads)")
    detect.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    detect.set_defaults(func=_cmd_detect)

    models = commands.add_parser("models", help="list the registered encoders and heads with parameter counts")
    models.add_argument("--in-dim", type=_positive_int, default=512, help="head input channels (default 512)")
    models.add_argument("--num-snippets", type=_positive_int, default=100, help="head window length T (default 100)")
    models.add_argument("--num-classes", type=_positive_int, default=200, help="classes (default 200)")
    models.set_defaults(func=_cmd_models)

    plan = commands.add_parser("plan", help="which stage-2 fidelity and memory levers fit a memory budget (measured "
                                            "at small probes, predicted at full size)")
    plan.add_argument("config", metavar="CONFIG", nargs="?",
                      help="plan for this run config's stage 2 (a YAML or a preset name: its encoder and head with "
                           "their options, frozen stages and BN, fidelity, frames per snippet, optimizer and batch); "
                           "without one, for the flags below")
    plan.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                      help="set a value of CONFIG, e.g. -o model.encoder_options.frozen_stages=2 (repeatable)")
    plan.add_argument("--memory", help="device memory per process: 24GB (10^9 bytes), 24GiB (2^30), 500MB, 1.5TB "
                                       "(with a CONFIG, default its fidelity.memory)")
    plan.add_argument("--encoder", help="default tsm_resnet18")
    plan.add_argument("--head", help="default gtad")
    plan.add_argument("--batch", type=_positive_int,
                      help="videos per step per process (default 1; with a CONFIG, its batch per accumulation step)")
    plan.add_argument("--num-snippets", type=_positive_int, help="full fidelity's T (default 100)")
    plan.add_argument("--frame-size", type=_positive_int, help="full fidelity's S in px (default 224)")
    plan.add_argument("--frames-per-snippet", type=_positive_int, help="F (default 8)")
    plan.add_argument("--optimizer", choices=("sgd", "adamw"), help="default sgd")
    plan.add_argument("--cycle", choices=("C-long", "C-short"), default="C-long",
                      help="the cycle recommended when full fidelity does not fit (default C-long)")
    plan.add_argument("--headroom", type=_headroom,
                      help="share of --memory kept free for what is not the step's tensors (the CUDA context, "
                           "allocator fragmentation): 0.1 (default; with a CONFIG its fidelity.memory_headroom) or "
                           "10%%; 0 plans to the byte")
    plan.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the probes run (default cpu)")
    plan.add_argument("--threads", type=_positive_int, help="torch CPU threads for the probes")
    plan.add_argument("--output", type=Path, metavar="PLAN.json", help="also write the plan (every candidate and "
                                                                        "the recommendation) as JSON")
    plan.set_defaults(func=_cmd_plan)

    pretrain = commands.add_parser("pretrain", help="stage 1: the encoder as a classifier of trimmed clips")
    _add_run_options(pretrain)
    train = commands.add_parser("train", help="stage 2: encoder + head end to end at low fidelity (LoFi)")
    _add_run_options(train)
    train.add_argument("--encoder-weights", metavar="PATH", help="start from these weights (default: stage 1's)")
    extract = commands.add_parser("extract", help="stage 3a: full-fidelity features with the frozen encoder")
    _add_run_options(extract)
    extract.add_argument("--encoder-weights", metavar="PATH", help="default: stage 2's encoder, else stage 1's")
    extract.add_argument("--out", metavar="DIR", help="features folder (default RUN_DIR/features)")
    train_head = commands.add_parser("train-head", help="stage 3b: a head trained on features, then evaluated")
    _add_run_options(train_head)
    train_head.add_argument("--features", required=True, metavar="DIR", help="features folder (lofi extract)")
    train_head.add_argument("--out", metavar="DIR", help="output folder (default RUN_DIR/stage3_head)")
    run = commands.add_parser("run", help="all stages: pretrain, frozen baseline, LoFi, extract, head, evaluate")
    _add_run_options(run)
    run.add_argument("--no-baseline", action="store_true", help="skip the frozen stage-1 features baseline")

    experiment = commands.add_parser("experiment", help="experiments over several stage runs and seeds")
    experiment_commands = experiment.add_subparsers(dest="experiment_command", metavar="EXPERIMENT")
    experiment_commands.required = True
    table = experiment_commands.add_parser(
        "lofi-table", help="the same stage 3 after each encoder (random, ACP, ACP+, matched steps, S, T, ST, C-short, "
                           "C-long, full fidelity with memory levers), per seed: table.md, results.json, plots")
    table.add_argument("config", metavar="CONFIG", help="run config YAML, or a preset name; the experiment folder "
                                                       "is its out_dir/name")
    table.add_argument("--seeds", type=_int_list, metavar="S1,S2,...",
                       help="seeds, each a whole run of every cell (default: experiment.seeds, 101,102,103)")
    table.add_argument("--cells", type=_name_list, metavar="CELL,...",
                       help="the cells to run (default: experiment.cells, all of them; docs/training.md)")
    table.add_argument("--jobs", type=_positive_int, default=1,
                       help="tasks at once, each in its own process with cores / jobs threads (default 1)")
    table.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                       help="set a config value, e.g. -o experiment.acp.synthetic=true (repeatable)")
    table.add_argument("--dry-run", action="store_true",
                       help="train nothing: print per cell its fidelities, optimiser steps, predicted peak memory "
                            "per process (lofi plan's memory model) and, with --step-times, its hours")
    table.add_argument("--step-times", metavar="FILE", action="append", default=[],
                       help="--dry-run: measured step times (benchmarks/train_speed.py --output FILE; repeatable)")
    table.add_argument("--probe-device", choices=("cpu", "cuda"), default="cpu",
                       help="--dry-run: where the memory model's probes run (default cpu)")
    table.set_defaults(func=_cmd_experiment)

    demo = commands.add_parser("demo", help="run the main job on the built-in synthetic dataset")
    demo.add_argument("--out", default="lofi-demo", help="output folder (default ./lofi-demo)")
    demo.add_argument("--videos", type=_positive_int, default=192, help="synthetic videos (default 192)")
    demo.add_argument("--classes", type=_positive_int, default=4, help="action classes (default 4)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                      help="change the synthetic preset, e.g. -o train.optim.epochs=2 (repeatable)")
    demo.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    demo.add_argument("--data-only", action="store_true",
                      help="generate and check the dataset (OUT/synthetic), train nothing: the data of "
                           "lofi experiment lofi-table synthetic (docs/results.md)")
    demo.add_argument("--skip-invalid", action="store_true", help=SKIP_INVALID_HELP.replace(
        "skipped.json", "the run folder's skipped.json"))
    demo.set_defaults(func=_cmd_demo)
    return parser


def user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that are the user's to fix: one line and exit 2. ``ValueError`` covers ``ConfigError``,
    ``AnnotationError`` and ``RunMismatchError``; ``OSError`` covers missing files and unusable paths. Add a new
    class by inheriting :class:`lofi.errors.UserError`, or here."""
    from lofi.data.video import VideoReadError
    from lofi.errors import UserError

    return (UserError, VideoReadError, ValueError, OSError)


_OS_ERROR_HINTS: dict[type[OSError], str] = {
    FileNotFoundError: "check the path",
    IsADirectoryError: "give a file, not a folder",
    NotADirectoryError: "a part of the path is a file, not a folder; check the path",
    FileExistsError: "a file is in the way of a folder; pick another path",  # mkdir over a file
    PermissionError: "check the permissions",
}


def _worker_message(text: str) -> str:
    """The error line of torch's "Caught X in DataLoader worker process N. Original Traceback ..." text."""
    if not (text.startswith("Caught ") and " in DataLoader worker process " in text.split("\n", 1)[0]):
        return text
    last = [line for line in text.splitlines() if line.strip()][-1]
    return re.sub(r"^[\w.]+: ", "", last, count=1)


def user_message(exc: BaseException, *, skip_flag: bool) -> str:
    """What to print for a user error: the file or key, the problem, what to do. ``skip_flag``: the command has
    ``--skip-invalid``, which its messages then suggest."""
    from lofi.data.annotations import AnnotationError
    from lofi.data.video import VideoReadError

    if isinstance(exc, AnnotationError) and exc.problems:
        errors = [p for p in exc.problems if p.severity == "error"] or exc.problems
        more = f" (and {len(errors) - 1} more: `lofi data check` lists them)" if len(errors) > 1 else ""
        fix = "fix the entry, or pass --skip-invalid to leave invalid entries out" if skip_flag else "fix the entry"
        return f"{errors[0]}{more}; {fix}"
    if isinstance(exc, VideoReadError):
        fix = "replace the file, or pass --skip-invalid to leave the video out" if skip_flag else "replace the file"
        return f"{exc.path}: {exc.reason}; {fix}"
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        hint = next((h for cls, h in _OS_ERROR_HINTS.items() if isinstance(exc, cls)), "check the path")
        return f"{exc.filename}: {exc.strerror}; {hint}"
    message = _worker_message(str(exc)) or type(exc).__name__
    if isinstance(exc, FileNotFoundError) and ";" not in message:
        message += "; check the path"
    return message


def _command_name(args: argparse.Namespace) -> str:
    if args.command == "data":
        return f"{args.command} {args.data_command}"
    if args.command == "experiment":
        return f"{args.command} {args.experiment_command}"
    return args.command


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s: %(message)s")
    name = _command_name(args)
    try:
        return int(args.func(args))
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        if args.verbose:
            traceback.print_exc()
        print(f"lofi {name}: interrupted{_resume_hint(name)}", file=sys.stderr)
        return 130
    except user_errors() as exc:
        if not _raised_by_lofi(exc):
            return _report_bug(name, exc)
        if args.verbose:
            traceback.print_exc()
        print(f"lofi {name}: {user_message(exc, skip_flag=hasattr(args, 'skip_invalid'))}", file=sys.stderr)
        _release_frames(exc)
        return 2
    except Exception as exc:
        if _caused_by_interrupt(exc):  # Ctrl-C inside a C++ call (torch.save's zip writer) comes back wrapped
            print(f"lofi {name}: interrupted{_resume_hint(name)}", file=sys.stderr)
            return 130
        return _report_bug(name, exc)


def _caused_by_interrupt(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _resume_hint(name: str) -> str:
    return "; run the same command again to resume from the last checkpoint" if name in TRAINING_COMMANDS else ""


def _release_frames(exc: BaseException) -> None:
    """Let go of what the failed command still holds through the traceback's frames (a DataLoader iterator and its
    worker processes above all): shut down now, not by multiprocessing at interpreter exit, where a worker killed
    mid-join prints a traceback after the one-line message."""
    traceback.clear_frames(exc.__traceback__)
    exc.__traceback__ = None
    gc.collect()


def _raised_by_lofi(exc: BaseException) -> bool:
    """Whether ``exc`` is a message for the user: a :class:`~lofi.errors.UserError` or another lofi error class, an
    ``OSError`` (a path), or a ``ValueError`` raised in lofi's own code. A ``ValueError`` from deep inside torch,
    say, is a bug to report with its traceback."""
    from lofi.errors import UserError

    if isinstance(exc, (UserError, OSError)) or type(exc).__module__.startswith("lofi."):
        return True  # lofi's own error classes; a file or folder the system refused
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last = tb
        tb = tb.tb_next
    package = os.path.dirname(os.path.abspath(__file__))
    return last is not None and os.path.abspath(last.tb_frame.f_code.co_filename).startswith(package + os.sep)


def _report_bug(name: str, exc: BaseException) -> int:
    traceback.print_exception(exc)
    print(f"lofi {name}: unexpected {type(exc).__name__} (traceback above): this looks like a bug in lofi; "
          f"please report it with the traceback and the command", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
