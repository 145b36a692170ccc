"""ActivityNet results files: the Detection reader and the columnar reader agree, and both name bad entries."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lofi.data.annotations import Detection
from lofi.data.detection_table import DetectionTable
from lofi.data.formats import read_results, read_results_table, write_results

RESULTS = {
    "v1": [{"label": "jump", "score": 0.9, "segment": [10.0, 20.0]},
           {"label": "run", "score": "0.25", "segment": ["1.5", 3]}],  # strings and ints accepted
    "v2": [],
    "v3": [{"label": "run", "score": 1, "segment": [0, 0]}],  # a zero-length segment is allowed
}


def _write(tmp_path: Path, results, name: str = "pred.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"version": "VERSION 1.3", "results": results, "external_data": {}}))
    return path


def test_table_reader_matches_detection_reader(tmp_path):
    path = _write(tmp_path, RESULTS)
    table = read_results_table(path)
    assert table.video_ids == ("v1", "v2", "v3")
    assert table.labels == ("jump", "run")
    np.testing.assert_array_equal(table.video_index, [0, 0, 2])
    np.testing.assert_array_equal(table.label_index, [0, 1, 1])
    np.testing.assert_array_equal(table.segments_sec, [[10.0, 20.0], [1.5, 3.0], [0.0, 0.0]])
    np.testing.assert_array_equal(table.scores, [0.9, 0.25, 1.0])
    assert table.to_mapping() == read_results(path)
    assert table.to_mapping()["v1"][1] == Detection(1.5, 3.0, "run", 0.25)


def test_table_round_trips_through_mapping_and_file(tmp_path):
    rng = np.random.default_rng(0)
    mapping = {f"v{i}": [Detection(float(s), float(s + d), f"c{int(c)}", float(sc))
                         for s, d, c, sc in zip(rng.uniform(0, 50, n), rng.uniform(0, 9, n), rng.integers(0, 4, n),
                                                rng.uniform(size=n))]
               for i, n in enumerate(rng.integers(0, 6, 12))}
    table = DetectionTable.from_mapping(mapping)
    assert len(table) == sum(len(d) for d in mapping.values())
    assert table.to_mapping() == mapping
    assert table.detections_of("v3") == mapping["v3"]
    assert table.detections_of("absent") == []
    write_results(table, tmp_path / "t.json")
    write_results(mapping, tmp_path / "m.json")
    assert (tmp_path / "t.json").read_bytes() == (tmp_path / "m.json").read_bytes()
    again = read_results_table(tmp_path / "t.json")
    assert again.to_mapping() == mapping


def test_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"results": RESULTS}).encode())
    assert read_results_table(path).to_mapping() == read_results(path)


@pytest.mark.parametrize("bad_entry, message", [
    ({"label": "jump", "score": "high", "segment": [1, 2]}, "score 'high' is not a number"),
    ({"label": "jump", "score": True, "segment": [1, 2]}, "score True is not a number"),
    ({"label": "jump", "score": 0.5, "segment": [1]}, "'segment' must be [start, end]"),
    ({"label": "jump", "score": 0.5, "segment": [3, 2]}, "segment end 2.0 < start 3.0"),
    ({"label": "jump", "score": 0.5, "segment": [1, "nan"]}, "is not two numbers"),
    ({"label": "", "score": 0.5, "segment": [1, 2]}, "'label' must be a non-empty string"),
    ({"score": 0.5, "segment": [1, 2]}, "'label' must be a non-empty string"),
    (["jump", 0.5, [1, 2]], "expected an object"),
])
@pytest.mark.parametrize("reader", [read_results, read_results_table])
def test_bad_entry_names_file_video_and_entry(tmp_path, reader, bad_entry, message):
    good = {"label": "jump", "score": 0.5, "segment": [1, 2]}
    path = _write(tmp_path, {"v1": [good], "v2": [good, bad_entry]})
    with pytest.raises(ValueError) as info:
        reader(path)
    text = str(info.value)
    assert str(path) in text and "video 'v2'" in text and "result 2" in text
    assert message in text


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    (json.dumps({"database": {}}), "'results' object"),
    (json.dumps({"results": {"v1": {"label": "x"}}}), "expected a list of results"),
])
@pytest.mark.parametrize("reader", [read_results, read_results_table])
def test_bad_file_is_named(tmp_path, reader, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        reader(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("reader", [read_results, read_results_table])
def test_missing_file(tmp_path, reader):
    with pytest.raises(FileNotFoundError, match="not found"):
        reader(tmp_path / "absent.json")


def test_table_check_names_the_video_and_detection():
    table = DetectionTable.from_mapping({"a": [Detection(0, 1, "x", 0.5)],
                                         "b": [Detection(0, 1, "x", 0.5), Detection(0, 1, "x", float("nan"))]})
    with pytest.raises(ValueError, match=r"video 'b': detection 2: non-finite"):
        table.check()
    table = DetectionTable.from_mapping({"a": [Detection(4, 1, "x", 0.5)]})
    with pytest.raises(ValueError, match=r"video 'a': detection 1: end_sec 1.0 < start_sec 4.0"):
        table.check()


def test_table_rejects_inconsistent_columns():
    with pytest.raises(ValueError, match="columns disagree"):
        DetectionTable.from_columns(video_ids=["a"], labels=["x"], video_index=[0, 0], label_index=[0],
                                    segments_sec=[[0, 1]], scores=[0.5])
    with pytest.raises(ValueError, match="outside"):
        DetectionTable.from_columns(video_ids=["a"], labels=["x"], video_index=[1], label_index=[0],
                                    segments_sec=[[0, 1]], scores=[0.5])
