"""Run identity: what determines a stage's result, recorded beside its outputs and checked before anything is reused.

A stage folder (``stage1_pretrain``, ``stage2_lofi``, a features folder, ``stage3_head*``) holds the results of
exactly one identity: the part of the resolved config that determines them (:data:`STAGE_KEYS`) and digests of
their inputs (annotations, video files, encoder weights, features). ``identity.json`` records it, with its
fingerprint, when the stage starts for real, beside a ``config.yaml`` of the whole resolved config.

:func:`stage_guard` is what every stage runs inside: it holds the folder's lock (:mod:`lofi.runtime.run_lock`) and

* with ``resume`` and results already there, requires the same fingerprint: a different one stops with a
  :class:`RunMismatchError` that lists the keys that differ (old and new values) and the two ways on
  (``--no-resume`` or another output folder); results without an ``identity.json`` (made by hand or by an
  older lofi) are refused the same way;
* otherwise (no results, or ``resume=False``) removes the stage's previous results and checkpoints (only the
  files that stage writes) and records the new identity.

Keys that never change a result (``name``, ``out_dir``, ``device``, ``data.num_workers``, ``data.cache_dir``,
checkpointing cadence, extraction batch size) are left out, so a run can move machine, folder or worker count and
still resume. Paths of inputs are left out too, and their content is digested instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from lofi.version import __version__
from lofi.config import RunConfig, config_to_dict, save_config
from lofi.errors import UserError
from lofi.io import atomic_write
from lofi.models.options import encoder_kwargs, head_kwargs

IDENTITY_FILE = "identity.json"
STAGE_CONFIG_FILE = "config.yaml"
IDENTITY_FORMAT = "lofi.run_identity/1"

#: Dotted config keys (a section, or one key with everything under it) that determine each stage's result. A
#: section that no stage reads (``experiment``: what ``lofi experiment`` runs) is in none of them. ``init`` and
#: ``plan`` are ``lofi experiment``'s: an encoder's seeded initial weights, and a stage-2 memory plan.
STAGE_KEYS: dict[str, tuple[str, ...]] = {
    "pretrain": ("seed", "data", "model.encoder", "model.encoder_options", "pretrain"),
    "lofi": ("seed", "data", "model.encoder", "model.encoder_options", "model.head", "model.head_options",
             "fidelity", "train"),
    "extract": ("data.format", "data.frames_per_snippet", "data.frame_stride", "data.on_error", "model.encoder",
                "model.encoder_options", "fidelity.num_snippets", "fidelity.frame_size_px", "data.windows"),
    "head": ("seed", "data.format", "data.train_subset", "data.val_subset", "data.on_error", "model.head",
             "model.head_options", "fidelity.num_snippets", "head", "eval", "data.windows"),
    "init": ("seed", "model.encoder", "model.encoder_options"),
    "plan": ("data.frames_per_snippet", "model.encoder", "model.encoder_options", "model.head", "model.head_options",
             "fidelity.num_snippets", "fidelity.frame_size_px", "train.frozen_bn", "train.optim.optimizer",
             "train.optim.batch_size", "train.optim.grad_accum_steps"),
}
#: Keys that a stage's sections hold but that never change its result (stage 1 is not windowed; stage 2 is, so
#: ``data.windows`` counts there when set).
STAGE_NEUTRAL_KEYS: dict[str, tuple[str, ...]] = {"pretrain": ("data.windows",)}
#: Keys under those sections that never change a result.
NEUTRAL_KEYS: tuple[str, ...] = ("data.annotations", "data.videos", "data.num_workers", "data.cache_dir",
                                 "pretrain.enabled", "train.enabled", "head.extract_batch_size",
                                 "pretrain.optim.checkpoint_every_steps", "pretrain.optim.keep_epoch_checkpoints",
                                 "train.optim.checkpoint_every_steps", "train.optim.keep_epoch_checkpoints",
                                 "head.optim.checkpoint_every_steps", "head.optim.keep_epoch_checkpoints")
#: What each stage writes in its folder (globs): removed when the stage starts over, and their presence is what
#: makes a folder "hold results".
STAGE_OUTPUTS: dict[str, tuple[str, ...]] = {
    "pretrain": ("encoder.pt", "latest.pt", "epoch_*.pt", "*.tmp", "metrics.jsonl", "metrics.csv", "curves.png"),
    "lofi": ("encoder.pt", "latest.pt", "epoch_*.pt", "*.tmp", "metrics.jsonl", "metrics.csv", "curves.png",
             "plan.json"),
    "extract": ("*.pt", "*.tmp"),
    "head": ("head.pt", "latest.pt", "epoch_*.pt", "*.tmp", "metrics.jsonl", "metrics.csv", "curves.png",
             "metrics.json", "predictions.json", "raw_predictions.json", "video_scores.json", "plots/*.png"),
    "init": ("encoder.pt", "*.tmp"),
    "plan": ("plan.json", "*.tmp"),
}


class RunMismatchError(UserError, ValueError):
    """A stage folder holds results of other settings (or of unknown settings) and may not be reused."""


def _digest_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def file_digest(path: str | os.PathLike) -> str:
    """sha256 (16 hex digits) of a file's bytes, or of a folder's files (names and bytes, sorted)."""
    path = Path(path)
    if path.is_dir():
        parts = [f"{p.relative_to(path).as_posix()}:{file_digest(p)}" for p in sorted(path.rglob("*")) if p.is_file()]
        return _digest_bytes("\n".join(parts).encode())
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def listing_digest(folder: str | os.PathLike, names: Sequence[str] | None = None) -> str:
    """Digest of a folder's file names, sizes and modification times (cheap: no file is read), e.g. the feature
    files of a folder. ``names`` restricts it to those files (relative paths)."""
    folder = Path(folder)
    files = [folder / n for n in names] if names is not None else [p for p in folder.rglob("*") if p.is_file()]

    def row(path: Path) -> str:
        if not path.is_file():
            return f"{path.relative_to(folder).as_posix()}:missing"
        stat = path.stat()
        return f"{path.relative_to(folder).as_posix()}:{stat.st_size}:{stat.st_mtime_ns}"

    return _digest_bytes("\n".join(sorted(row(p) for p in files)).encode())


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists and scalars are leaves)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _selected(key: str, entries: Sequence[str]) -> bool:
    return any(key == e or key.startswith(e + ".") for e in entries)


@dataclass(frozen=True)
class StageIdentity:
    """What determines one stage's result: its config keys (flat, dotted) and its inputs' digests."""

    stage: str
    config: dict[str, Any]
    inputs: dict[str, str] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        text = json.dumps({"stage": self.stage, "config": self.config, "inputs": self.inputs}, sort_keys=True,
                          default=str)
        return _digest_bytes(text.encode())

    def to_dict(self) -> dict[str, Any]:
        return {"format": IDENTITY_FORMAT, "fingerprint": self.fingerprint, "stage": self.stage,
                "config": self.config, "inputs": self.inputs}

    def differences(self, other: "StageIdentity") -> list[str]:
        """``key: old -> new`` lines for what differs between ``other`` (old) and this one (new)."""
        lines = []
        for kind, old, new in (("", other.config, self.config), ("input ", other.inputs, self.inputs)):
            for key in sorted(set(old) | set(new)):
                if old.get(key, "<absent>") != new.get(key, "<absent>"):
                    lines.append(f"{kind}{key}: {_show(old.get(key, '<absent>'))} -> {_show(new.get(key, '<absent>'))}")
        if other.stage != self.stage:
            lines.insert(0, f"stage: {other.stage} -> {self.stage}")
        return lines


def _show(value: Any) -> str:
    return value if isinstance(value, str) and value.startswith("<") else json.dumps(value, default=str)


def stage_identity(stage: str, config: RunConfig, inputs: Mapping[str, str] | None = None) -> StageIdentity:
    """The identity of ``stage`` (a key of :data:`STAGE_KEYS`) under ``config``, with ``inputs`` digests."""
    if stage not in STAGE_KEYS:
        raise ValueError(f"unknown stage {stage!r}; known: {', '.join(STAGE_KEYS)}")
    tree = config_to_dict(config)
    # only the selected models' options count (options may be kept per model name)
    tree["model"] = {**tree["model"], "encoder_options": encoder_kwargs(config.model),
                     "head_options": head_kwargs(config.model)}
    if tree["data"]["windows"] is None:  # unset: left out, so identities recorded before the key existed still match
        del tree["data"]["windows"]
    if tree["train"]["partial_backprop"] is None:  # likewise: off, as before the key existed
        del tree["train"]["partial_backprop"]
    if tree["fidelity"]["memory"] is None:  # likewise: no budget (fidelity.mode=auto), as before the keys existed
        del tree["fidelity"]["memory"], tree["fidelity"]["memory_headroom"]
    flat = flatten(tree)
    neutral = NEUTRAL_KEYS + STAGE_NEUTRAL_KEYS.get(stage, ())
    chosen = {k: v for k, v in flat.items() if _selected(k, STAGE_KEYS[stage]) and not _selected(k, neutral)}
    return StageIdentity(stage=stage, config=chosen, inputs=dict(inputs or {}))


def read_identity(folder: str | os.PathLike) -> StageIdentity | None:
    """The identity recorded in ``folder``, None when there is none (a damaged file raises RunMismatchError)."""
    path = Path(folder) / IDENTITY_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != IDENTITY_FORMAT:
            raise ValueError(f"format {data.get('format')!r}, expected {IDENTITY_FORMAT!r}")
        return StageIdentity(stage=str(data["stage"]), config=dict(data["config"]), inputs=dict(data["inputs"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RunMismatchError(f"{path}: unreadable run identity ({exc}); start the stage over with --no-resume "
                               f"or write to another folder") from exc


def stage_results(folder: str | os.PathLike, stage: str) -> list[Path]:
    """The files ``stage`` wrote in ``folder`` (see :data:`STAGE_OUTPUTS`)."""
    folder = Path(folder)
    found: set[Path] = set()
    for pattern in STAGE_OUTPUTS[stage]:
        found.update(p for p in folder.glob(pattern) if p.is_file() and p.name != IDENTITY_FILE)
    return sorted(found)


def _remove_results(folder: Path, stage: str, *, recorded: bool) -> None:
    """Remove what ``stage`` wrote in ``folder``. In a features folder lofi did not record, only the files that
    read as lofi feature files go (a user's own ``.pt`` files there stay)."""
    from lofi.data.features import read_features

    for path in stage_results(folder, stage):
        if stage == "extract" and not recorded and path.suffix == ".pt":
            try:
                read_features(path)
            except (OSError, ValueError):
                continue
        path.unlink(missing_ok=True)
    (folder / IDENTITY_FILE).unlink(missing_ok=True)


def mark_complete(folder: str | os.PathLike) -> None:
    """Record in ``folder``'s identity that the stage finished (what a stage without checkpoints, extraction,
    reuses on a rerun)."""
    path = Path(folder) / IDENTITY_FILE
    record = json.loads(path.read_text(encoding="utf-8"))
    record["completed"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    text = json.dumps(record, indent=2, default=str) + "\n"
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def is_complete(folder: str | os.PathLike) -> bool:
    """Whether ``folder``'s identity records that its stage finished."""
    try:
        return bool(json.loads((Path(folder) / IDENTITY_FILE).read_text(encoding="utf-8")).get("completed"))
    except (OSError, ValueError, AttributeError):
        return False


def _write_identity(folder: Path, identity: StageIdentity, config: RunConfig) -> None:
    record = {**identity.to_dict(), "lofi_version": __version__,
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": list(sys.argv)}
    save_config(config, folder / STAGE_CONFIG_FILE)
    text = json.dumps(record, indent=2, default=str) + "\n"
    atomic_write(folder / IDENTITY_FILE, lambda handle: handle.write(text.encode("utf-8")))


def mismatch_message(folder: Path, recorded: StageIdentity | None, identity: StageIdentity, *,
                     new_folder_hint: str) -> str:
    """Why ``folder``'s results cannot be reused, and what to do."""
    ways = (f"start it over with --no-resume (its results and checkpoints there are replaced), or "
            f"{new_folder_hint}")
    if recorded is None:
        return (f"{folder}: holds results without a run identity ({IDENTITY_FILE}: made by hand or by an older "
                f"lofi), so nothing says which settings made them; {ways}")
    lines = identity.differences(recorded)
    shown = "\n".join(f"  {line}" for line in lines[:20])
    more = f"\n  ... and {len(lines) - 20} more" if len(lines) > 20 else ""
    return (f"{folder}: holds results of other settings ({len(lines)} differ, recorded -> now):\n{shown}{more}\n"
            f"reusing them would report the old result as the new one; {ways}")


@dataclass
class StageStart:
    """How a stage begins: ``reusing`` what is already there (same identity), ``complete`` if that recorded the
    stage as finished (:func:`mark_complete`), or starting fresh."""

    folder: Path
    identity: StageIdentity
    reusing: bool
    complete: bool = False


def _prepare(folder: Path, identity: StageIdentity, config: RunConfig, *, resume: bool,
             new_folder_hint: str) -> tuple[bool, bool]:
    """Check or clear ``folder`` for ``identity`` (see the module docstring); ``(reusing, complete)``."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        recorded = read_identity(folder)
    except RunMismatchError:
        if resume:
            raise
        recorded = None  # starting over: a damaged record is replaced like any other
    if recorded is not None and recorded.stage != identity.stage:
        raise RunMismatchError(f"{folder}: holds the results of another stage ({recorded.stage}), not of "
                               f"{identity.stage}; nothing there is replaced, even with --no-resume: "
                               f"{new_folder_hint}")
    has_results = bool(stage_results(folder, identity.stage))
    if resume and has_results:
        if recorded is None or recorded.fingerprint != identity.fingerprint:
            raise RunMismatchError(mismatch_message(folder, recorded, identity, new_folder_hint=new_folder_hint))
        return True, is_complete(folder)
    if resume and recorded is not None and recorded.fingerprint == identity.fingerprint:
        return True, is_complete(folder)  # started before, nothing written yet: same settings, nothing to clear
    _remove_results(folder, identity.stage, recorded=recorded is not None)
    _write_identity(folder, identity, config)
    return False, False


@contextlib.contextmanager
def stage_guard(folder: str | os.PathLike, identity: StageIdentity, config: RunConfig, *, resume: bool,
                is_main: bool = True, new_folder_hint: str = "choose another output folder",
                share: Callable[[Any], Any] | None = None) -> Iterator[StageStart]:
    """Hold ``folder``'s lock for the stage's life and make sure what is there belongs to ``identity`` (see the
    module docstring). ``is_main``: only the main process locks, checks and writes; ``share(obj)`` (under
    torchrun: a broadcast from rank 0) hands the main process's outcome to every process, so all of them reuse,
    start fresh or stop together."""
    from lofi.runtime.run_lock import FolderLock

    folder = Path(folder)
    with contextlib.ExitStack() as stack:
        outcome: tuple[str, Any] = ("ok", (False, False))
        error: BaseException | None = None
        if is_main:
            try:
                stack.enter_context(FolderLock(folder))
                outcome = ("ok", _prepare(folder, identity, config, resume=resume, new_folder_hint=new_folder_hint))
            except Exception as exc:  # every process must learn that the stage stops, or the others would wait
                error = exc
                outcome = ("error", f"{type(exc).__name__}: {exc}")
        if share is not None:
            outcome = share(outcome)
        if error is not None:
            raise error
        if outcome[0] == "error":
            raise RunMismatchError(f"the main process stopped: {outcome[1]}")
        reusing, complete = outcome[1]
        yield StageStart(folder=folder, identity=identity, reusing=reusing, complete=complete)


def dataset_inputs(config: RunConfig, video_ids: Sequence[str] | None) -> dict[str, str]:
    """Digests of a run's data: the annotation file (or folder) and the names and sizes of ``video_ids``' files
    (None: no videos, e.g. for a head trained on features)."""
    from lofi.data.video import find_video_files

    inputs = {"annotations": file_digest(config.data.annotations)}
    if video_ids is not None:
        files = find_video_files(config.data.videos)
        rows = sorted(f"{v}:{files[v].name}:{files[v].stat().st_size}" if v in files else f"{v}:missing"
                      for v in video_ids)
        inputs["videos"] = _digest_bytes("\n".join(rows).encode())
    return inputs


def weights_input(path: str | os.PathLike | None) -> dict[str, str]:
    """``{"encoder_weights": digest}`` of a weights file, or ``{"encoder_weights": "none"}`` (from scratch)."""
    return {"encoder_weights": file_digest(path) if path else "none"}


def features_input(folder: str | os.PathLike) -> dict[str, str]:
    """A features folder as an input: its recorded identity's fingerprint (made by ``lofi extract``) and the names
    and sizes of its files, or only the latter for features from elsewhere."""
    recorded = read_identity(folder)
    return {"features": recorded.fingerprint if recorded is not None else "unrecorded",
            "feature_files": listing_digest(folder, [p.name for p in Path(folder).glob("*.pt")])}
