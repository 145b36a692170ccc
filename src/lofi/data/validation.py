"""The rules every annotation reader applies, in one place, and the check of annotations against video files.

Readers hand raw values (strings, None, whatever the file held) to :func:`validate_video`, which returns the
clean :class:`~lofi.data.annotations.VideoAnnotation` (or None when the whole video is invalid) and the
:class:`~lofi.data.annotations.Problem` list. Invalid segments are left out of the returned video; problems
with severity ``"warning"`` describe something that was repaired (a segment clipped to the video's duration, a
duplicate segment kept once).
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

from lofi.data.annotations import (
    SUBSET_ALIASES,
    SUBSETS,
    AnnotationSet,
    Problem,
    Segment,
    VideoAnnotation,
    canonical_subset,
)
from lofi.data.video import VideoInfo, VideoReadError, find_video_files, probe_video, scan_video

_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")

#: Frames may stop this much (or 3 frames, if longer) before the file's duration: what sampling tolerates
#: (:data:`lofi.data.sampling.TRUNCATION_TOLERANCE_SEC`; not imported, so that reading annotations needs no torch).
TRUNCATION_TOLERANCE_SEC: float = 0.5


@dataclass(frozen=True)
class RawSegment:
    """A segment as read from a file, before validation; the values may be strings, None or anything else.

    ``source`` is where it came from (the file, or ``"file:line"``); ``where`` is extra context put in front of
    messages, such as ``"annotation 3"`` for the third entry of a JSON list.
    """

    start: object
    end: object
    label: object
    source: str
    where: str = ""


def parse_number(value: object) -> float | None:
    """``value`` as a finite float: numbers and numeric strings (``"18.6"``) are accepted; None otherwise.

    Booleans, None, NaN, infinities and strings such as ``"abc"``, ``"nan"`` or ``"1_0"`` are not numbers.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        number = float(value.strip())
    else:
        return None
    return number if math.isfinite(number) else None


def _fmt(value: float) -> str:
    """Seconds for messages: the shortest exact form (``3.0``, ``18.6``)."""
    return repr(float(value))


def _error(source: str, video_id: str | None, message: str) -> Problem:
    return Problem(source=source, message=message, video_id=video_id, severity="error")


def _warning(source: str, video_id: str | None, message: str) -> Problem:
    return Problem(source=source, message=message, video_id=video_id, severity="warning")


def duplicate_id_problem(*, source: str, video_id: str, detail: str) -> Problem:
    """The error for a video id that appears more than once; ``detail`` says where (the video is dropped)."""
    return _error(source, video_id, f"duplicate video id: {detail}; the video is left out")


def _parse_segment(raw: RawSegment, *, video_id: str, kind: str) -> tuple[Segment | None, list[Problem]]:
    """Parse one raw segment: numbers, label, order and sign (no duration check)."""
    prefix = f"{raw.where}: " if raw.where else ""
    problems: list[Problem] = []
    start, end = parse_number(raw.start), parse_number(raw.end)
    if start is None:
        problems.append(_error(raw.source, video_id, f"{prefix}{kind} start {raw.start!r} is not a number"))
    if end is None:
        problems.append(_error(raw.source, video_id, f"{prefix}{kind} end {raw.end!r} is not a number"))
    if not isinstance(raw.label, str):
        problems.append(_error(raw.source, video_id, f"{prefix}{kind} label {raw.label!r} is not a string"))
    elif not raw.label.strip():
        problems.append(_error(raw.source, video_id, f"{prefix}{kind} label is empty"))
    if start is None or end is None:
        return None, problems
    if start < 0:
        problems.append(_error(raw.source, video_id, f"{prefix}{kind} start {_fmt(start)} is negative"))
    if end <= start:
        problems.append(_error(raw.source, video_id,
                               f"{prefix}{kind} end {_fmt(end)} <= start {_fmt(start)}"))
    if problems:
        return None, problems
    return Segment(start_sec=start, end_sec=end, label=str(raw.label).strip()), problems


