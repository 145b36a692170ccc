"""``lofi data check`` on each bad-input case: exit code 1 and a message naming the file, the video and the problem."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from _videos import write_audio_only, write_cut_video, write_empty_video, write_text_as_video, write_video

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


def test_a_video_cut_in_half_exits_non_zero_naming_file_and_time(tmp_path, capsys):
    """The header says 21 s, the bytes stop half way: only decoding to the end finds it."""
    path = _annotations(tmp_path, duration="21.0")
    write_cut_video(tmp_path / "videos" / "v1.mp4", duration_sec=21.0, keep_fraction=0.5)
    assert main(["data", "check", str(path), "--videos", str(tmp_path / "videos")]) == 1
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if "error" in line)
    match = re.search(r"v1\.mp4: video 'v1': error: truncated or corrupt: frames stop at (\d+\.\d) s of 21\.0 s", line)
    assert match is not None and 7.0 < float(match[1]) < 14.0, out
    assert "1 error, 0 warnings" in out


def test_a_file_without_video_stream_exits_non_zero(tmp_path, capsys):
    path = _annotations(tmp_path)
    write_audio_only(tmp_path / "videos" / "v1.mkv")
    assert main(["data", "check", str(path), "--videos", str(tmp_path / "videos")]) == 1
    assert "v1.mkv: video 'v1': error: cannot read the video file: has no video stream" in capsys.readouterr().out


def _empty_dataset(tmp_path: Path, kind: str) -> Path:
    if kind == "activitynet":
        path = tmp_path / "gt.json"
        path.write_text('{"version": "1.3", "taxonomy": [], "database": {}}')
    elif kind == "csv":
        path = tmp_path / "gt.csv"
        path.write_text("video,start,end,label,subset\n\n")
    elif kind == "thumos14 folder":
        path = tmp_path / "annotation"
        path.mkdir()
    else:  # thumos14 files without a line
        path = tmp_path / "annotation"
        path.mkdir()
        (path / "HighJump_val.txt").write_text("\n\n")
    return path


@pytest.mark.parametrize("kind", ["activitynet", "csv", "thumos14 folder", "thumos14 files"])
def test_an_empty_dataset_exits_non_zero_naming_the_file(kind, tmp_path, capsys):
    path = _empty_dataset(tmp_path, kind)
    (tmp_path / "videos").mkdir()
    assert main(["data", "check", str(path), "--videos", str(tmp_path / "videos")]) == 1
    errors = [line for line in capsys.readouterr().out.splitlines() if ": error: " in line]
    assert len(errors) == 1 and errors[0].startswith(f"{path}: error: ")
    assert "no <Class>_val.txt" in errors[0] if kind == "thumos14 folder" else "no video in this dataset" in errors[0]
