"""The skip log: videos skipped inside DataLoader workers reach it, records merge across processes, and a dataset's
raised VideoReadError survives torch's rebuild of worker errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from _videos import write_text_as_video, write_video
from torch._utils import ExceptionWrapper
from torch.utils.data import DataLoader

from lofi.core.fidelity import Fidelity
from lofi.data.annotations import AnnotationSet, Problem, Segment, VideoAnnotation
from lofi.data.dataset import ItemReadError, skip_or_raise
from lofi.data.skips import SkipLog, SkipRecord, annotation_records, format_skipped, write_skipped
from lofi.data.video import VideoReadError
from lofi.data.windows import VideoWindowDataset, collate_windows


def _videos(tmp_path: Path) -> tuple[AnnotationSet, Path]:
    videos = tmp_path / "videos"
    for name in ("good_a", "good_b", "good_c"):
        write_video(videos / f"{name}.mp4", duration_sec=2.0, fps=10)
    write_text_as_video(videos / "bad.mp4")
    annotations = AnnotationSet.from_videos(
        [VideoAnnotation(v, "training", (Segment(0.2, 1.0, "wave"),)) for v in ("good_a", "bad", "good_b", "good_c")])
    return annotations, videos


def test_videos_skipped_in_workers_reach_the_log(tmp_path: Path) -> None:
    annotations, videos = _videos(tmp_path)
    log = SkipLog(tmp_path / "skip_log")
    dataset = VideoWindowDataset(annotations=annotations, videos_dir=videos, classes=annotations.classes,
                                 fidelities={"full": Fidelity("full", 2, 16)}, on_error="skip", skip_log=log)
    loader = DataLoader(dataset, batch_size=2, collate_fn=collate_windows, num_workers=2,
                        multiprocessing_context="spawn", persistent_workers=True)
    for _ in range(2):  # two epochs: the bad video is met twice, listed once
        kept = [vid for batch in loader for vid in batch["video_ids"]]
        assert sorted(kept) == ["good_a", "good_b", "good_c"]
    assert dataset.skipped == []  # the workers' own lists never come back: the log is what does
    assert log.records() == [SkipRecord(file=str(videos / "bad.mp4"), video_id="bad", what="video",
                                        reason=log.records()[0].reason)]
    assert "not a readable video container" in log.records()[0].reason
    files = list(log.folder.glob("*.jsonl"))  # one per process that skipped something: here a worker
    assert len(files) == 1 and not files[0].stem.endswith(f"-{os.getpid()}")


def test_records_merge_in_order_and_a_torn_line_is_ignored(tmp_path: Path) -> None:
    log = SkipLog(tmp_path)
    first, second = SkipRecord("a.json", "v1", "annotation", "bad"), SkipRecord("v2.mp4", "v2", "video", "corrupt")
    log.record(first)
    (tmp_path / "other-1.jsonl").write_text(json.dumps({"time": 1e12, **second.__dict__}) + "\n"
                                            + json.dumps({"time": 1e12 + 1, **first.__dict__}) + "\n"
                                            + '{"time": 1e12, "file": "v3.mp')  # a write cut by a kill
    assert log.records() == [first, second]


def test_annotation_records_keep_the_errors_only() -> None:
    problems = [Problem("gt.json", "annotation 2: segment end 1.0 <= start 2.5", "v2"),
                Problem("gt.json", "segment clipped", "v3", severity="warning")]
    assert annotation_records(problems) == [SkipRecord("gt.json", "v2", "annotation",
                                                       "annotation 2: segment end 1.0 <= start 2.5")]


def test_skipped_json_and_the_printed_list(tmp_path: Path) -> None:
    records = [SkipRecord("gt.json", "v2", "annotation", "annotation 2: segment end 1.0 <= start 2.5")]
    path = write_skipped(records, tmp_path / "out" / "skipped.json")
    assert json.loads(path.read_text()) == [{"file": "gt.json", "video_id": "v2", "what": "annotation",
                                             "reason": "annotation 2: segment end 1.0 <= start 2.5"}]
    assert format_skipped(records, path).splitlines() == [
        f"skipped 1 (--skip-invalid), listed in {path}:",
        "  gt.json: video 'v2': annotation: annotation 2: segment end 1.0 <= start 2.5"]
    assert format_skipped([], path) == f"skipped: nothing (--skip-invalid), listed in {path}"


def test_a_raised_video_error_survives_the_worker_rebuild(tmp_path: Path) -> None:
    path = tmp_path / "v1.mp4"
    with pytest.raises(ItemReadError) as raised:
        skip_or_raise(VideoReadError(path, "decoding stopped at 1.00 s of 2.00 s"), on_error="raise", skipped=[],
                      video_id="v1", what="video 'v1'")
    try:
        raise raised.value
    except ItemReadError:
        wrapper = ExceptionWrapper(where="in DataLoader worker process 0")  # what a worker sends back
    with pytest.raises(VideoReadError) as rebuilt:
        wrapper.reraise()
    assert type(rebuilt.value) is ItemReadError
    assert (rebuilt.value.path, rebuilt.value.reason) == (str(path), "decoding stopped at 1.00 s of 2.00 s")
    assert str(rebuilt.value) == str(raised.value)
