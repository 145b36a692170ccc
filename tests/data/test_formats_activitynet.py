"""ActivityNet-1.3 / HACS Segments JSON: reading real-looking files, every bad input, and the writers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lofi.data.annotations import AnnotationError, AnnotationSet, Detection, Problem, Segment, VideoAnnotation
from lofi.data.formats import FORMATS, detect_format, load_annotations, write_ground_truth, write_results

ANET_TEXT = """{
  "version": "VERSION 1.3",
  "taxonomy": [{"nodeId": 0, "nodeName": "Root", "parentId": null, "parentName": null}],
  "database": {
    "sJFgo9H6zNo": {
      "subset": "training", "duration": 140.32, "resolution": "640x360",
      "url": "https://www.youtube.com/watch?v=sJFgo9H6zNo",
      "annotations": [
        {"segment": ["0.01", "123.42"], "label": "Fun sliding down"}
      ]
    },
    "V1zhqaGFY2A": {
      "subset": "validation", "duration": "32.5", "resolution": "1280x720", "url": "u", "fps": "29.97",
      "annotations": [
        {"segment": [18.6, 24.8], "label": "Long jump"},
        {"segment": [1, 5], "label": "Discus throw"}
      ]
    },
    "aaa": {"subset": "testing", "duration": 60.0, "resolution": "", "url": "", "annotations": []}
  }
}
"""

HACS_TEXT = """{"database": {
  "--0edUL8zmA": {"annotations": [{"label": "Dodgeball", "segment": [5.4, 11.6]},
                                  {"label": "Dodgeball", "segment": [12.6, 88.16]}],
                  "subset": "training", "duration": "92.18", "url": "https://www.youtube.com/watch?v=--0edUL8zmA"},
  "-0eAZXhzKu8": {"annotations": [{"label": "Archery", "segment": ["0", "10.5"]}],
                  "subset": "validation", "duration": "31.0", "url": "x"}
}}
"""


def _write(tmp_path: Path, text: str, name: str = "ann.json") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _database(videos: dict) -> str:
    return json.dumps({"version": "VERSION 1.3", "database": videos})


def _one(problems: list[Problem], *, severity: str, video: str, contains: str, path: Path) -> Problem:
    """The single problem matching; its text names the file, the video and the problem."""
    found = [p for p in problems if p.severity == severity and p.video_id == video and contains in p.message]
    assert len(found) == 1, problems
    text = str(found[0])
    assert str(path) in text and f"video {video!r}" in text and contains in text and severity in text
    return found[0]


def test_reads_activitynet_with_numeric_strings(tmp_path: Path) -> None:
    path = _write(tmp_path, ANET_TEXT)
    result = load_annotations(path)
    anns = result.annotations
    assert result.problems == []
    assert list(anns.videos) == ["sJFgo9H6zNo", "V1zhqaGFY2A", "aaa"]
    assert anns.classes == ("Discus throw", "Fun sliding down", "Long jump")
    assert anns.source == str(path)
    assert anns["sJFgo9H6zNo"] == VideoAnnotation(
        video_id="sJFgo9H6zNo", subset="training", segments=(Segment(0.01, 123.42, "Fun sliding down"),),
        duration_sec=140.32, fps=None, url="https://www.youtube.com/watch?v=sJFgo9H6zNo", resolution="640x360")
    second = anns["V1zhqaGFY2A"]
    assert second.subset == "validation"
    assert second.duration_sec == 32.5 and second.fps == 29.97
    assert second.segments == (Segment(18.6, 24.8, "Long jump"), Segment(1.0, 5.0, "Discus throw"))
    assert anns["aaa"].subset == "testing" and anns["aaa"].segments == ()


def test_reads_hacs_with_string_durations(tmp_path: Path) -> None:
    path = _write(tmp_path, HACS_TEXT, "HACS_segments_v1.1.1.json")
    anns = load_annotations(path, format="hacs").annotations
    assert anns.classes == ("Archery", "Dodgeball")
    assert anns["--0edUL8zmA"].duration_sec == 92.18
    assert anns["--0edUL8zmA"].segments == (Segment(5.4, 11.6, "Dodgeball"), Segment(12.6, 88.16, "Dodgeball"))
    assert anns["-0eAZXhzKu8"] == VideoAnnotation(video_id="-0eAZXhzKu8", subset="validation",
                                                  segments=(Segment(0.0, 10.5, "Archery"),), duration_sec=31.0,
                                                  url="x")


def test_format_detection(tmp_path: Path) -> None:
    assert detect_format(_write(tmp_path, "{}", "a.JSON")) == "activitynet"
    assert detect_format(_write(tmp_path, "video,start,end,label\n", "a.csv")) == "csv"
    assert detect_format(tmp_path) == "thumos14"
    with pytest.raises(ValueError, match="pass format="):
        detect_format(_write(tmp_path, "", "a.yaml"))
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_annotations(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="unknown annotation format 'kinetics'"):
        load_annotations(_write(tmp_path, ANET_TEXT), format="kinetics")
    assert set(FORMATS) == {"activitynet", "hacs", "thumos14", "csv"}


def test_end_before_start_and_negative_start(tmp_path: Path) -> None:
    path = _write(tmp_path, _database({
        "v1": {"subset": "training", "duration": 100, "annotations": [
            {"segment": [5.0, 3.0], "label": "a"}, {"segment": [-1.0, 2.0], "label": "a"},
            {"segment": [4.0, 4.0], "label": "a"}, {"segment": [10, 20], "label": "a"}]}}))
    result = load_annotations(path, on_invalid="skip")
    _one(result.problems, severity="error", video="v1", contains="annotation 1: segment end 3.0 <= start 5.0",
         path=path)
    _one(result.problems, severity="error", video="v1", contains="annotation 2: segment start -1.0 is negative",
         path=path)
    _one(result.problems, severity="error", video="v1", contains="segment end 4.0 <= start 4.0", path=path)
    assert result.annotations["v1"].segments == (Segment(10.0, 20.0, "a"),)


def test_segment_beyond_duration_is_clipped_with_a_warning(tmp_path: Path) -> None:
    path = _write(tmp_path, _database({
        "v1": {"subset": "training", "duration": "30.0", "annotations": [
            {"segment": ["25.5", "31.2"], "label": "a"}, {"segment": [30.0, 40.0], "label": "b"}]}}))
    with pytest.raises(AnnotationError):  # the second segment lies entirely beyond: an error
        load_annotations(path)
    result = load_annotations(path, on_invalid="skip")
    warning = _one(result.problems, severity="warning", video="v1", contains="clipped to 30.0", path=path)
    assert "[25.5, 31.2]" in warning.message
    _one(result.problems, severity="error", video="v1", contains="lies entirely beyond the video's duration 30.0",
         path=path)
    assert result.annotations["v1"].segments == (Segment(25.5, 30.0, "a"),)
    assert result.annotations.classes == ("a",)


def test_clipping_alone_is_only_a_warning_in_strict_mode(tmp_path: Path) -> None:
    path = _write(tmp_path, _database({
        "v1": {"subset": "training", "duration": 30, "annotations": [{"segment": [25, 31], "label": "a"}]}}))
    result = load_annotations(path)
    assert [p.severity for p in result.problems] == ["warning"]
    assert result.annotations["v1"].segments == (Segment(25.0, 30.0, "a"),)


def test_unknown_subset_drops_the_video(tmp_path: Path) -> None:
    path = _write(tmp_path, _database({
        "v1": {"subset": "holdout", "duration": 10, "annotations": [{"segment": [1, 2], "label": "a"}]},
        "v2": {"subset": "val", "duration": 10, "annotations": []}}))
    result = load_annotations(path, on_invalid="skip")
    _one(result.problems, severity="error", video="v1", contains="unknown subset 'holdout'", path=path)
    assert list(result.annotations.videos) == ["v2"]
    assert result.annotations["v2"].subset == "validation"


def test_duplicate_video_ids_are_detected(tmp_path: Path) -> None:
    text = ('{"database": {"dup": {"subset": "training", "duration": 10, "annotations": []},'
            ' "ok": {"subset": "training", "duration": 10, "annotations": []},'
            ' "dup": {"subset": "validation", "duration": 12, "annotations": []}}}')
    path = _write(tmp_path, text)
    with pytest.raises(AnnotationError) as raised:
        load_annotations(path)
    assert any(p.video_id == "dup" and "duplicate video id" in p.message for p in raised.value.problems)
    result = load_annotations(path, on_invalid="skip")
    _one(result.problems, severity="error", video="dup", contains="duplicate video id", path=path)
    assert list(result.annotations.videos) == ["ok"]


@pytest.mark.parametrize("bad, shown", [
    ('"abc"', "'abc'"), ("null", "None"), ("NaN", "nan"), ("Infinity", "inf"), ("true", "True"),
    ('"nan"', "'nan'"), ('"1_0"', "'1_0'"),
])
def test_non_numeric_segment_values_are_errors(tmp_path: Path, bad: str, shown: str) -> None:
    text = ('{"database": {"v1": {"subset": "training", "duration": 10, "annotations": '
            f'[{{"segment": [1, {bad}], "label": "a"}}, {{"segment": [2, 3], "label": "a"}}]}}}}}}')
    path = _write(tmp_path, text)
    result = load_annotations(path, on_invalid="skip")
    _one(result.problems, severity="error", video="v1", contains=f"segment end {shown} is not a number", path=path)
    assert result.annotations["v1"].segments == (Segment(2.0, 3.0, "a"),)


@pytest.mark.parametrize("duration, message", [
    ('"ten"', "duration 'ten' is not a number"), ("0", "duration 0.0 <= 0"), ("-5", "duration -5.0 <= 0"),
    ("false", "duration False is not a number"),
])
def test_bad_duration_drops_the_video(tmp_path: Path, duration: str, message: str) -> None:
    path = _write(tmp_path, f'{{"database": {{"v1": {{"subset": "training", "duration": {duration}, '
                            '"annotations": [{"segment": [1, 2], "label": "a"}]}}}')
    result = load_annotations(path, on_invalid="skip")
    _one(result.problems, severity="error", video="v1", contains=message, path=path)
    assert len(result.annotations) == 0 and result.annotations.classes == ()


def test_malformed_entries_are_reported(tmp_path: Path) -> None:
    path = _write(tmp_path, _database({
        "v1": {"subset": "training", "duration": 10, "annotations": [
            {"segment": [1], "label": "a"}, "oops", {"segment": [1, 2], "label": 7}, {"segment": [1, 2]},
            {"segment": [3, 4], "label": "a"}, {"segment": [3, 4], "label": "a"}]},
        "v2": "not an object",
        "v3": {"subset": "training", "annotations": {"segment": [1, 2]}}}))
    result = load_annotations(path, on_invalid="skip")
    _one(result.problems, severity="error", video="v1", contains="'segment' must be [start, end], got [1]",
         path=path)
    _one(result.problems, severity="error", video="v1", contains="annotation 2: expected an object", path=path)
    _one(result.problems, severity="error", video="v1", contains="segment label 7 is not a string", path=path)
    _one(result.problems, severity="error", video="v1", contains="segment label None is not a string", path=path)
    _one(result.problems, severity="warning", video="v1", contains="duplicate segment [3.0, 4.0] 'a'; kept once",
         path=path)
    _one(result.problems, severity="error", video="v2", contains="expected an object", path=path)
    _one(result.problems, severity="error", video="v3", contains="'annotations' must be a list", path=path)
    assert list(result.annotations.videos) == ["v1"]
    assert result.annotations["v1"].segments == (Segment(3.0, 4.0, "a"),)


def test_invalid_json_and_wrong_layout(tmp_path: Path) -> None:
    path = _write(tmp_path, '{"database": {"v1": }')
    result = load_annotations(path, on_invalid="skip")
    assert len(result.annotations) == 0
    assert len(result.problems) == 1 and "not valid JSON" in str(result.problems[0])
    assert str(path) in str(result.problems[0]) and "line 1" in result.problems[0].message
    path = _write(tmp_path, '{"results": {}}', "results.json")
    with pytest.raises(AnnotationError, match="'database'"):
        load_annotations(path)


def test_strict_mode_raises_every_problem_errors_first(tmp_path: Path) -> None:
    path = _write(tmp_path, _database({
        "v1": {"subset": "training", "duration": 10, "annotations": [
            {"segment": [5, 11], "label": "a"}, {"segment": [5, 3], "label": "a"}]},
        "v2": {"subset": "nope", "duration": 10, "annotations": []}}))
    with pytest.raises(AnnotationError) as raised:
        load_annotations(path, on_invalid="raise")
    problems = raised.value.problems
    assert [p.severity for p in problems] == ["error", "error", "warning"]
    assert {p.video_id for p in problems} == {"v1", "v2"}
    assert "--skip-invalid" in str(raised.value) and str(path) in str(raised.value)
    with pytest.raises(ValueError, match="on_invalid"):
        load_annotations(path, on_invalid="ignore")  # type: ignore[arg-type]


def _example_set() -> AnnotationSet:
    videos = [
        VideoAnnotation(video_id="b", subset="validation", segments=(Segment(0.1, 2.5, "jump"),
                                                                    Segment(3.0, 7.25, "run")),
                        duration_sec=10.0, fps=29.97, url="https://example.com/b", resolution="640x360",
                        ignore_regions_sec=((8.0, 9.5),)),
        VideoAnnotation(video_id="a", subset="training", segments=(Segment(1.0 / 3.0, 2.0, "jump"),),
                        duration_sec=5.5),
        VideoAnnotation(video_id="c", subset="testing", segments=()),
    ]
    return AnnotationSet.from_videos(videos, source="memory")


def test_write_ground_truth_round_trip_and_is_deterministic(tmp_path: Path) -> None:
    original = _example_set()
    first, second = tmp_path / "gt1.json", tmp_path / "gt2.json"
    write_ground_truth(original, first)
    write_ground_truth(AnnotationSet.from_videos(reversed(list(original)), source="x"), second)
    assert first.read_bytes() == second.read_bytes()
    loaded = load_annotations(first).annotations
    assert loaded.videos == original.videos
    assert loaded.classes == original.classes
    data = json.loads(first.read_text())
    assert data["version"] == "VERSION 1.3"
    assert list(data["database"]) == ["a", "b", "c"]
    assert data["database"]["b"]["fps"] == 29.97
    assert data["database"]["b"]["annotations"][0] == {"segment": [0.1, 2.5], "label": "jump"}
    assert "fps" not in data["database"]["a"] and "duration" not in data["database"]["c"]
    assert [n["nodeName"] for n in data["taxonomy"]] == ["Root", "jump", "run"]


def test_classes_include_taxonomy_leaves(tmp_path: Path) -> None:
    taxonomy = [
        {"nodeId": 0, "nodeName": "Root", "parentId": None, "parentName": None},
        {"nodeId": 1, "nodeName": "Sports", "parentId": 0, "parentName": "Root"},
        {"nodeId": 2, "nodeName": "Long jump", "parentId": 1, "parentName": "Sports"},
        {"nodeId": 3, "nodeName": "Archery", "parentId": 1, "parentName": "Sports"},
    ]
    path = _write(tmp_path, json.dumps({"taxonomy": taxonomy, "database": {
        "v1": {"subset": "training", "duration": 10, "annotations": [{"segment": [1, 2], "label": "Long jump"},
                                                                     {"segment": [3, 4], "label": "Zumba"}]}}}))
    assert load_annotations(path).annotations.classes == ("Archery", "Long jump", "Zumba")
    path = _write(tmp_path, json.dumps({"taxonomy": "none", "database": {"v1": {"subset": "training"}}}),
                  "bad_taxonomy.json")
    result = load_annotations(path)
    assert [p.severity for p in result.problems] == ["warning"] and "'taxonomy'" in str(result.problems[0])


def test_unused_classes_survive_a_round_trip(tmp_path: Path) -> None:
    original = AnnotationSet.from_videos(_example_set(), classes=("jump", "run", "swim"))
    write_ground_truth(original, tmp_path / "gt.json")
    assert load_annotations(tmp_path / "gt.json").annotations.classes == ("jump", "run", "swim")


def test_write_results_layout(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    detections = {"b": [Detection(1.0, 2.5, "run", 0.9), Detection(0.0, 1.0, "jump", 0.25)], "a": []}
    write_results(detections, path)
    data = json.loads(path.read_text())
    assert data == {
        "version": "VERSION 1.3",
        "results": {"a": [], "b": [{"label": "run", "score": 0.9, "segment": [1.0, 2.5]},
                                   {"label": "jump", "score": 0.25, "segment": [0.0, 1.0]}]},
        "external_data": {"used": False, "details": ""},
    }
    assert list(data["results"]) == ["b", "a"]  # given order kept: tied scores rank by input order
    again = tmp_path / "again.json"
    write_results({"b": iter(detections["b"]), "a": ()}, again)
    assert again.read_bytes() == path.read_bytes()


def test_as_annotated_keeps_what_the_official_evaluator_keeps(tmp_path: Path) -> None:
    path = _write(tmp_path, _database({
        "v1": {"subset": "validation", "duration": "30.0", "annotations": [
            {"segment": [25.5, 31.2], "label": "a"}, {"segment": [30.0, 40.0], "label": "b"},
            {"segment": [1, 2], "label": "a"}, {"segment": [1, 2], "label": "a"}]}}))
    result = load_annotations(path, as_annotated=True)  # strict: nothing here is an error any more
    assert result.annotations["v1"].segments == (
        Segment(25.5, 31.2, "a"), Segment(30.0, 40.0, "b"), Segment(1.0, 2.0, "a"), Segment(1.0, 2.0, "a"))
    assert {p.severity for p in result.problems} == {"warning"}
    _one(result.problems, severity="warning", video="v1", contains="kept as annotated (not clipped)", path=path)
    _one(result.problems, severity="warning", video="v1", contains="lies entirely beyond", path=path)
    _one(result.problems, severity="warning", video="v1", contains="kept twice, as annotated", path=path)
    cleaned = load_annotations(path, on_invalid="skip")  # the default cleans: clip, drop, keep once
    assert cleaned.annotations["v1"].segments == (Segment(25.5, 30.0, "a"), Segment(1.0, 2.0, "a"))


def test_as_annotated_still_refuses_broken_segments(tmp_path: Path) -> None:
    path = _write(tmp_path, _database({
        "v1": {"subset": "validation", "duration": 30, "annotations": [{"segment": [5, 2], "label": "a"}]}}))
    with pytest.raises(AnnotationError, match=r"end 2.0 <= start 5.0"):
        load_annotations(path, as_annotated=True)


@pytest.mark.parametrize("name", ["csv", "thumos14"])
def test_every_reader_takes_as_annotated(tmp_path: Path, name: str) -> None:
    if name == "csv":
        path = tmp_path / "a.csv"
        path.write_text("video,start,end,label,subset\nv1,1,2,a,validation\nv1,1,2,a,validation\n")
    else:
        path = tmp_path / "thumos"
        path.mkdir()
        (path / "Jump_val.txt").write_text("video_validation_1 1.0 2.0\nvideo_validation_1 1.0 2.0\n")
    assert [len(v.segments) for v in load_annotations(path, format=name).annotations] == [1]
    assert [len(v.segments) for v in load_annotations(path, format=name, as_annotated=True).annotations] == [2]


def test_an_empty_database_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path, '{"version": "VERSION 1.3", "taxonomy": [], "database": {}}')
    with pytest.raises(AnnotationError, match="no video in this dataset: 'database' is empty") as raised:
        load_annotations(path)
    assert [str(p) for p in raised.value.problems] == [
        f"{path}: error: no video in this dataset: 'database' is empty; an annotation file must list at least one "
        f"video"]
    result = load_annotations(path, on_invalid="skip")
    assert len(result.annotations) == 0 and [p.severity for p in result.problems] == ["error"]


def test_any_reader_that_finds_no_video_gives_the_error(tmp_path: Path, monkeypatch) -> None:
    """load_annotations says so itself for a format whose reader does not (a reader added later, say)."""
    monkeypatch.setitem(FORMATS, "quiet", lambda path, as_annotated=False: (AnnotationSet.from_videos([]), []))
    path = _write(tmp_path, "{}", "quiet.json")
    with pytest.raises(AnnotationError, match="no video in this dataset: the quiet reader found none"):
        load_annotations(path, format="quiet")
