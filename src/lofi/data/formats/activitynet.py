"""ActivityNet-1.3 and HACS Segments JSON: reading ground truth, writing ground truth and detection results.

Layout::

    {"version": "VERSION 1.3", "taxonomy": [...],
     "database": {"<id>": {"subset": "training", "duration": 82.73, "resolution": "1280x720", "url": "...",
                           "annotations": [{"segment": [18.6, 24.8], "label": "Long jump"}]}}}

HACS Segments uses the same layout (``duration`` is often a numeric string). Numbers given as strings are
accepted. An optional ``fps`` per video is read and written, and so is ``ignore_regions`` (a list of
``[start, end]``), which the official evaluation code ignores.
"""

from __future__ import annotations

import codecs
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from lofi.data.annotations import AnnotationSet, Detection, Problem, VideoAnnotation
from lofi.data.detection_table import DetectionTable
from lofi.data.validation import (RawSegment, duplicate_id_problem, empty_dataset_problem, parse_number,
                                  validate_video)

#: What :func:`write_results` puts under ``external_data`` unless told otherwise.
DEFAULT_EXTERNAL_DATA: Mapping[str, Any] = {"used": False, "details": ""}


class _Object(dict):
    """A JSON object that remembers the keys the file gave more than once (json keeps only the last)."""

    duplicate_keys: tuple[str, ...] = ()


