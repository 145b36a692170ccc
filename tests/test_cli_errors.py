"""A user's mistake is one line, ``lofi CMD: <file or key>: <problem>; <what to do>``, and exit 2 (``-v`` adds the
traceback); a bug in lofi keeps its traceback, with a line saying so, and exit 1."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from lofi.cli import main

GT = {"version": "1.3", "taxonomy": [], "database": {
    "v1": {"subset": "validation", "duration": 100.0, "annotations": [{"segment": [10.0, 20.0], "label": "jump"}]},
    "v2": {"subset": "validation", "duration": 100.0, "annotations": [{"segment": [30.0, 40.0], "label": "jump"}]},
}}
PRED = {"version": "1.3", "results": {"v1": [{"label": "jump", "score": 0.9, "segment": [10.0, 20.0]}]}}


def _one_line(err: str, command: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"lofi {command}: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def stage2_args(tmp_path: Path) -> list[str]:
    """``lofi train`` on two annotated videos: enough to reach the loading of the encoder's weights."""
    annotations = tmp_path / "a.csv"
    annotations.write_text("video,start,end,label,subset\nv1,1,2,a,training\nv2,1,2,a,validation\n")
    (tmp_path / "videos").mkdir()
    return ["synthetic", "-o", f"data.annotations={annotations}", "-o", f"data.videos={tmp_path / 'videos'}",
            "-o", "data.cache_dir=null", "-o", f"out_dir={tmp_path / 'runs'}", "-o", "device=cpu"]


def _unsafe_pickle(path: Path) -> Path:
    torch.save({"conv1.weight": torch.zeros(1), "args": argparse.Namespace(lr=0.1)}, path)
    return path


def _text_file(path: Path) -> Path:
    path.write_text("not weights\n")  # torch: UnpicklingError
    return path


def _other_text_file(path: Path) -> Path:
    path.write_text("hello, these are not weights either\n")  # torch: KeyError: 101
    return path


