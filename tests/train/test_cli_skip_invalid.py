"""Bad data stops the training commands with one line naming it, unless ``--skip-invalid``, which lists what it
left out at the end and in ``skipped.json`` (DataLoader workers included); Ctrl-C is one line and exit 130."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import lofi
from lofi.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from _videos import write_video  # noqa: E402

SRC = Path(lofi.__file__).resolve().parents[1]
TINY_HEAD = ("model.head_options={hidden_dim: 32, align_dim: 32, map_dim: 16, num_samples: 4, video_hidden_dim: 32, "
             "groups: 4, width_per_group: 2, stem_groups: 2}")
BAD_SEGMENT = "annotation 2: segment end 1.0 <= start 2.5"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Six 3 s videos (v1 truncated to half its bytes), ``ok.json`` and ``bad.json`` (an inverted segment in v2)."""
    root = tmp_path_factory.mktemp("data")
    database = {}
    for i, subset in enumerate(["training"] * 4 + ["validation"] * 2):
        write_video(root / "videos" / f"v{i}.mp4", duration_sec=3.0, fps=10, size_px=32)
        database[f"v{i}"] = {"subset": subset, "duration": 3.0,
                             "annotations": [{"segment": [0.5, 1.5], "label": "a" if i % 2 else "b"}]}
    truncated = root / "videos" / "v1.mp4"
    truncated.write_bytes(truncated.read_bytes()[:truncated.stat().st_size // 2])
    (root / "ok.json").write_text(json.dumps({"version": "1.3", "taxonomy": [], "database": database}))
    database["v2"]["annotations"].append({"segment": [2.5, 1.0], "label": "a"})
    (root / "bad.json").write_text(json.dumps({"version": "1.3", "taxonomy": [], "database": database}))
    return root


def _args(data: Path, run_root: Path, annotations: str, *extra: str, epochs: int = 1) -> list[str]:
    options = [f"data.annotations={data / annotations}", f"data.videos={data / 'videos'}", "data.cache_dir=null",
               f"out_dir={run_root}", "name=run", "device=cpu", "fidelity.num_snippets=4", "fidelity.frame_size_px=32",
               "fidelity.mode=full", "data.frames_per_snippet=1", "data.frame_stride=1",
               "model.encoder=tsm_resnet18_slim", "model.head=gtad", TINY_HEAD,
               f"train.optim={{optimizer: adamw, lr: 0.001, epochs: {epochs}, batch_size: 2, "
               f"checkpoint_every_steps: 1}}"]
    return ["synthetic", *[arg for option in options for arg in ("-o", option)], *extra]


def _lofi(*argv: str, **popen: object) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-m", "lofi", *argv], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)


@pytest.mark.parametrize("command", ["pretrain", "train", "extract", "run"])
def test_an_invalid_annotation_stops_with_one_line(data, tmp_path, capsys, command):
    assert main([command, *_args(data, tmp_path, "bad.json")]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [f"lofi {command}: {data / 'bad.json'}: video 'v2': error: {BAD_SEGMENT}; fix the "
                                f"entry, or pass --skip-invalid to leave invalid entries out"]
    assert not (tmp_path / "run" / "skipped.json").exists()


@pytest.mark.parametrize("workers", [0, 2])
def test_a_corrupt_video_stops_with_one_line(data, tmp_path, workers):
    proc = _lofi("train", *_args(data, tmp_path, "ok.json", "-o", f"data.num_workers={workers}"))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err
    assert "Traceback" not in err
    last = err.splitlines()[-1]
    assert last.startswith(f"lofi train: {data / 'videos' / 'v1.mp4'}: ") and "\n" not in last
    assert last.endswith("; replace the file, or pass --skip-invalid to leave the video out")


@pytest.mark.parametrize("workers", [0, 2])
def test_skip_invalid_goes_on_and_lists_both(data, tmp_path, workers):
    proc = _lofi("train", *_args(data, tmp_path, "bad.json", "-o", f"data.num_workers={workers}", "--skip-invalid"))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    run_dir = tmp_path / "run"
    assert (run_dir / "stage2_lofi" / "encoder.pt").is_file()
    skipped = json.loads((run_dir / "skipped.json").read_text())
    assert [(s["file"], s["video_id"], s["what"]) for s in skipped] == [
        (str(data / "bad.json"), "v2", "annotation"), (str(data / "videos" / "v1.mp4"), "v1", "video")]
    assert skipped[0]["reason"] == BAD_SEGMENT and "not a readable video container" in skipped[1]["reason"]
    listed = out.splitlines()
    start = listed.index(f"skipped 2 (--skip-invalid), listed in {run_dir / 'skipped.json'}:")
    assert listed[start + 1] == f"  {data / 'bad.json'}: video 'v2': annotation: {BAD_SEGMENT}"
    assert listed[start + 2].startswith(f"  {data / 'videos' / 'v1.mp4'}: video 'v1': video: ")
    writers = {path.stem.rsplit("-", 1)[1] for path in (run_dir / "skip_log").glob("*.jsonl")}
    if workers:  # the annotation is recorded by the main process, the video by a DataLoader worker
        assert str(proc.pid) in writers and len(writers) >= 2
    else:
        assert writers == {str(proc.pid)}


def test_sigint_stops_training_with_one_line(data, tmp_path):
    # SIG_DFL: a shell starts background jobs with SIGINT ignored, and the child would inherit that
    proc = _lofi("train", *_args(data, tmp_path, "bad.json", "--skip-invalid", epochs=200),
                 preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    checkpoint = tmp_path / "run" / "stage2_lofi" / "latest.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert proc.poll() is None and checkpoint.exists(), proc.communicate()[1]
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert err.splitlines()[-1] == ("lofi train: interrupted; run the same command again to resume from the last "
                                    "checkpoint")
    assert checkpoint.is_file()  # what the resume starts from
    assert len(json.loads((tmp_path / "run" / "skipped.json").read_text())) == 2  # listed on the way out, too
    assert "skipped 2 (--skip-invalid)" in out


@pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")
def test_two_ranks_write_their_skips_and_rank_0_merges_them(data, tmp_path):
    # extraction shares the videos among ranks by index: rank 1 meets v1 (index 1), rank 0 loads the annotations
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "lofi.cli",
               "extract", *_args(data, tmp_path, "bad.json", "--skip-invalid")]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    run_dir = tmp_path / "run"
    by_process = sorted([json.loads(line)["what"] for line in path.read_text().splitlines()]
                        for path in (run_dir / "skip_log").glob("*.jsonl"))
    assert by_process == [["annotation"], ["video"]]  # two processes, each its own file
    skipped = json.loads((run_dir / "skipped.json").read_text())
    assert [(s["video_id"], s["what"]) for s in skipped] == [("v2", "annotation"), ("v1", "video")]
    assert result.stdout.count("skipped 2 (--skip-invalid)") == 1  # printed by rank 0 only
    assert len(list((run_dir / "features").glob("*.pt"))) == 5