def _fit_to_duration(segment: Segment, raw: RawSegment, *, video_id: str, duration_sec: float,
                     kind: str, duration_origin: str, as_annotated: bool) -> tuple[Segment | None, list[Problem]]:
    """Clip a segment that ends after the video (warning); refuse one that starts at or after its end (error).
    ``as_annotated``: keep both unchanged, with a warning."""
    prefix = f"{raw.where}: " if raw.where else ""
    span = f"{kind} [{_fmt(segment.start_sec)}, {_fmt(segment.end_sec)}] {segment.label!r}"
    duration = f"{_fmt(duration_sec)} s{duration_origin}"
    if segment.start_sec >= duration_sec:
        message = f"{prefix}{span} lies entirely beyond the video's duration {duration}"
        if as_annotated:
            return segment, [_warning(raw.source, video_id, f"{message}; kept as annotated")]
        return None, [_error(raw.source, video_id, message)]
    if segment.end_sec > duration_sec:
        if as_annotated:
            return segment, [_warning(raw.source, video_id, f"{prefix}{span} ends after the video's duration "
                                                            f"{duration}; kept as annotated (not clipped)")]
        clipped = replace(segment, end_sec=duration_sec)
        return clipped, [_warning(raw.source, video_id, f"{prefix}{span} ends after the video's duration "
                                                        f"{duration}; clipped to {_fmt(duration_sec)}")]
    return segment, []


def validate_segments(raw_segments: Iterable[RawSegment], *, video_id: str, duration_sec: float | None,
                      kind: str = "segment", duration_origin: str = "",
                      as_annotated: bool = False) -> tuple[list[Segment], list[Problem]]:
    """Check and clean a video's segments; the invalid ones are left out of the returned list.

    Errors: non-numeric times, a missing or non-string label, a negative start, end <= start, a segment lying
    entirely beyond ``duration_sec``. Warnings: a segment ending after ``duration_sec`` (clipped to it) and an
    exact duplicate (kept once). ``kind`` names the spans in messages (``"ignore region"``); ``duration_origin``
    is appended to the duration in messages (``" (from the video file)"``).

    ``as_annotated=True`` keeps what the official evaluators keep: duplicates, segments ending after the
    duration (not clipped) and segments beyond it stay as annotated, each still reported as a warning.
    """
    kept: list[Segment] = []
    seen: set[Segment] = set()
    problems: list[Problem] = []
    for raw in raw_segments:
        segment, found = _parse_segment(raw, video_id=video_id, kind=kind)
        problems.extend(found)
        if segment is not None and duration_sec is not None:
            segment, found = _fit_to_duration(segment, raw, video_id=video_id, duration_sec=duration_sec,
                                              kind=kind, duration_origin=duration_origin,
                                              as_annotated=as_annotated)
            problems.extend(found)
        if segment is None:
            continue
        if segment in seen:
            prefix = f"{raw.where}: " if raw.where else ""
            problems.append(_warning(raw.source, video_id,
                                     f"{prefix}duplicate {kind} [{_fmt(segment.start_sec)}, "
                                     f"{_fmt(segment.end_sec)}] {segment.label!r}; "
                                     f"{'kept twice, as annotated' if as_annotated else 'kept once'}"))
            if not as_annotated:
                continue
        seen.add(segment)
        kept.append(segment)
    return kept, problems


def _positive_number(value: object, *, name: str, source: str, video_id: str) -> tuple[float | None, list[Problem]]:
    """An optional positive number (duration, fps): None stays None; anything else must parse and be > 0."""
    if value is None:
        return None, []
    number = parse_number(value)
    if number is None:
        return None, [_error(source, video_id, f"{name} {value!r} is not a number")]
    if number <= 0:
        return None, [_error(source, video_id, f"{name} {_fmt(number)} <= 0")]
    return number, []


def subset_problem(subset: object, *, source: str, video_id: str) -> Problem | None:
    """The error for an unknown subset name, or None when ``subset`` is a known name or alias."""
    if isinstance(subset, str) and canonical_subset(subset) is not None:
        return None
    aliases = ", ".join(sorted(set(SUBSET_ALIASES) - set(SUBSETS)))
    return _error(source, video_id,
                  f"unknown subset {subset!r}; expected one of {', '.join(SUBSETS)} (or {aliases})")


