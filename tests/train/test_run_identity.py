"""Runs that never lie: a stage folder holds the results of one identity (config + inputs), reruns with other
settings are refused (or start over with --no-resume), every resume says so, one writer per folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lofi.cli import main
from lofi.config import load_config
from lofi.data.formats.activitynet import write_ground_truth
from lofi.data.ideal_features import write_ideal_features
from lofi.data.synthetic import SyntheticConfig
from lofi.data.synthetic.generate import plan_dataset, to_annotations
from lofi.runtime.run_identity import (
    IDENTITY_FILE,
    RunMismatchError,
    StageIdentity,
    file_digest,
    stage_guard,
    stage_identity,
)
from lofi.runtime.run_lock import FolderBusyError, FolderLock

SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture(scope="module")
def feature_set(tmp_path_factory) -> tuple[Path, Path]:
    """8 annotation-only synthetic videos and their ideal features (16 snippets): a head trains on them in a second."""
    root = tmp_path_factory.mktemp("identity")
    synth = SyntheticConfig(num_videos=8, num_classes=2, seed=3, width_px=64, height_px=64,
                            video_duration_sec=(16.0, 20.0), num_distractors=(1, 1))
    annotations = to_annotations(plan_dataset(synth), synth)
    write_ground_truth(annotations, root / "annotations.json")
    features = write_ideal_features(annotations, root / "features", num_snippets=16, dim=8, seed=0)
    return root / "annotations.json", features


def _head_argv(annotations: Path, features: Path, out: Path, *extra: str) -> list[str]:
    return ["train-head", "synthetic", "--features", str(features), "--out", str(out),
            "-o", f"data.annotations={annotations}", "-o", f"data.videos={annotations.parent / 'videos'}",
            "-o", f"out_dir={out.parent / 'runs'}", "-o", "device=cpu", "-o", "fidelity.num_snippets=16",
            "-o", "model.head=actionformer", "-o", "model.head_options={embed_dim: 16, num_levels: 2}", "-o", "eval.tiou=0.5,0.7",
            "-o", "head.optim.epochs=2", "-o", "head.optim.batch_size=2", *extra]


def test_a_rerun_with_another_lr_is_refused_and_never_reports_the_old_result(feature_set, tmp_path, capsys):
    annotations, features = feature_set
    out = tmp_path / "head"
    assert main(_head_argv(annotations, features, out)) == 0
    first = capsys.readouterr()
    metrics = (out / "metrics.json").read_text()
    assert (out / IDENTITY_FILE).is_file() and (out / "config.yaml").is_file()
    assert "lr: 0.001" in (out / "config.yaml").read_text()

    # the same settings: reused, and it says so
    assert main(_head_argv(annotations, features, out)) == 0
    again = capsys.readouterr()
    assert "already trained" in again.err and "reusing it" in again.err

    # another lr: refused, naming the key with both values; nothing there changes
    assert main(_head_argv(annotations, features, out, "-o", "head.optim.lr=0.05")) == 2
    refused = capsys.readouterr()
    assert "head.optim.lr: 0.001 -> 0.05" in refused.err and "--no-resume" in refused.err
    assert "mAP" not in refused.out  # no result printed
    assert (out / "metrics.json").read_text() == metrics and "lr: 0.001" in (out / "config.yaml").read_text()

    # --no-resume: trained again with the new lr, and the folder now says so
    assert main(_head_argv(annotations, features, out, "-o", "head.optim.lr=0.05", "--no-resume")) == 0
    capsys.readouterr()
    assert "lr: 0.05" in (out / "config.yaml").read_text()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert max(r.get("lr", 0) for r in rows) > 0.01  # the new run's records only, not appended to the old ones
    assert len([r for r in rows if r["kind"] == "epoch"]) == 2
    assert first.out  # (the first run printed its table)


def test_changed_features_are_a_changed_input(feature_set, tmp_path, capsys):
    annotations, features = feature_set
    out = tmp_path / "head"
    assert main(_head_argv(annotations, features, out)) == 0
    other = write_ideal_features(load_annotations_of(annotations), tmp_path / "other", num_snippets=16, dim=8, seed=1)
    capsys.readouterr()
    assert main(_head_argv(annotations, other, out)) == 2
    assert "input feature_files" in capsys.readouterr().err


def load_annotations_of(path: Path):
    from lofi.data.formats import load_annotations

    return load_annotations(path).annotations


def test_results_without_identity_are_refused(tmp_path):
    folder = tmp_path / "stage"
    folder.mkdir()
    (folder / "latest.pt").write_bytes(b"old")
    identity = stage_identity("pretrain", load_config("synthetic"))
    with pytest.raises(RunMismatchError, match="without a run identity"):
        with stage_guard(folder, identity, load_config("synthetic"), resume=True):
            pass
    # starting over removes the stage's own files only
    (folder / "notes.txt").write_text("mine")
    with stage_guard(folder, identity, load_config("synthetic"), resume=False) as start:
        assert not start.reusing
    assert not (folder / "latest.pt").exists() and (folder / "notes.txt").read_text() == "mine"
    assert json.loads((folder / IDENTITY_FILE).read_text())["fingerprint"] == identity.fingerprint


def test_identity_leaves_out_what_does_not_change_a_result():
    base = load_config("synthetic")
    moved = load_config("synthetic", ["out_dir=elsewhere", "name=x", "device=cpu", "data.num_workers=5",
                                      "head.extract_batch_size=2", "train.optim.checkpoint_every_steps=7"])
    for stage in ("pretrain", "lofi", "extract", "head"):
        assert stage_identity(stage, base).fingerprint == stage_identity(stage, moved).fingerprint, stage
    # ... and what does change it only where it matters
    head_lr = load_config("synthetic", ["head.optim.lr=0.05"])
    assert stage_identity("head", head_lr).fingerprint != stage_identity("head", base).fingerprint
    assert stage_identity("pretrain", head_lr).fingerprint == stage_identity("pretrain", base).fingerprint
    assert stage_identity("lofi", head_lr).fingerprint == stage_identity("lofi", base).fingerprint
    a = stage_identity("head", base, {"features": "aaa"})
    assert stage_identity("head", base, {"features": "bbb"}).differences(a) == ['input features: "aaa" -> "bbb"']


def test_file_digest_reads_bytes_and_folders(tmp_path):
    (tmp_path / "a").write_bytes(b"1")
    d1 = file_digest(tmp_path / "a")
    (tmp_path / "a").write_bytes(b"2")
    assert file_digest(tmp_path / "a") != d1
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "x.txt").write_text("x")
    d2 = file_digest(folder)
    (folder / "y.txt").write_text("y")
    assert file_digest(folder) != d2


_HOLDER = """
import sys, time
sys.path.insert(0, {src!r})
from lofi.runtime.run_lock import FolderLock
with FolderLock({folder!r}):
    print("locked", flush=True)
    time.sleep(60)
