"""THUMOS14 per-class annotation files, written as the released ones are (double spaces, trailing blank lines)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lofi.data.annotations import AnnotationError, Problem, Segment, VideoAnnotation
from lofi.data.formats import load_annotations

FILES = {
    "BaseballPitch_val.txt": "video_validation_0000051  67.5 75.9\nvideo_validation_0000051  85.9 90.6 \n"
                             "video_validation_0000052  1.0 2.5\n\n",
    "CliffDiving_val.txt": "video_validation_0000052  10.2 11.3\n",
    "Diving_val.txt": "video_validation_0000052  10.2 11.3\n",
    "BaseballPitch_test.txt": "video_test_0000004  0.2 1.1\r\n\r\n",
    "Ambiguous_val.txt": "video_validation_0000051  60.0 61.5\nvideo_validation_0000099  3.0 4.0\n",
    "Ambiguous_test.txt": "video_test_0000004  5.5 6.0\n",
}


def _write_dir(tmp_path: Path, files: dict[str, str]) -> Path:
    directory = tmp_path / "annotation"
    directory.mkdir()
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def _one(problems: list[Problem], *, severity: str, contains: str, source: str, video: str | None) -> Problem:
    found = [p for p in problems if p.severity == severity and contains in p.message and p.video_id == video]
    assert len(found) == 1, problems
    text = str(found[0])
    assert text.startswith(source) and contains in text
    if video is not None:
        assert f"video {video!r}" in text
    return found[0]


def test_reads_the_released_layout(tmp_path: Path) -> None:
    directory = _write_dir(tmp_path, FILES)
    result = load_annotations(directory)
    anns = result.annotations
    assert result.problems == []
    assert anns.source == str(directory)
    assert anns.classes == ("BaseballPitch", "CliffDiving", "Diving")
    assert set(anns.videos) == {"video_validation_0000051", "video_validation_0000052",
                                "video_validation_0000099", "video_test_0000004"}
    assert anns["video_validation_0000051"] == VideoAnnotation(
        video_id="video_validation_0000051", subset="validation",
        segments=(Segment(67.5, 75.9, "BaseballPitch"), Segment(85.9, 90.6, "BaseballPitch")),
        duration_sec=None, fps=None, ignore_regions_sec=((60.0, 61.5),))
    assert anns["video_validation_0000052"].segments == (
        Segment(1.0, 2.5, "BaseballPitch"), Segment(10.2, 11.3, "CliffDiving"), Segment(10.2, 11.3, "Diving"))
    only_ambiguous = anns["video_validation_0000099"]
    assert only_ambiguous.segments == () and only_ambiguous.ignore_regions_sec == ((3.0, 4.0),)
    test_video = anns["video_test_0000004"]
    assert test_video.subset == "testing"
    assert test_video.segments == (Segment(0.2, 1.1, "BaseballPitch"),)
    assert test_video.ignore_regions_sec == ((5.5, 6.0),)
    assert anns.subset("val").videos.keys() == {"video_validation_0000051", "video_validation_0000052",
                                                 "video_validation_0000099"}


def test_bad_lines_name_the_file_and_line(tmp_path: Path) -> None:
    directory = _write_dir(tmp_path, {
        "Shotput_val.txt": "video_validation_0000001  1.0 2.0\n"
                           "video_validation_0000001  5.0\n"
                           "video_validation_0000001  abc 9.0\n"
                           "video_validation_0000001  9.0 8.0\n"
                           "video_validation_0000001  -1.0 3.0\n"
                           "video_validation_0000001  1.0 2.0\n",
    })
    source = f"{directory / 'Shotput_val.txt'}"
    with pytest.raises(AnnotationError):
        load_annotations(directory)
    result = load_annotations(directory, format="thumos14", on_invalid="skip")
    _one(result.problems, severity="error", contains="expected 'video start end', got 2 column(s)",
         source=f"{source}:2", video="video_validation_0000001")
    _one(result.problems, severity="error", contains="segment start 'abc' is not a number",
         source=f"{source}:3", video="video_validation_0000001")
    _one(result.problems, severity="error", contains="segment end 8.0 <= start 9.0",
         source=f"{source}:4", video="video_validation_0000001")
    _one(result.problems, severity="error", contains="segment start -1.0 is negative",
         source=f"{source}:5", video="video_validation_0000001")
    _one(result.problems, severity="warning", contains="duplicate segment [1.0, 2.0] 'Shotput'; kept once",
         source=f"{source}:6", video="video_validation_0000001")
    assert result.annotations["video_validation_0000001"].segments == (Segment(1.0, 2.0, "Shotput"),)


def test_video_in_both_val_and_test_is_an_error(tmp_path: Path) -> None:
    directory = _write_dir(tmp_path, {
        "HighJump_val.txt": "video_x  1.0 2.0\nvideo_y  1.0 2.0\n",
        "HighJump_test.txt": "video_x  3.0 4.0\n",
    })
    with pytest.raises(AnnotationError) as raised:
        load_annotations(directory)
    assert [p.video_id for p in raised.value.problems] == ["video_x"]
    result = load_annotations(directory, on_invalid="skip")
    problem = _one(result.problems, severity="error", contains="duplicate video id", source=str(directory),
                   video="video_x")
    assert "HighJump_test.txt" in problem.message and "HighJump_val.txt" in problem.message
    assert list(result.annotations.videos) == ["video_y"]


def test_other_files_are_ignored_with_a_warning(tmp_path: Path) -> None:
    directory = _write_dir(tmp_path, {"README.md": "notes\n", "HighJump_train.txt": "v 1 2\n",
                                      "HighJump_val.txt": "video_a 1 2\n"})
    result = load_annotations(directory)
    assert [(p.source, p.severity) for p in result.problems] == [
        (str(directory / "HighJump_train.txt"), "warning"), (str(directory / "README.md"), "warning")]
    assert all("not a THUMOS14 annotation file" in str(p) for p in result.problems)
    assert list(result.annotations.videos) == ["video_a"]


def test_empty_directory_is_an_error(tmp_path: Path) -> None:
    directory = _write_dir(tmp_path, {})
    with pytest.raises(AnnotationError, match="no <Class>_val.txt or <Class>_test.txt files"):
        load_annotations(directory)


def test_a_file_is_not_a_thumos_directory(tmp_path: Path) -> None:
    path = tmp_path / "BaseballPitch_val.txt"
    path.write_text("v 1 2\n")
    with pytest.raises(ValueError, match="directory"):
        load_annotations(path, format="thumos14")


def test_an_empty_folder_or_empty_files_are_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(AnnotationError) as raised:
        load_annotations(empty, format="thumos14")
    _one(raised.value.problems, severity="error", contains="no <Class>_val.txt or <Class>_test.txt files",
         source=str(empty), video=None)
    blank = _write_dir(tmp_path, {"HighJump_val.txt": "\n\n", "Ambiguous_val.txt": ""})
    with pytest.raises(AnnotationError) as raised:
        load_annotations(blank)
    problem = _one(raised.value.problems, severity="error", contains="no video in this dataset: its 2 annotation "
                                                                     "file(s) hold no line", source=str(blank),
                   video=None)
    assert problem.source == str(blank)