def _object_pairs(pairs: list[tuple[str, Any]]) -> _Object:
    obj = _Object(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        duplicates: dict[str, None] = {}
        for key, _ in pairs:
            if key in seen:
                duplicates[key] = None
            seen.add(key)
        obj.duplicate_keys = tuple(duplicates)
    return obj


def _read_text(path: Path) -> str:
    """The file as UTF-8 text, a byte-order mark dropped (``read_text("utf-8-sig")`` decodes ~20x slower)."""
    raw = path.read_bytes()
    return raw[len(codecs.BOM_UTF8):].decode("utf-8") if raw.startswith(codecs.BOM_UTF8) else raw.decode("utf-8")


def _load_json(path: Path) -> tuple[Any, list[Problem]]:
    try:
        text = _read_text(path)
    except UnicodeDecodeError as exc:
        return None, [Problem(source=str(path), message=f"not UTF-8 text ({exc.reason} at byte {exc.start})")]
    try:
        return json.loads(text, object_pairs_hook=_object_pairs), []
    except json.JSONDecodeError as exc:
        return None, [Problem(source=str(path),
                              message=f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})")]


def _optional_str(value: object) -> str | None:
    return None if value is None else str(value)


def _raw_segments(entry: Mapping[str, Any], *, source: str, video_id: str,
                  problems: list[Problem]) -> list[RawSegment] | None:
    """The raw segments of one database entry; None (with an error appended) when the list is malformed."""
    annotations = entry.get("annotations", [])
    if not isinstance(annotations, list):
        problems.append(Problem(source=source, video_id=video_id,
                                message=f"'annotations' must be a list, got {type(annotations).__name__}"))
        return None
    raws: list[RawSegment] = []
    for i, item in enumerate(annotations, start=1):
        where = f"annotation {i}"
        if not isinstance(item, dict):
            problems.append(Problem(source=source, video_id=video_id,
                                    message=f"{where}: expected an object with 'segment' and 'label', got {item!r}"))
            continue
        segment = item.get("segment")
        if not isinstance(segment, list) or len(segment) != 2:
            problems.append(Problem(source=source, video_id=video_id,
                                    message=f"{where}: 'segment' must be [start, end], got {segment!r}"))
            continue
        raws.append(RawSegment(segment[0], segment[1], item.get("label"), source, where))
    return raws


def _raw_regions(entry: Mapping[str, Any], *, source: str, video_id: str,
                 problems: list[Problem]) -> list[RawSegment]:
    regions = entry.get("ignore_regions", [])
    if not isinstance(regions, list):
        problems.append(Problem(source=source, video_id=video_id,
                                message=f"'ignore_regions' must be a list, got {type(regions).__name__}"))
        return []
    raws: list[RawSegment] = []
    for i, region in enumerate(regions, start=1):
        if not isinstance(region, list) or len(region) != 2:
            problems.append(Problem(source=source, video_id=video_id,
                                    message=f"ignore region {i}: expected [start, end], got {region!r}"))
            continue
        raws.append(RawSegment(region[0], region[1], "ignore", source, f"ignore region {i}"))
    return raws


def _read_entry(video_id: str, entry: object, *, source: str,
                as_annotated: bool) -> tuple[VideoAnnotation | None, list[Problem]]:
    if not isinstance(entry, dict):
        return None, [Problem(source=source, video_id=video_id,
                              message=f"expected an object with 'subset' and 'annotations', got {entry!r}")]
    problems: list[Problem] = []
    segments = _raw_segments(entry, source=source, video_id=video_id, problems=problems)
    regions = _raw_regions(entry, source=source, video_id=video_id, problems=problems)
    if segments is None:
        return None, problems
    video, found = validate_video(source=source, video_id=video_id, subset=entry.get("subset"),
                                  duration=entry.get("duration"), fps=entry.get("fps"), segments=segments,
                                  ignore_regions=regions, url=_optional_str(entry.get("url")),
                                  resolution=_optional_str(entry.get("resolution")), as_annotated=as_annotated)
    return video, problems + found


def _taxonomy_classes(data: Mapping[str, Any], *, source: str, problems: list[Problem]) -> set[str]:
    """The leaf node names of the taxonomy (nodes with a parent and no children); empty when there is none."""
    taxonomy = data.get("taxonomy", [])
    nodes = taxonomy if isinstance(taxonomy, list) else None
    if nodes is None or not all(isinstance(n, dict) and isinstance(n.get("nodeId"), (int, str))
                                and "nodeName" in n for n in nodes):
        problems.append(Problem(source=source, severity="warning",
                                message="'taxonomy' is not a list of {nodeId, nodeName, parentId} nodes; ignored"))
        return set()
    parents = {n.get("parentId") for n in nodes if isinstance(n.get("parentId"), (int, str))}
    return {str(n["nodeName"]) for n in nodes if n.get("parentId") is not None and n["nodeId"] not in parents}


def read_activitynet(path: str | os.PathLike, *, as_annotated: bool = False) -> tuple[AnnotationSet, list[Problem]]:
    """Read an ActivityNet-1.3 or HACS Segments JSON file (``as_annotated``: see
    :func:`lofi.data.validation.validate_segments`).

    Returns the valid part (invalid segments and videos left out; duplicate video ids leave out every copy) and
    every problem found; an empty ``database`` is an error. Classes are the sorted union of the kept segments'
    labels and the taxonomy's leaf nodes, so a class without segments (or whose videos were left out) keeps its
    place in the list.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: ActivityNet/HACS annotations are a JSON file, not a directory")
    source = str(path)
    data, problems = _load_json(path)
    if problems:
        return AnnotationSet.from_videos([], source=source), problems
    database = data.get("database") if isinstance(data, dict) else None
    if not isinstance(database, dict):
        problem = Problem(source=source, message="expected a JSON object with a 'database' object of videos")
        return AnnotationSet.from_videos([], source=source), [problem]
    if not database:
        return AnnotationSet.from_videos([], source=source), [empty_dataset_problem(source, "'database' is empty")]
    duplicates = set(getattr(database, "duplicate_keys", ()))
    videos: list[VideoAnnotation] = []
    for video_id, entry in database.items():
        if video_id in duplicates:
            problems.append(duplicate_id_problem(source=source, video_id=video_id,
                                                 detail="it appears more than once in 'database'"))
            continue
        video, found = _read_entry(video_id, entry, source=source, as_annotated=as_annotated)
        problems.extend(found)
        if video is not None:
            videos.append(video)
    classes = _taxonomy_classes(data, source=source, problems=problems)
    classes.update(s.label for v in videos for s in v.segments)
    return AnnotationSet.from_videos(videos, source=source, classes=classes), problems


def _video_entry(video: VideoAnnotation) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "subset": video.subset,
        "annotations": [{"segment": [float(s.start_sec), float(s.end_sec)], "label": s.label}
                        for s in video.segments],
    }
    if video.duration_sec is not None:
        entry["duration"] = float(video.duration_sec)
    if video.fps is not None:
        entry["fps"] = float(video.fps)
    if video.url is not None:
        entry["url"] = video.url
    if video.resolution is not None:
        entry["resolution"] = video.resolution
    if video.ignore_regions_sec:
        entry["ignore_regions"] = [[float(s), float(e)] for s, e in video.ignore_regions_sec]
    return entry


def _taxonomy(classes: Iterable[str]) -> list[dict[str, Any]]:
    root = {"nodeId": 0, "nodeName": "Root", "parentId": None, "parentName": None}
    leaves = [{"nodeId": i, "nodeName": label, "parentId": 0, "parentName": "Root"}
              for i, label in enumerate(classes, start=1)]
    return [root, *leaves]


def _dump(obj: Any, path: str | os.PathLike, *, sort_keys: bool = True) -> None:
    text = json.dumps(obj, indent=2, sort_keys=sort_keys, ensure_ascii=False, allow_nan=False)
    Path(path).write_text(text + "\n", encoding="utf-8", newline="\n")


def write_ground_truth(annotations: AnnotationSet, path: str | os.PathLike, *, version: str = "1.3") -> None:
    """Write ``annotations`` as ActivityNet-1.3 ground truth JSON.

    Deterministic: keys sorted, floats in their shortest exact form, so equal inputs give byte-identical files.
    The taxonomy lists the classes (used or not) as leaves of one root, so the class list survives a round trip;
    ``version`` is written as ``"VERSION <version>"``.
    """
    data = {
        "version": f"VERSION {version}",
        "taxonomy": _taxonomy(annotations.classes),
        "database": {video.video_id: _video_entry(video) for video in annotations},
    }
    _dump(data, path)


def write_results(detections_by_video: Mapping[str, Iterable[Detection]] | DetectionTable,
                  path: str | os.PathLike, *, version: str = "1.3",
                  external_data: Mapping[str, Any] | None = None) -> None:
    """Write detections in the ActivityNet results layout read by the official evaluation code.

    ``{"version": "VERSION 1.3", "results": {video: [{"label", "score", "segment": [s, e]}]},
    "external_data": {"used": false, "details": ""}}``; videos and detections keep their given order, which the
    official evaluator's ranking of tied scores depends on.
    """
    if isinstance(detections_by_video, DetectionTable):
        detections_by_video = detections_by_video.to_mapping()
    results = {
        str(video_id): [{"label": d.label, "score": float(d.score),
                         "segment": [float(d.start_sec), float(d.end_sec)]} for d in detections]
        for video_id, detections in detections_by_video.items()
    }
    data = {
        "version": f"VERSION {version}",
        "results": results,
        "external_data": dict(DEFAULT_EXTERNAL_DATA if external_data is None else external_data),
    }
    _dump(data, path, sort_keys=False)


def _results_entry(item: object, *, source: str, video_id: str, index: int) -> Detection:
    where = f"{source}: video {video_id!r}: result {index}"
    if not isinstance(item, dict):
        raise ValueError(f"{where}: expected an object with 'label', 'score' and 'segment', got {item!r}")
    segment = item.get("segment")
    if not isinstance(segment, list) or len(segment) != 2:
        raise ValueError(f"{where}: 'segment' must be [start, end], got {segment!r}")
    start, end, score = parse_number(segment[0]), parse_number(segment[1]), parse_number(item.get("score"))
    if start is None or end is None:
        raise ValueError(f"{where}: segment {segment!r} is not two numbers")
    if score is None:
        raise ValueError(f"{where}: score {item.get('score')!r} is not a number")
    if end < start:
        raise ValueError(f"{where}: segment end {end} < start {start}")
    label = item.get("label")
    if not isinstance(label, str) or not label:
        raise ValueError(f"{where}: 'label' must be a non-empty string, got {label!r}")
    return Detection(start_sec=start, end_sec=end, label=label, score=score)


def _results_object(path: Path) -> Mapping[str, Any]:
    """The ``results`` object of an ActivityNet results file; ValueError naming the file if there is none.

    Parsed without duplicate-key tracking (it costs half as much again on large files): as in the official
    evaluator, a video given twice keeps its last list.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        data = json.loads(_read_text(path))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, dict):
        raise ValueError(f"{path}: expected a JSON object with a 'results' object of videos")
    return results


