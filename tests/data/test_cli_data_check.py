"""``lofi data check`` on each bad-input case: exit code 1 and a message naming the file, the video and the problem."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _videos import write_empty_video, write_text_as_video, write_video

from lofi.cli import main


def _annotations(tmp_path: Path, *, duration="2.0", subset="training", segments=((0.5, 1.5),), extra="") -> Path:
    items = ", ".join(f'{{"segment": [{json.dumps(s)}, {json.dumps(e)}], "label": "wave"}}' for s, e in segments)
    text = (f'{{"version": "1.3", "taxonomy": [], "database": {{{extra}"v1": {{"subset": "{subset}", '
            f'"duration": {json.dumps(duration)}, "annotations": [{items}]}}}}}}')
    path = tmp_path / "gt.json"
    path.write_text(text)
    return path


@pytest.fixture
def videos(tmp_path: Path) -> Path:
    write_video(tmp_path / "videos" / "v1.mp4", duration_sec=2.0, fps=10)
    return tmp_path / "videos"


CASES = {
    "end before start": (dict(segments=((1.5, 0.5),)), "segment end 0.5 <= start 1.5"),
    "negative time": (dict(segments=((-1.0, 0.5),)), "negative"),
    "beyond duration": (dict(segments=((1.0, 9.0),)), "clipped"),
    "unknown subset": (dict(subset="holdout"), "holdout"),
    "duplicate id": (dict(extra='"v1": {"subset": "training", "annotations": []}, '), "duplicate video id"),
    "non-numeric": (dict(segments=(("abc", 1.0),)), "'abc' is not a number"),
    "duration disagrees with file": (dict(duration="9.0"), "disagrees with the file"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_bad_annotation_exits_non_zero_naming_file_and_problem(case, tmp_path, videos, capsys):
    kwargs, expected = CASES[case]
    path = _annotations(tmp_path, **kwargs)
    assert main(["data", "check", str(path), "--videos", str(videos)]) == 1
    out = capsys.readouterr().out
    problem_lines = [line for line in out.splitlines() if expected in line]
    assert problem_lines, out
    assert "'v1'" in problem_lines[0] and ("gt.json" in problem_lines[0] or "v1.mp4" in problem_lines[0])


@pytest.mark.parametrize("writer", [write_empty_video, write_text_as_video])
def test_unreadable_or_missing_video_exits_non_zero(writer, tmp_path, capsys):
    path = _annotations(tmp_path)
    writer(tmp_path / "videos" / "v1.mp4")
    assert main(["data", "check", str(path), "--videos", str(tmp_path / "videos")]) == 1
    line = next(line for line in capsys.readouterr().out.splitlines() if "error" in line)
    assert "v1.mp4" in line and "'v1'" in line
    (tmp_path / "videos" / "v1.mp4").unlink()
    assert main(["data", "check", str(path), "--videos", str(tmp_path / "videos")]) == 1
    assert "no video file found" in capsys.readouterr().out


def test_clean_dataset_exits_zero(tmp_path, videos, capsys):
    assert main(["data", "check", str(_annotations(tmp_path)), "--videos", str(videos)]) == 0
    assert "no problems found" in capsys.readouterr().out


def test_missing_annotation_file_is_a_usage_error(tmp_path, capsys):
    assert main(["data", "check", str(tmp_path / "nope.json")]) == 2
    assert "nope.json" in capsys.readouterr().err
