"""``run_check``: every problem collected at once, the report text, and the strict loading it stands beside."""

from __future__ import annotations

from pathlib import Path

import pytest
from _videos import write_video

from lofi.data.annotations import AnnotationError
from lofi.data.check import CheckReport, run_check
from lofi.data.formats import load_annotations

GOOD_CSV = "video,start,end,label,subset,duration\nv1,0.5,1.5,wave,train,2.0\nv2,,,,val,2.0\n"
BAD_CSV = ("video,start,end,label,subset,duration\n"
           "v1,5,3,wave,train,10\n"       # error: end <= start
           "v1,8,12,wave,train,10\n"      # warning: clipped
           "v2,1,2,wave,holdout,10\n"     # error: unknown subset
           "v3,1,2,jump,val,10\n")


def _write(tmp_path: Path, text: str, name: str = "ann.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_clean_file_is_ok(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD_CSV)
    report = run_check(path)
    assert isinstance(report, CheckReport)
    assert report.ok and report.problems == [] and report.format_name == "csv"
    text = report.format()
    lines = text.splitlines()
    assert lines[0] == f"{path} (csv)"
    assert report.annotations.summary().format() in text
    assert lines[-1] == "no problems found"


def test_every_problem_is_reported_errors_first(tmp_path: Path) -> None:
    path = _write(tmp_path, BAD_CSV)
    report = run_check(path)
    assert not report.ok
    assert list(report.annotations.videos) == ["v1", "v3"]
    lines = report.format().splitlines()
    problem_lines = [line for line in lines if line.startswith(f"{path}:")]
    assert problem_lines == [
        f"{path}:2: video 'v1': error: segment end 3.0 <= start 5.0",
        f"{path}:4: video 'v2': error: unknown subset 'holdout'; expected one of training, validation, testing "
        f"(or test, train, val, valid)",
        f"{path}:3: video 'v1': warning: segment [8.0, 12.0] 'wave' ends after the video's duration 10.0 s; "
        f"clipped to 10.0",
    ]
    assert "2 errors, 1 warning" in lines
    assert "--skip-invalid" in lines[-1]


def test_warnings_alone_make_the_check_fail(tmp_path: Path) -> None:
    path = _write(tmp_path, "video,start,end,label,duration\nv1,1,3,a,2\n")
    report = run_check(path)
    assert not report.ok and len(report.warnings) == 1 and report.errors == []
    assert report.format().splitlines()[-1] == "0 errors, 1 warning"


def test_skip_invalid_changes_only_the_hint(tmp_path: Path) -> None:
    path = _write(tmp_path, BAD_CSV)
    strict, skipping = run_check(path), run_check(path, skip_invalid=True)
    assert strict.problems == skipping.problems and not skipping.ok
    assert skipping.format().splitlines()[-1] == "with --skip-invalid the invalid entries are left out: 2 videos usable"


def test_check_against_videos(tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    write_video(videos / "v1.mp4")  # 2.0 s
    write_video(videos / "v2.mp4")
    path = _write(tmp_path, GOOD_CSV + "v3,0,1,wave,train,2.0\nv4,0,1,wave,train,9.0\n")
    write_video(videos / "v4.mp4")
    report = run_check(path, videos_dir=videos)
    assert list(report.annotations.videos) == ["v1", "v2"]
    assert [p.video_id for p in report.errors] == ["v3", "v4"]
    text = report.format()
    assert f"videos: {videos}" in text
    assert f"{videos}: video 'v3': error: no video file found in {videos}" in text
    assert f"{videos / 'v4.mp4'}: video 'v4': error: annotated duration 9.0 s disagrees with the file's 2.000 s" \
        in text
    assert text.splitlines()[-2] == "2 errors, 0 warnings"
    assert run_check(path, videos_dir=videos, duration_tolerance_sec=8.0).errors[0].video_id == "v3"


def test_check_of_a_json_file_detects_the_format(tmp_path: Path) -> None:
    path = _write(tmp_path, '{"database": {"x": {"subset": "training", "duration": 5, '
                            '"annotations": [{"segment": ["5", "3"], "label": "a"}]}}}', "gt.json")
    report = run_check(path)
    assert report.format_name == "activitynet"
    assert f"{path}: video 'x': error: annotation 1: segment end 3.0 <= start 5.0" in report.format()
    assert report.format().splitlines()[0] == f"{path} (activitynet)"
    assert run_check(path, format="hacs").format_name == "hacs"


def test_strict_loading_raises_what_check_reports(tmp_path: Path) -> None:
    path = _write(tmp_path, BAD_CSV)
    with pytest.raises(AnnotationError) as raised:
        load_annotations(path, on_invalid="raise")
    assert raised.value.problems == sorted(run_check(path).problems, key=lambda p: p.severity != "error")
    skipped = load_annotations(path, on_invalid="skip")
    assert list(skipped.annotations.videos) == ["v1", "v3"]
    assert skipped.annotations["v1"].segments[0].end_sec == 10.0


def test_missing_paths_raise(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        run_check(tmp_path / "nope.json")
    path = _write(tmp_path, GOOD_CSV)
    with pytest.raises(FileNotFoundError, match="videos directory not found"):
        run_check(path, videos_dir=tmp_path / "novideos")
