"""The shared validation rules, and the check of annotations against real (tiny) video files."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from _videos import (write_audio_only, write_cut_video, write_empty_video, write_mkv_with_longer_audio,
                     write_text_as_video, write_video)

from lofi.data import sampling
from lofi.data.annotations import AnnotationSet, Problem, Segment, VideoAnnotation
from lofi.data.validation import (
    TRUNCATION_TOLERANCE_SEC,
    RawSegment,
    check_videos,
    durations_agree,
    parse_number,
    validate_segments,
    validate_video,
)
from lofi.data.video import VideoReadError

SOURCE = "ann.json"


def _by_video(problems: list[Problem], video: str) -> list[str]:
    return [f"{p.severity}: {p.message}" for p in problems if p.video_id == video]


@pytest.mark.parametrize("value, expected", [
    (3, 3.0), (2.5, 2.5), ("18.6", 18.6), (" 24.8 ", 24.8), ("1e2", 100.0), ("-0.5", -0.5), (".5", 0.5),
])
def test_parse_number_accepts_numbers_and_numeric_strings(value: object, expected: float) -> None:
    assert parse_number(value) == expected


@pytest.mark.parametrize("value", ["abc", "", None, True, False, math.nan, math.inf, "nan", "inf", "1_0",
                                   "0x10", [1.0], "1,5"])
def test_parse_number_rejects_everything_else(value: object) -> None:
    assert parse_number(value) is None


def test_validate_segments_rules() -> None:
    raws = [
        RawSegment("1.0", "2.0", "a", "f:1"),
        RawSegment(5.0, 3.0, "a", "f:2"),
        RawSegment(-1, 3, "a", "f:3"),
        RawSegment(8, 12, "b", "f:4"),
        RawSegment(10, 11, "b", "f:5"),
        RawSegment(1.0, 2.0, "a", "f:6"),
        RawSegment("x", 2, "a", "f:7", "annotation 7"),
    ]
    kept, problems = validate_segments(raws, video_id="v", duration_sec=10.0)
    assert kept == [Segment(1.0, 2.0, "a"), Segment(8.0, 10.0, "b")]
    assert [str(p) for p in problems] == [
        "f:2: video 'v': error: segment end 3.0 <= start 5.0",
        "f:3: video 'v': error: segment start -1.0 is negative",
        "f:4: video 'v': warning: segment [8.0, 12.0] 'b' ends after the video's duration 10.0 s; clipped to 10.0",
        "f:5: video 'v': error: segment [10.0, 11.0] 'b' lies entirely beyond the video's duration 10.0 s",
        "f:6: video 'v': warning: duplicate segment [1.0, 2.0] 'a'; kept once",
        "f:7: video 'v': error: annotation 7: segment start 'x' is not a number",
    ]


def test_validate_segments_without_duration_does_not_clip() -> None:
    kept, problems = validate_segments([RawSegment(8, 1e6, "a", "f")], video_id="v", duration_sec=None)
    assert kept == [Segment(8.0, 1e6, "a")] and problems == []


def test_validate_video_builds_the_annotation() -> None:
    video, problems = validate_video(source=SOURCE, video_id=" v1 ", subset="Val", duration="20", fps=25,
                                     segments=[RawSegment(1, 2, "a", SOURCE)],
                                     ignore_regions=[RawSegment(15, 25, "ignore", SOURCE)], url="u")
    assert video == VideoAnnotation(video_id="v1", subset="validation", segments=(Segment(1.0, 2.0, "a"),),
                                    duration_sec=20.0, fps=25.0, ignore_regions_sec=((15.0, 20.0),), url="u")
    assert [str(p) for p in problems] == [
        "ann.json: video 'v1': warning: ignore region [15.0, 25.0] 'ignore' ends after the video's duration "
        "20.0 s; clipped to 20.0"]


@pytest.mark.parametrize("fields, message", [
    ({"subset": "train2"}, "unknown subset 'train2'; expected one of training, validation, testing"),
    ({"subset": None}, "unknown subset None"),
    ({"duration": "abc"}, "duration 'abc' is not a number"),
    ({"duration": -3}, "duration -3.0 <= 0"),
    ({"fps": 0}, "fps 0.0 <= 0"),
])
def test_video_level_errors_drop_the_video(fields: dict, message: str) -> None:
    values = {"subset": "training", "duration": 10.0, "fps": None, **fields}
    video, problems = validate_video(source=SOURCE, video_id="v1", segments=[RawSegment(1, 2, "a", SOURCE)],
                                     **values)
    assert video is None
    assert len(problems) == 1 and message in str(problems[0])
    assert str(problems[0]).startswith("ann.json: video 'v1': error: ")


def test_empty_video_id_is_an_error() -> None:
    video, problems = validate_video(source=SOURCE, video_id="  ", subset="training")
    assert video is None and [str(p) for p in problems] == ["ann.json: error: video id '  ' is empty"]


@pytest.mark.parametrize("annotated, file, agree", [
    (2.0, 2.9, True), (2.0, 3.1, False), (100.0, 98.1, True), (100.0, 97.9, False), (10.0, 10.0, True),
])
def test_durations_agree_uses_the_larger_tolerance(annotated: float, file: float, agree: bool) -> None:
    assert durations_agree(annotated, file, duration_tolerance_sec=1.0, relative_tolerance=0.02) is agree


@pytest.fixture
def videos_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "videos"
    write_video(directory / "good.mp4")                       # 2.0 s at 10 fps
    write_video(directory / "sub" / "v_prefixed.mp4")         # ActivityNet-style file name, in a sub folder
    write_video(directory / "nodur.mp4")
    write_video(directory / "wrongdur.mp4")
    write_empty_video(directory / "empty.mp4")
    write_text_as_video(directory / "text.mp4")
    return directory


def _annotations() -> AnnotationSet:
    def video(vid: str, duration: float | None, *segments: Segment) -> VideoAnnotation:
        return VideoAnnotation(video_id=vid, subset="training", segments=segments, duration_sec=duration)

    return AnnotationSet.from_videos([
        video("good", 2.5, Segment(0.5, 1.5, "a")),
        video("prefixed", 2.0),
        video("nodur", None, Segment(0.5, 1.0, "a"), Segment(1.5, 2.5, "a"), Segment(3.0, 4.0, "b")),
        video("wrongdur", 5.0),
        video("empty", 2.0),
        video("text", 2.0),
        video("absent", 2.0),
    ], source=SOURCE)


def test_check_videos(videos_dir: Path) -> None:
    checked, problems = check_videos(_annotations(), videos_dir)
    assert list(checked.videos) == ["good", "prefixed", "nodur"]
    assert checked.classes == ("a", "b") and checked.source == SOURCE
    good = checked["good"]
    assert good.duration_sec == 2.5 and good.fps == 10.0 and good.segments == (Segment(0.5, 1.5, "a"),)
    nodur = checked["nodur"]
    assert nodur.duration_sec == pytest.approx(2.0) and nodur.fps == 10.0
    assert nodur.segments == (Segment(0.5, 1.0, "a"), Segment(1.5, nodur.duration_sec, "a"))

    assert _by_video(problems, "nodur") == [
        "warning: segment [1.5, 2.5] 'a' ends after the video's duration 2.0 s (from the video file); "
        "clipped to 2.0",
        "error: segment [3.0, 4.0] 'b' lies entirely beyond the video's duration 2.0 s (from the video file)",
    ]
    assert all(p.source == SOURCE for p in problems if p.video_id == "nodur")
    by_id = {p.video_id: p for p in problems if p.video_id != "nodur"}
    assert set(by_id) == {"wrongdur", "empty", "text", "absent"}
    assert str(by_id["absent"]) == f"{videos_dir}: video 'absent': error: no video file found in {videos_dir}"
    assert str(by_id["wrongdur"]) == (f"{videos_dir / 'wrongdur.mp4'}: video 'wrongdur': error: annotated "
                                      f"duration 5.0 s disagrees with the file's 2.000 s (tolerance 1.0 s)")
    assert str(by_id["empty"]) == (f"{videos_dir / 'empty.mp4'}: video 'empty': error: cannot read the video "
                                   f"file: file is empty (0 bytes)")
    assert str(by_id["text"]).startswith(f"{videos_dir / 'text.mp4'}: video 'text': error: cannot read the "
                                         f"video file: not a readable video container")
    assert all(p.severity == "error" for p in by_id.values())


def test_check_videos_tolerance_is_configurable(videos_dir: Path) -> None:
    annotations = AnnotationSet.from_videos(
        [VideoAnnotation(video_id="good", subset="training", segments=(), duration_sec=2.5)], source=SOURCE)
    checked, problems = check_videos(annotations, videos_dir, duration_tolerance_sec=0.1, relative_tolerance=0.0)
    assert len(checked) == 0 and "disagrees" in str(problems[0])
    checked, problems = check_videos(annotations, videos_dir, duration_tolerance_sec=0.1, relative_tolerance=0.5)
    assert list(checked.videos) == ["good"] and problems == []


def test_check_videos_needs_the_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="videos directory not found"):
        check_videos(_annotations(), tmp_path / "nope")


@pytest.fixture
def damaged_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "damaged"
    write_cut_video(directory / "whole.mp4", duration_sec=21.0, keep_fraction=1.0)
    write_cut_video(directory / "half.mp4", duration_sec=21.0, keep_fraction=0.5)  # header intact, frames stop
    write_cut_video(directory / "nearly.mp4", duration_sec=21.0, keep_fraction=0.995)  # the last 0.4 s lost
    write_cut_video(directory / "short.mp4", duration_sec=21.0, keep_fraction=0.97)  # the last ~1 s lost
    corrupt = write_cut_video(directory / "corrupt.mp4", duration_sec=21.0, keep_fraction=1.0)
    data = bytearray(corrupt.read_bytes())
    data[len(data) // 3:len(data) // 3 + 3000] = bytes(range(256)) * 11 + bytes(184)
    corrupt.write_bytes(bytes(data))
    write_audio_only(directory / "sound.mkv")
    return directory


def _ids(*ids: str, duration_sec: float | None = 21.0) -> AnnotationSet:
    return AnnotationSet.from_videos([VideoAnnotation(video_id=vid, subset="training", segments=(),
                                                      duration_sec=duration_sec) for vid in ids], source=SOURCE)


def test_check_videos_decodes_to_find_truncation_and_corruption(damaged_dir: Path) -> None:
    checked, problems = check_videos(_ids("whole", "half", "nearly", "corrupt", "sound"), damaged_dir)
    assert list(checked.videos) == ["whole", "nearly"]
    errors = {p.video_id: str(p) for p in problems if p.severity == "error"}
    assert set(errors) == {"half", "corrupt", "sound"}
    half = re.fullmatch(rf"{re.escape(str(damaged_dir / 'half.mp4'))}: video 'half': error: truncated or corrupt: "
                        r"frames stop at (\d+\.\d) s of 21\.0 s.*", errors["half"])
    assert half is not None and 7.0 < float(half[1]) < 14.0, errors["half"]
    assert re.search(r"corrupt\.mp4: video 'corrupt': error: truncated or corrupt: frames stop at \d\.\d s of 21\.0 s "
                     r"\(InvalidDataError", errors["corrupt"]), errors["corrupt"]
    assert errors["sound"].endswith("sound.mkv: video 'sound': error: cannot read the video file: has no video stream")
    # without decoding (probe only) the header's 21 s is all there is to see: the cut file passes
    checked, problems = check_videos(_ids("half", "nearly"), damaged_dir, decode=False)
    assert list(checked.videos) == ["half", "nearly"] and problems == []
    # no annotated duration: the file's duration is used, the frames are still checked against it
    checked, problems = check_videos(_ids("half", duration_sec=None), damaged_dir)
    assert len(checked) == 0 and "frames stop at" in str(problems[0])


def test_check_videos_refuses_what_sampling_refuses(damaged_dir: Path) -> None:
    """One tolerance: a file the check accepts, sampling reads to its very last frame; one it refuses, not."""
    assert TRUNCATION_TOLERANCE_SEC == sampling.TRUNCATION_TOLERANCE_SEC
    checked, problems = check_videos(_ids("nearly", "short"), damaged_dir)
    assert list(checked.videos) == ["nearly"] and [p.video_id for p in problems] == ["short"]
    spec = sampling.SnippetSpec(num_snippets=210, short_side_px=16)  # a frame every 0.1 s, up to the last one
    sampling.sample_snippets(damaged_dir / "nearly.mp4", spec)  # reads
    with pytest.raises(VideoReadError, match="truncated or corrupt"):
        sampling.sample_snippets(damaged_dir / "short.mp4", spec)


def test_a_video_shorter_than_its_container_says_why(tmp_path: Path) -> None:
    """Matroska states no video duration: the container's covers the 5 s audio, the frames stop at 3 s."""
    write_mkv_with_longer_audio(tmp_path / "v.mkv", video_sec=3.0, audio_sec=5.0)
    checked, problems = check_videos(_ids("v", duration_sec=None), tmp_path)
    assert len(checked) == 0 and len(problems) == 1
    assert re.search(r"frames stop at 3\.0 s of 5\.\d s \(the container's duration: the video stream states none",
                     str(problems[0])), problems
