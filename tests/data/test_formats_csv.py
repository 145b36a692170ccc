"""The simple CSV layout: columns, defaults, background-only videos and row-level problems with line numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from lofi.data.annotations import AnnotationError, Problem, Segment, VideoAnnotation
from lofi.data.formats import load_annotations


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ann.csv"
    path.write_text(text)
    return path


def _one(problems: list[Problem], *, severity: str, contains: str, source: str, video: str | None) -> Problem:
    found = [p for p in problems if p.severity == severity and contains in p.message and p.video_id == video]
    assert len(found) == 1, problems
    text = str(found[0])
    assert text.startswith(f"{source}:") and contains in text
    if video is not None:
        assert f"video {video!r}" in text
    return found[0]


def test_reads_all_columns(tmp_path: Path) -> None:
    path = _write(tmp_path, "video,start,end,label,subset,duration,fps\n"
                            "cook_01,12.5,30.0,chop,train,95.2,25\n"
                            "cook_01, 41 ,55.5,stir,training,95.2,25\n"
                            "cook_02,,,,val,60.0,\n"
                            "cook_03,0,1.5,chop,test,,\n")
    result = load_annotations(path)
    anns = result.annotations
    assert result.problems == []
    assert anns.classes == ("chop", "stir")
    assert list(anns.videos) == ["cook_01", "cook_02", "cook_03"]
    assert anns["cook_01"] == VideoAnnotation(video_id="cook_01", subset="training",
                                              segments=(Segment(12.5, 30.0, "chop"), Segment(41.0, 55.5, "stir")),
                                              duration_sec=95.2, fps=25.0)
    assert anns["cook_02"] == VideoAnnotation(video_id="cook_02", subset="validation", segments=(),
                                              duration_sec=60.0)
    assert anns["cook_03"].subset == "testing" and anns["cook_03"].duration_sec is None


def test_subset_defaults_to_training_and_columns_in_any_order(tmp_path: Path) -> None:
    path = _write(tmp_path, "label,video,end,start\nwave,v1,2,1\nwave,v2,4,3\n")
    anns = load_annotations(path).annotations
    assert [v.subset for v in anns] == ["training", "training"]
    assert anns["v2"].segments == (Segment(3.0, 4.0, "wave"),)


def test_unknown_and_missing_columns(tmp_path: Path) -> None:
    path = _write(tmp_path, "video,start,end,label,comment\nv1,1,2,a,hello\n")
    with pytest.raises(AnnotationError, match="unknown column 'comment'; accepted columns: video, start, end, "
                                              "label, subset, duration, fps"):
        load_annotations(path)
    result = load_annotations(path, on_invalid="skip")  # the unknown column is left unused
    assert result.annotations["v1"].segments == (Segment(1.0, 2.0, "a"),)
    _one(result.problems, severity="error", contains="unknown column", source=f"{path}:1", video=None)

    path = _write(tmp_path, "video,begin,end,label\nv1,1,2,a\n")
    result = load_annotations(path, on_invalid="skip")
    _one(result.problems, severity="error", contains="missing required column(s) start", source=f"{path}:1",
         video=None)
    assert len(result.annotations) == 0


def test_bad_rows_name_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "video,start,end,label,subset,duration\n"
                            "v1,5,3,a,train,10\n"
                            "v1,-2,3,a,train,10\n"
                            "v1,abc,3,a,train,10\n"
                            "v1,8,12,a,train,10\n"
                            "v1,1,2,a,train\n"
                            "v1,1,2,,train,10\n"
                            "v1,4,5,a,train,10\n"
                            "v2,1,2,a,holdout,10\n"
                            "v3,1,2,a,train,zero\n")
    with pytest.raises(AnnotationError):
        load_annotations(path)
    result = load_annotations(path, on_invalid="skip")
    _one(result.problems, severity="error", contains="segment end 3.0 <= start 5.0", source=f"{path}:2",
         video="v1")
    _one(result.problems, severity="error", contains="segment start -2.0 is negative", source=f"{path}:3",
         video="v1")
    _one(result.problems, severity="error", contains="segment start 'abc' is not a number", source=f"{path}:4",
         video="v1")
    _one(result.problems, severity="warning", contains="clipped to 10.0", source=f"{path}:5", video="v1")
    _one(result.problems, severity="error", contains="expected 6 fields, got 5", source=f"{path}:6", video=None)
    _one(result.problems, severity="error", contains="segment label is empty", source=f"{path}:7", video="v1")
    _one(result.problems, severity="error", contains="unknown subset 'holdout'", source=f"{path}:9", video="v2")
    _one(result.problems, severity="error", contains="duration 'zero' is not a number", source=f"{path}:10",
         video="v3")
    assert list(result.annotations.videos) == ["v1"]
    assert result.annotations["v1"].segments == (Segment(8.0, 10.0, "a"), Segment(4.0, 5.0, "a"))


def test_rows_of_a_video_must_agree(tmp_path: Path) -> None:
    path = _write(tmp_path, "video,start,end,label,subset,duration,fps\n"
                            "v1,1,2,a,train,10,25\n"
                            "v1,3,4,a,val,10,25\n"
                            "v2,1,2,a,train,10,25\n"
                            "v2,3,4,a,training,10.0,30\n"
                            "v3,1,2,a,train,10,\n"
                            "v3,3,4,a,train,,25\n")
    result = load_annotations(path, on_invalid="skip")
    _one(result.problems, severity="error", contains="subset 'val' disagrees with 'train' on line 2",
         source=f"{path}:3", video="v1")
    _one(result.problems, severity="error", contains="fps '30' disagrees with '25' on line 4",
         source=f"{path}:5", video="v2")
    assert list(result.annotations.videos) == ["v3"]
    assert result.annotations["v3"].duration_sec == 10.0 and result.annotations["v3"].fps == 25.0


def test_empty_file_and_blank_lines(tmp_path: Path) -> None:
    path = _write(tmp_path, "")
    with pytest.raises(AnnotationError, match="empty file"):
        load_annotations(path)
    path = _write(tmp_path, "\ufeffvideo,start,end,label\n\nv1,1,2,a\n,,,\n")
    assert load_annotations(path).annotations["v1"].segments == (Segment(1.0, 2.0, "a"),)


@pytest.mark.parametrize("text", ["video,start,end,label\n", "video,start,end,label,subset\n\n ,  ,\n"])
def test_a_header_without_rows_is_an_error(tmp_path: Path, text: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(AnnotationError) as raised:
        load_annotations(path)
    problem = _one(raised.value.problems, severity="error", contains="no video in this dataset: a header and no rows",
                   source=str(path), video=None)
    assert problem.source == str(path)
