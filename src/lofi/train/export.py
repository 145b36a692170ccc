"""``lofi export RUN_DIR -o model.lofi``: a trained run's detector as one self-contained model file.

A run of ``lofi run`` (or ``lofi demo``) holds two detectors: the LoFi path (the stage-2 encoder, its features in
``features_lofi/``, its head in ``stage3_head_lofi/``) and the frozen baseline (the stage-1 encoder,
``features_frozen/``, ``stage3_head_frozen/``). :func:`export_run` takes one of them, by default the LoFi path, and
writes its encoder and head weights with everything needed to run them (:class:`~lofi.infer.model_file.ModelSpec`)
into one safetensors file. The encoder is the one that made the head's features: its weights file is the one the
features' meta names, checked against the digest recorded there.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

import torch

from lofi.config import RunConfig, load_config
from lofi.data.features import read_feature_file
from lofi.errors import UserError
from lofi.infer.model_file import ModelSpec, WindowSpec, write_model_file
from lofi.models import create_encoder
from lofi.models.options import head_kwargs
from lofi.runtime.run_identity import file_digest
from lofi.train.head_stage import CLASSES_FILE

DetectorPath = Literal["lofi", "frozen"]
PATHS: tuple[str, ...] = ("lofi", "frozen")


class ExportError(UserError, ValueError):
    """A run folder that cannot be exported, with what is missing."""


def export_run(run_dir: str | os.PathLike, out: str | os.PathLike, *, path: DetectorPath = "lofi") -> Path:
    """Write the detector of ``run_dir``'s ``path`` (``"lofi"`` or ``"frozen"``) to ``out``; returns ``out``."""
    if path not in PATHS:
        raise ExportError(f"path must be one of {', '.join(PATHS)}, got {path!r}")
    run = Path(run_dir)
    head_dir, features_dir = _stage_dirs(run, path)
    config = load_config(head_dir / "config.yaml")
    features_file = next(iter(sorted(features_dir.glob("*.pt"))), None)
    if features_file is None:
        raise ExportError(f"{features_dir}: no feature file; the run has not extracted features for its {path} path")
    features, _, meta = read_feature_file(features_file)
    weights = _encoder_weights(run, path, meta)
    encoder = create_encoder(meta["encoder"], weights=weights, **meta.get("encoder_options", {}))
    head_state = torch.load(head_dir / "head.pt", map_location="cpu", weights_only=True)
    ev = config.eval
    windows = config.data.windows
    spec = ModelSpec(
        classes=_classes(head_dir, config),
        encoder=meta["encoder"], encoder_options=dict(meta.get("encoder_options", {})),
        head=config.model.head, head_options=head_kwargs(config.model),
        feature_dim=int(features.shape[0]), num_snippets=int(meta["num_snippets"]),
        frame_size_px=int(meta["frame_size_px"]), frames_per_snippet=int(meta["frames_per_snippet"]),
        frame_stride=int(meta["frame_stride"]),
        postprocess={"method": ev.method, "iou_threshold": ev.iou_threshold, "sigma": ev.sigma,
                     "min_score": ev.min_score, "max_detections": ev.max_detections},
        video_top_k=ev.video_top_k,
        windows=None if windows is None else WindowSpec(snippets_per_sec=windows.snippets_per_sec,
                                                        stride_snippets=windows.stride_snippets,
                                                        merge=windows.merge),
        source={"run_dir": str(run.resolve()), "path": path, "run_name": config.name, "seed": config.seed,
                "encoder_weights_sha256": meta.get("encoder_weights_sha256"),
                "head_sha256": file_digest(head_dir / "head.pt")},
    )
    return write_model_file(out, spec, encoder_state=encoder.state_dict(), head_state=head_state)


def _stage_dirs(run: Path, path: str) -> tuple[Path, Path]:
    if not run.is_dir():
        raise ExportError(f"{run}: no such run folder")
    head_dir, features_dir = run / f"stage3_head_{path}", run / f"features_{path}"
    if not (head_dir / "head.pt").is_file():
        inside = sorted(p.parent.parent.name for p in run.glob(f"*/stage3_head_{path}/head.pt"))
        hint = (f"; it holds the run(s) {', '.join(inside)}: export {run / inside[0]}" if inside else
                f"; train it first (`lofi run`), or export --path {'frozen' if path == 'lofi' else 'lofi'}")
        raise ExportError(f"{run}: not a finished run: no {head_dir.name}/head.pt{hint}")
    if not features_dir.is_dir():
        raise ExportError(f"{run}: no {features_dir.name}/ (the features the head was trained on)")
    return head_dir, features_dir


def _encoder_weights(run: Path, path: str, meta: dict) -> Path:
    """The weights file the features were made with: as recorded, else the stage's file in ``run``."""
    recorded, digest = meta.get("encoder_weights"), meta.get("encoder_weights_sha256")
    if recorded is None:
        raise ExportError(f"{run}: the {path} features were made by an encoder without a weights file (random "
                          f"initialisation), which cannot be exported; enable pretraining or set "
                          f"model.encoder_weights")
    stage_file = run / ("stage2_lofi" if path == "lofi" else "stage1_pretrain") / "encoder.pt"
    for candidate in (Path(recorded), run / recorded, stage_file):
        if candidate.is_file() and (digest is None or file_digest(candidate) == digest):
            return candidate
    raise ExportError(f"{run}: the encoder weights the {path} features were made with ({recorded}, sha256 "
                      f"{digest}) are not found (nor a file with that digest at {stage_file})")


def _classes(head_dir: Path, config: RunConfig) -> list[str]:
    """The head's classes in output order: ``classes.json`` beside the head, else the run's annotations."""
    saved = head_dir / CLASSES_FILE
    if saved.is_file():
        return list(json.loads(saved.read_text(encoding="utf-8"))["classes"])
    from lofi.data.formats import load_annotations

    try:
        return list(load_annotations(config.data.annotations, format=config.data.format).annotations.classes)
    except (OSError, ValueError) as exc:
        raise ExportError(f"{head_dir}: no {CLASSES_FILE} (a run of an older lofi) and the run's annotations "
                          f"({config.data.annotations}) cannot be read for the class names: {exc}") from None


__all__ = ["ExportError", "PATHS", "export_run"]