"""


def _hold_lock(folder: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER.format(src=SRC, folder=str(folder))],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_writer_stops_at_once_naming_the_holder(tmp_path):
    holder = _hold_lock(tmp_path)
    try:
        started = time.monotonic()
        with pytest.raises(FolderBusyError, match=f"pid {holder.pid}"):
            with FolderLock(tmp_path):
                pass
        assert time.monotonic() - started < 1.0
    finally:
        holder.kill()
        holder.wait()
    # the kernel freed the lock of the killed process: the file left behind does not block
    with FolderLock(tmp_path):
        with FolderLock(tmp_path):  # re-entrant within a process
            pass


def test_a_second_train_head_on_the_same_out_exits_2(feature_set, tmp_path, capsys):
    annotations, features = feature_set
    out = tmp_path / "head"
    holder = _hold_lock(out)
    try:
        assert main(_head_argv(annotations, features, out)) == 2
        assert f"in use by another lofi process (pid {holder.pid}" in capsys.readouterr().err
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert not (out / "metrics.json").exists()


def test_train_head_elsewhere_writes_nothing_in_the_run_folder(feature_set, tmp_path):
    annotations, features = feature_set
    out = tmp_path / "head"
    assert main(_head_argv(annotations, features, out)) == 0
    assert not (tmp_path / "runs").exists()
    assert os.listdir(out)


def test_a_folder_of_another_stage_is_never_replaced(tmp_path):
    config = load_config("synthetic")
    with stage_guard(tmp_path, stage_identity("extract", config), config, resume=True):
        pass
    (tmp_path / "video.pt").write_bytes(b"features")
    for resume in (True, False):
        with pytest.raises(RunMismatchError, match=r"another stage \(extract\)"):
            with stage_guard(tmp_path, stage_identity("lofi", config), config, resume=resume):
                pass
    assert (tmp_path / "video.pt").read_bytes() == b"features"


def test_a_damaged_identity_is_refused_on_resume_and_replaced_on_start_over(tmp_path):
    config = load_config("synthetic")
    (tmp_path / IDENTITY_FILE).write_text("{not json")
    identity = stage_identity("head", config)
    with pytest.raises(RunMismatchError, match="unreadable run identity"):
        with stage_guard(tmp_path, identity, config, resume=True):
            pass
    with stage_guard(tmp_path, identity, config, resume=False) as start:
        assert not start.reusing
    assert json.loads((tmp_path / IDENTITY_FILE).read_text())["fingerprint"] == identity.fingerprint


def test_a_head_refuses_an_unfinished_features_folder(feature_set, tmp_path, capsys):
    annotations, features = feature_set
    unfinished = tmp_path / "features"
    config = load_config("synthetic")
    with stage_guard(unfinished, stage_identity("extract", config), config, resume=True):
        pass  # an extraction that started and never marked itself complete
    for f in features.glob("*.pt"):
        (unfinished / f.name).write_bytes(f.read_bytes())
    assert main(_head_argv(annotations, unfinished, tmp_path / "head")) == 2
    assert "not a finished features folder" in capsys.readouterr().err


def test_a_missing_feature_file_stops_the_head_unless_skipping(feature_set, tmp_path, capsys):
    annotations, features = feature_set
    partial = tmp_path / "features"
    partial.mkdir()
    files = sorted(features.glob("*.pt"))
    for f in files[1:]:
        (partial / f.name).write_bytes(f.read_bytes())
    assert main(_head_argv(annotations, partial, tmp_path / "head")) == 2
    err = capsys.readouterr().err
    assert "have no feature file" in err and "--skip-invalid" in err
    assert main(_head_argv(annotations, partial, tmp_path / "head2", "--skip-invalid")) == 0


def test_stage_2_starts_from_the_configured_weights_when_stage_1_is_off(feature_set, tmp_path):
    from lofi.train.commands import STAGE1_ENCODER, previous_encoder
    from lofi.runtime.context import make_context

    annotations, _ = feature_set
    base = [f"data.annotations={annotations}", f"out_dir={tmp_path}", "name=run"]
    (tmp_path / "run" / "stage1_pretrain").mkdir(parents=True)
    (tmp_path / "run" / STAGE1_ENCODER).write_bytes(b"stage 1")
    (tmp_path / "w.pt").write_bytes(b"given")
    on = make_context(load_config("synthetic", base + [f"model.encoder_weights={tmp_path / 'w.pt'}"]), progress=False)
    assert previous_encoder(on, STAGE1_ENCODER) == tmp_path / "run" / STAGE1_ENCODER
    off = make_context(load_config("synthetic", base + [f"model.encoder_weights={tmp_path / 'w.pt'}",
                                                        "pretrain.enabled=false"]), progress=False)
    assert previous_encoder(off, STAGE1_ENCODER) == tmp_path / "w.pt"
    # a stage 1 that started (identity recorded) but left no encoder is an error, not a start from scratch
    (tmp_path / "run" / STAGE1_ENCODER).unlink()
    (tmp_path / "run" / "stage1_pretrain" / IDENTITY_FILE).write_text("{}")
    with pytest.raises(FileNotFoundError, match="has not finished"):
        previous_encoder(on, STAGE1_ENCODER)


def test_a_bad_subset_stops_before_no_resume_clears_anything(feature_set, tmp_path, capsys):
    annotations, features = feature_set
    out = tmp_path / "head"
    assert main(_head_argv(annotations, features, out)) == 0
    metrics = (out / "metrics.json").read_text()
    capsys.readouterr()
    assert main(_head_argv(annotations, features, out, "--no-resume", "-o", "data.val_subset=valdation")) == 2
    assert "unknown subset 'valdation'" in capsys.readouterr().err
    assert (out / "metrics.json").read_text() == metrics