def validate_video(*, source: str, video_id: object, subset: object, duration: object = None,
                   fps: object = None, segments: Iterable[RawSegment] = (),
                   ignore_regions: Iterable[RawSegment] = (), url: str | None = None,
                   resolution: str | None = None,
                   as_annotated: bool = False) -> tuple[VideoAnnotation | None, list[Problem]]:
    """Check one video's raw values and build its :class:`VideoAnnotation`.

    Video-level errors (empty id, unknown subset, duration or fps non-numeric or <= 0) return None: the whole
    video is invalid. Segment errors only leave out the segment (see :func:`validate_segments`, which also
    says what ``as_annotated`` keeps); ignore regions follow the same rules. ``source`` is used for the
    video-level problems.
    """
    vid = str(video_id).strip() if video_id is not None else ""
    if not vid:
        return None, [_error(source, None, f"video id {video_id!r} is empty")]
    problems: list[Problem] = []
    subset_error = subset_problem(subset, source=source, video_id=vid)
    if subset_error is not None:
        problems.append(subset_error)
    duration_sec, found = _positive_number(duration, name="duration", source=source, video_id=vid)
    problems.extend(found)
    fps_value, found = _positive_number(fps, name="fps", source=source, video_id=vid)
    problems.extend(found)
    if problems:
        return None, problems
    kept, found = validate_segments(segments, video_id=vid, duration_sec=duration_sec, as_annotated=as_annotated)
    problems.extend(found)
    regions, found = validate_segments(ignore_regions, video_id=vid, duration_sec=duration_sec,
                                       kind="ignore region", as_annotated=as_annotated)
    problems.extend(found)
    video = VideoAnnotation(video_id=vid, subset=canonical_subset(str(subset)) or "", segments=tuple(kept),
                            duration_sec=duration_sec, fps=fps_value,
                            ignore_regions_sec=tuple((r.start_sec, r.end_sec) for r in regions),
                            url=url, resolution=resolution)
    return video, problems


def fit_to_duration(video: VideoAnnotation, *, source: str,
                    duration_origin: str = "") -> tuple[VideoAnnotation, list[Problem]]:
    """Apply the beyond-duration rules to an already valid video (after its duration became known)."""
    if video.duration_sec is None:
        return video, []
    raw = [RawSegment(s.start_sec, s.end_sec, s.label, source) for s in video.segments]
    segments, problems = validate_segments(raw, video_id=video.video_id, duration_sec=video.duration_sec,
                                           duration_origin=duration_origin)
    raw_regions = [RawSegment(s, e, "ignore", source) for s, e in video.ignore_regions_sec]
    regions, found = validate_segments(raw_regions, video_id=video.video_id, duration_sec=video.duration_sec,
                                       kind="ignore region", duration_origin=duration_origin)
    problems.extend(found)
    fitted = replace(video, segments=tuple(segments),
                     ignore_regions_sec=tuple((r.start_sec, r.end_sec) for r in regions))
    return fitted, problems


def durations_agree(annotated_sec: float, file_sec: float, *, duration_tolerance_sec: float = 1.0,
                    relative_tolerance: float = 0.02) -> bool:
    """True when the two durations differ by at most max(``duration_tolerance_sec``, relative × annotated)."""
    return abs(annotated_sec - file_sec) <= max(duration_tolerance_sec, relative_tolerance * annotated_sec)


def empty_dataset_problem(source: str, detail: str) -> Problem:
    """The error for an annotation file (or folder) that lists no video; ``detail`` says what was found."""
    return _error(source, None, f"no video in this dataset: {detail}; an annotation file must list at least one "
                                f"video")