def _results_list(items: object, *, source: str, video_id: str) -> list[Any]:
    if not isinstance(items, list):
        raise ValueError(f"{source}: video {video_id!r}: expected a list of results, got {type(items).__name__}")
    return items


def read_results(path: str | os.PathLike) -> dict[str, list[Detection]]:
    """Read an ActivityNet results file (``results.{video}[{label, score, segment}]``) as Detection lists.

    Numbers given as strings are accepted. A malformed file raises ``ValueError`` naming the file and the entry.
    :func:`read_results_table` reads the same files several times faster, into columns.
    """
    path = Path(path)
    source = str(path)
    return {video_id: [_results_entry(item, source=source, video_id=video_id, index=i)
                       for i, item in enumerate(_results_list(items, source=source, video_id=video_id), start=1)]
            for video_id, items in _results_object(path).items()}


_PLAIN_NUMBERS = frozenset((int, float))


def _video_columns(items: list[Any]) -> tuple[np.ndarray, np.ndarray, list[Any]] | None:
    """``(segments [n, 2], scores [n], labels)`` when every entry is well formed with plain JSON numbers;
    None otherwise (strings as numbers, or anything wrong), for the entry-by-entry path to read or report."""
    try:
        segments = [item["segment"] for item in items]
        scores = [item["score"] for item in items]
        labels = [item["label"] for item in items]
    except (TypeError, KeyError):
        return None
    if not (all(type(s) is list and len(s) == 2 for s in segments)
            and {type(x) for s in segments for x in s} <= _PLAIN_NUMBERS
            and set(map(type, scores)) <= _PLAIN_NUMBERS
            and all(type(x) is str and x for x in labels)):
        return None
    seg = np.array(segments, dtype=np.float64).reshape(-1, 2)  # [n, 2]
    score = np.array(scores, dtype=np.float64)  # [n]
    if not (np.isfinite(seg).all() and np.isfinite(score).all() and (seg[:, 1] >= seg[:, 0]).all()):
        return None
    return seg, score, labels