def _folder(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.mark.parametrize("make, problem", [
    (_unsafe_pickle, "holds Python objects besides tensors (it needs argparse.Namespace)"),
    (_text_file, "not a weights file torch can read"),
    (_other_text_file, "not a weights file torch can read"),
    (_folder, "is a folder, not a weights file; give the .pt file in it"),
])
def test_bad_encoder_weights_are_one_line_naming_the_file(stage2_args, tmp_path, capsys, make, problem):
    weights = make(tmp_path / "weights.pt")
    assert main(["train", *stage2_args, "--encoder-weights", str(weights)]) == 2
    line = _one_line(capsys.readouterr().err, "train")
    assert line.startswith(f"lofi train: {weights}: {problem}")
    assert "weights_only=False" not in line  # not torch's advice to run the file's code


def test_verbose_adds_the_traceback(stage2_args, tmp_path, capsys):
    weights = _unsafe_pickle(tmp_path / "weights.pt")
    assert main(["-v", "train", *stage2_args, "--encoder-weights", str(weights)]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "read_weights_file" in err
    assert err.splitlines()[-1].startswith(f"lofi train: {weights}: holds Python objects besides tensors")


def _eval_files(tmp_path: Path, gt: dict = GT) -> list[str]:
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text(json.dumps(PRED))
    return ["evaluate", "--ground-truth", str(tmp_path / "gt.json"), "--predictions", str(tmp_path / "pred.json"),
            "--tiou", "0.5"]


def test_evaluate_output_in_a_missing_folder_or_a_folder(tmp_path, capsys):
    args = _eval_files(tmp_path)
    assert main([*args, "--output", str(tmp_path / "new" / "deeper" / "metrics.json")]) == 0
    assert json.loads((tmp_path / "new" / "deeper" / "metrics.json").read_text())["mAP"] == [0.5]
    assert main([*args, "--output", str(tmp_path / "new")]) == 0  # an existing folder: metrics.json in it
    assert json.loads((tmp_path / "new" / "metrics.json").read_text())["mAP"] == [0.5]
    capsys.readouterr()
    assert main([*args, "--output", str(tmp_path / "gt.json" / "metrics.json")]) == 2  # under a file
    assert _one_line(capsys.readouterr().err, "evaluate") == (
        f"lofi evaluate: {tmp_path / 'gt.json'}: File exists; a file is in the way of a folder; pick another path")


def test_evaluate_skip_invalid_lists_and_writes_the_entries(tmp_path, capsys):
    gt = json.loads(json.dumps(GT))
    gt["database"]["v2"]["annotations"][0]["segment"] = [40.0, 30.0]
    args = _eval_files(tmp_path, gt)
    assert main(args) == 2
    assert _one_line(capsys.readouterr().err, "evaluate") == (
        f"lofi evaluate: {tmp_path / 'gt.json'}: video 'v2': error: annotation 1: segment end 30.0 <= start 40.0; "
        f"fix the entry, or pass --skip-invalid to leave invalid entries out")
    out_dir = tmp_path / "eval"
    assert main([*args, "--skip-invalid", "--output", str(out_dir / "metrics.json")]) == 0
    assert json.loads((out_dir / "metrics.json").read_text())["mAP"] == [1.0]  # v2 left out: nothing to recall
    assert json.loads((out_dir / "skipped.json").read_text()) == [
        {"file": str(tmp_path / "gt.json"), "video_id": "v2", "what": "annotation",
         "reason": "annotation 1: segment end 30.0 <= start 40.0"}]
    out = capsys.readouterr().out.splitlines()
    assert out[-2:] == [f"skipped 1 (--skip-invalid), listed in {out_dir / 'skipped.json'}:",
                        f"  {tmp_path / 'gt.json'}: video 'v2': annotation: annotation 1: segment end 30.0 <= start "
                        f"40.0"]


@pytest.mark.parametrize("argv, command, message", [
    (["pretrain", "synthetic", "-o", "train.optim.lr_steps=3"], "pretrain",
     "did you mean 'train.optim.lr_step_epochs'?"),  # ConfigError
    (["evaluate", "--ground-truth", "{tmp}/missing.json", "--predictions", "{tmp}/p.json"], "evaluate",
     "{tmp}/missing.json: annotation file not found; check the path"),  # FileNotFoundError
    (["data", "check", "{tmp}/missing.json"], "data check", "{tmp}/missing.json: annotation file not found"),
    (["postprocess", "--predictions", "{tmp}/p.json", "--output", "{tmp}/p.json/out.json"], "postprocess",
     "{tmp}/p.json/out.json: Not a directory; a part of the path is a file, not a folder"),  # OSError
    (["synth", "{tmp}/out", "--width", "8"], "synth", "frames must be at least 32x32 px"),  # ValueError
    (["plan"], "plan", "--memory is needed"),
    (["plan", "--memory", "8GB", "-o", "model.encoder=tsm_resnet34"], "plan", "give the CONFIG to plan for"),
    (["plan", "synthetic"], "plan", "synthetic: fidelity.memory is not set: give --memory"),
    (["plan", "synthetic", "--memory", "8GB", "--frame-size", "112"], "plan",
     "--frame-size: with a CONFIG the run's config holds these; set them with -o"),
    (["plan", "--memory", "24"], "plan", "'24' is not a memory size"),
])
def test_expected_errors_are_one_line(tmp_path, capsys, argv, command, message):
    (tmp_path / "p.json").write_text(json.dumps(PRED))
    assert main([arg.format(tmp=tmp_path) for arg in argv]) == 2
    assert message.format(tmp=tmp_path) in _one_line(capsys.readouterr().err, command)


def test_a_bug_keeps_its_traceback(monkeypatch, capsys):
    monkeypatch.setattr(torch.nn, "Conv2d", None)  # breaks a dependency, so lofi's own code fails as a bug would
    assert main(["models"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "TypeError" in err
    assert err.splitlines()[-1] == ("lofi models: unexpected TypeError (traceback above): this looks like a bug in "
                                    "lofi; please report it with the traceback and the command")


def test_an_error_from_a_dataloader_worker_is_its_own_line():
    from torch._utils import ExceptionWrapper

    from lofi.cli import user_message

    try:
        raise ValueError("cannot batch snippets of different shapes [(2, 3), (4, 3)]; set SnippetSpec.crop_px")
    except ValueError:
        wrapper = ExceptionWrapper(where="in DataLoader worker process 1")
    with pytest.raises(ValueError) as rebuilt:  # what the main process gets: the worker's traceback as the message
        wrapper.reraise()
    assert "Traceback" in str(rebuilt.value)
    assert user_message(rebuilt.value, skip_flag=True) == (
        "cannot batch snippets of different shapes [(2, 3), (4, 3)]; set SnippetSpec.crop_px")


@pytest.mark.parametrize("headroom", ["1.5", "100%", "-0.1", "ten"])
def test_plan_refuses_a_headroom_outside_0_to_1_before_probing(capsys, headroom):
    with pytest.raises(SystemExit) as exit_info:
        main(["plan", "--memory", "24GB", "--headroom", headroom])
    assert exit_info.value.code == 2
    assert "--headroom" in capsys.readouterr().err