def _read_video(path: Path, video_id: str, *, decode: bool) -> tuple[VideoInfo | None, list[Problem]]:
    """The file's metadata and, with ``decode``, the problems of decoding it to the end (truncation, corruption)."""
    try:
        if not decode:
            return probe_video(path), []
        scan = scan_video(path)
    except VideoReadError as exc:
        return None, [_error(str(path), video_id, f"cannot read the video file: {exc.reason}")]
    info, detail = scan.info, f" ({scan.error})" if scan.error else ""
    if scan.num_frames_decoded == 0:
        return None, [_error(str(path), video_id, f"no video frame could be decoded{detail}")]
    if scan.frames_end_sec + max(TRUNCATION_TOLERANCE_SEC, 3.0 / info.fps) < info.duration_sec:
        if not scan.duration_from_stream:
            detail += " (the container's duration: the video stream states none, and another stream may run longer)"
        return None, [_error(str(path), video_id, f"truncated or corrupt: frames stop at {scan.frames_end_sec:.1f} s "
                                                  f"of {info.duration_sec:.1f} s{detail}")]
    if scan.error:
        return info, [_warning(str(path), video_id, f"decoding failed at {scan.frames_end_sec:.1f} s of "
                                                    f"{info.duration_sec:.1f} s, close enough to the end to use the "
                                                    f"frames before{detail}")]
    return info, []


def _check_one_video(video: VideoAnnotation, path: Path, *, source: str, duration_tolerance_sec: float,
                     relative_tolerance: float, decode: bool) -> tuple[VideoAnnotation | None, list[Problem]]:
    info, problems = _read_video(path, video.video_id, decode=decode)
    if info is None:
        return None, problems
    if video.duration_sec is not None:
        if not durations_agree(video.duration_sec, info.duration_sec, duration_tolerance_sec=duration_tolerance_sec,
                               relative_tolerance=relative_tolerance):
            tolerance = max(duration_tolerance_sec, relative_tolerance * video.duration_sec)
            return None, problems + [_error(str(path), video.video_id,
                                            f"annotated duration {_fmt(video.duration_sec)} s disagrees with the "
                                            f"file's {info.duration_sec:.3f} s (tolerance {_fmt(tolerance)} s)")]
        return (video if video.fps is not None else replace(video, fps=info.fps)), problems
    filled = replace(video, duration_sec=info.duration_sec, fps=video.fps if video.fps is not None else info.fps)
    fitted, found = fit_to_duration(filled, source=source, duration_origin=" (from the video file)")
    return fitted, problems + found


def check_videos(annotations: AnnotationSet, videos_dir: str | os.PathLike, *,
                 duration_tolerance_sec: float = 1.0, relative_tolerance: float = 0.02, decode: bool = True,
                 progress: bool = False) -> tuple[AnnotationSet, list[Problem]]:
    """Match every annotated video to its file in ``videos_dir`` and check the two agree.

    Errors (the video is left out of the returned set): no file found, a file that cannot be probed, a file whose
    frames stop before its duration by more than max(0.5 s, 3 frames) (truncated or corrupt; ``decode``: decode
    every file to the end, without converting frames, to find out), an annotated duration that differs from the
    file's by more than max(``duration_tolerance_sec``, ``relative_tolerance`` × duration). A decoding failure
    closer to the end than that is a warning. Videos without a duration or fps get the file's; their segments are
    then checked against that duration (clipped with a warning, or left out with an error). The class list is
    kept. ``progress``: a bar on stderr when it is a terminal. Raises FileNotFoundError when ``videos_dir`` is not a
    directory.
    """
    files = find_video_files(videos_dir)
    kept: list[VideoAnnotation] = []
    problems: list[Problem] = []
    videos = list(annotations)
    if progress:
        from tqdm import tqdm

        videos = tqdm(videos, desc="decode" if decode else "probe", unit="video", disable=None)  # None: on a tty only
    for video in videos:
        path = files.get(video.video_id)
        if path is None:
            problems.append(_error(str(videos_dir), video.video_id, f"no video file found in {videos_dir}"))
            continue
        checked, found = _check_one_video(video, path, source=annotations.source,
                                          duration_tolerance_sec=duration_tolerance_sec,
                                          relative_tolerance=relative_tolerance, decode=decode)
        problems.extend(found)
        if checked is not None:
            kept.append(checked)
    result = AnnotationSet(videos={v.video_id: v for v in kept}, classes=annotations.classes,
                           source=annotations.source)
    return result, problems