def read_results_table(path: str | os.PathLike) -> DetectionTable:
    """Read an ActivityNet results file into a :class:`DetectionTable` (rows in file order).

    Same acceptance and errors as :func:`read_results`: numbers given as strings are accepted, and a malformed
    file raises ``ValueError`` naming the file, the video and the entry.
    """
    path = Path(path)
    source = str(path)
    results = _results_object(path)
    video_ids = tuple(results)
    label_of: dict[str, int] = {}
    segments, scores, label_index, counts = [], [], [], []
    for video_id in video_ids:
        items = _results_list(results[video_id], source=source, video_id=video_id)
        columns = _video_columns(items)
        if columns is None:
            dets = [_results_entry(item, source=source, video_id=video_id, index=i)
                    for i, item in enumerate(items, start=1)]
            columns = (np.array([(d.start_sec, d.end_sec) for d in dets], dtype=np.float64).reshape(-1, 2),
                       np.array([d.score for d in dets], dtype=np.float64), [d.label for d in dets])
        seg, score, labels = columns
        segments.append(seg)
        scores.append(score)
        label_index.append(np.fromiter((label_of.setdefault(x, len(label_of)) for x in labels), dtype=np.int64,
                                       count=len(labels)))
        counts.append(len(labels))
    num_videos = len(video_ids)
    return DetectionTable(
        video_ids=video_ids, labels=tuple(label_of),
        video_index=np.repeat(np.arange(num_videos, dtype=np.int64), np.array(counts, dtype=np.int64)),
        label_index=np.concatenate(label_index) if label_index else np.zeros(0, dtype=np.int64),
        segments_sec=np.concatenate(segments) if segments else np.zeros((0, 2)),
        scores=np.concatenate(scores) if scores else np.zeros(0))


def read_video_scores(path: str | os.PathLike) -> dict[str, dict[str, float]]:
    """Read video-level class scores: an ActivityNet classification results file
    (``results.{video}[{label, score}]``) or ``{video: {label: score}}`` under ``results``.

    Numbers given as strings are accepted; a label given twice for a video keeps its highest score. A malformed
    file raises ``ValueError`` naming the file, the video and the entry.
    """
    path = Path(path)
    source = str(path)
    out: dict[str, dict[str, float]] = {}
    for video_id, items in _results_object(path).items():
        pairs = list(items.items()) if isinstance(items, dict) else None
        if pairs is None:
            pairs = []
            for i, item in enumerate(_results_list(items, source=source, video_id=video_id), start=1):
                if not isinstance(item, dict):
                    raise ValueError(f"{source}: video {video_id!r}: entry {i}: expected an object with 'label' and "
                                     f"'score', got {item!r}")
                pairs.append((item.get("label"), item.get("score")))
        scores: dict[str, float] = {}
        for i, (label, value) in enumerate(pairs, start=1):
            score = parse_number(value)
            if not isinstance(label, str) or not label:
                raise ValueError(f"{source}: video {video_id!r}: entry {i}: 'label' must be a non-empty string, "
                                 f"got {label!r}")
            if score is None:
                raise ValueError(f"{source}: video {video_id!r}: entry {i}: score {value!r} is not a number")
            scores[label] = max(score, scores.get(label, -math.inf))
        out[video_id] = scores
    return out
