"""Video ids as file names: one rule (lofi.io.safe_file_stem), injective, never outside its folder, used by the
feature files, the frame cache and the timeline plots; features written under the old names still read back."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from _videos import write_video

from lofi.config import load_config
from lofi.data.annotations import AnnotationSet, VideoAnnotation
from lofi.data.features import FeatureDataset, feature_path, find_feature_file, read_features, write_features
from lofi.data.frame_cache import FrameCache
from lofi.infer.extract import extract_features
from lofi.io import MAX_STEM_CHARS, safe_file_stem, stems_clash
from lofi.runtime.context import make_context

TRICKY_IDS = ("a b", "a_b", "a/b", "a\\b", "..", ".", "../../x", "x/../../../NAME", "/etc/passwd", "été", "日本",
              ".hidden", "", "v" * 400, "v" * MAX_STEM_CHARS, "v" * (MAX_STEM_CHARS + 1), "CON", "nul.txt", "a~b",
              "a\x00b", "tab\there", "-1IBHYS3L-Y", "video_validation_0000051", "A", "a")


@pytest.mark.parametrize("video_id", ["-1IBHYS3L-Y", "video_validation_0000051", "v_abc.v2", "A", "a_b",
                                      "v" * MAX_STEM_CHARS])
def test_plain_ids_are_kept_as_they_are(video_id: str) -> None:
    assert safe_file_stem(video_id) == video_id


@pytest.mark.parametrize("video_id", ["a b", "a/b", "../../x", "été", "日本", ".hidden", "", "v" * 400, "CON",
                                      "nul.txt", "a~b"])
def test_other_ids_are_sanitised_and_hashed(video_id: str) -> None:
    stem = safe_file_stem(video_id)
    assert re.fullmatch(r"[A-Za-z0-9._-]+~[0-9a-f]{16}", stem), stem
    assert not stem.startswith(".") and len(stem) <= MAX_STEM_CHARS
    assert safe_file_stem(video_id) == stem  # deterministic


def test_distinct_ids_get_distinct_names_inside_the_folder(tmp_path: Path) -> None:
    stems = [safe_file_stem(video_id) for video_id in TRICKY_IDS]
    assert len(set(stems)) == len(TRICKY_IDS)
    assert safe_file_stem("a b").startswith("a_b~") and safe_file_stem("a_b") == "a_b"
    assert safe_file_stem("a/b").startswith("a_b~") and safe_file_stem("a/b") != safe_file_stem("a b")
    folder = tmp_path / "features"
    folder.mkdir()
    for video_id in TRICKY_IDS:
        path = feature_path(folder, video_id)
        assert path.resolve().parent == folder.resolve(), video_id
        path.write_bytes(video_id.encode("utf-8"))  # creatable: no separator, no NUL, not too long
    (folder / "probe").write_bytes(b"")
    case_insensitive = (folder / "PROBE").exists()  # then "A" and "a" share one file (see test_case_clashes...)
    assert len(list(folder.iterdir())) == len(TRICKY_IDS) + 1 - case_insensitive
    assert sorted(p.name for p in tmp_path.iterdir()) == ["features"]  # nothing written beside the folder


def test_case_clashes_are_named() -> None:
    assert stems_clash("A", "a") and stems_clash("Video_1", "video_1")
    assert not stems_clash("a", "a") and not stems_clash("a b", "a_b") and not stems_clash("ab", "a b")


def _clip_annotations(ids: tuple[str, ...]) -> dict:
    return {"version": "1.3", "taxonomy": [], "database": {
        vid: {"subset": "training", "duration": 2.0, "annotations": [{"segment": [0.5, 1.5], "label": "wave"}]}
        for vid in ids}}


def test_extracted_features_of_ids_that_sanitise_alike(tmp_path: Path) -> None:
    """Three real videos whose ids the old rule turned into one name (a_b): three feature files, three cache
    entries, each holding its own video."""
    torch.set_num_threads(1)
    ids = ("a b", "a_b", "a%b")
    for i, vid in enumerate(ids):
        write_video(tmp_path / "videos" / f"{vid}.mp4", duration_sec=2.0 + 0.5 * i, fps=10)
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(_clip_annotations(ids)))
    config = load_config("synthetic", [
        f"data.annotations={gt}", f"data.videos={tmp_path / 'videos'}", f"data.cache_dir={tmp_path / 'cache'}",
        f"out_dir={tmp_path / 'runs'}", "name=names", "device=cpu", "fidelity.num_snippets=4",
        "fidelity.frame_size_px=32", "data.frames_per_snippet=1", "model.encoder=tsm_resnet18"])
    context = make_context(config, progress=False)
    out = extract_features(context, encoder_weights=None, features_dir=tmp_path / "features")
    files = sorted(out.glob("*.pt"))
    assert len(files) == 3
    stored = {torch.load(f, weights_only=True)["video_id"]: f for f in files}
    assert set(stored) == set(ids) and all(stored[vid] == feature_path(out, vid) for vid in ids)
    durations = {vid: read_features(stored[vid])[1]["duration_sec"] for vid in ids}
    assert durations == pytest.approx({"a b": 2.0, "a_b": 2.5, "a%b": 3.0})  # each file is its own video's
    dataset = FeatureDataset(features_dir=out, annotations=context.annotations, classes=context.classes)
    assert [dataset[i]["video_id"] for i in range(3)] == list(context.annotations.videos)
    cache_files = sorted(p.name for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert len([n for n in cache_files if n.endswith(".npy")]) == 3, cache_files


def _annotations(*ids: str) -> AnnotationSet:
    return AnnotationSet.from_videos([VideoAnnotation(vid, "training", (), duration_sec=4.0) for vid in ids],
                                     classes=("run",))


def test_features_named_by_an_older_lofi_still_read(tmp_path: Path) -> None:
    """The old rule named ``a b`` and ``a_b`` both ``a_b.pt``: a legacy file is used for the id it holds only."""
    write_features(tmp_path / "a_b.pt", torch.ones(3, 2), video_id="a b", meta={})  # written by lofi <= 0.1.0.dev0
    write_features(tmp_path / "x_y.pt", torch.ones(3, 2), video_id="x y", meta={})
    assert find_feature_file(tmp_path, "a b") == tmp_path / "a_b.pt"
    assert find_feature_file(tmp_path, "a/b") is None  # its old name a_b.pt holds 'a b'
    dataset = FeatureDataset(features_dir=tmp_path, annotations=_annotations("a b", "x y"), classes=("run",))
    assert [dataset[i]["video_id"] for i in range(2)] == ["a b", "x y"]
    with pytest.raises(FileNotFoundError) as raised:
        FeatureDataset(features_dir=tmp_path, annotations=_annotations("a b", "a/b", "c d"), classes=("run",))
    message = str(raised.value)
    assert message.startswith(f"{tmp_path}: no feature file for 2 of 3 videos")  # the files expected are named:
    assert f"'a/b' ({feature_path(tmp_path, 'a/b').name}), 'c d' ({feature_path(tmp_path, 'c d').name})" in message
    # a_b.pt is also the new name of 'a_b': found, and refused when read, as it holds another video
    dataset = FeatureDataset(features_dir=tmp_path, annotations=_annotations("a b", "a_b"), classes=("run",))
    with pytest.raises(ValueError, match=r"a_b\.pt: holds features of video 'a b', expected 'a_b'"):
        dataset.verify()
    # a new file wins over a legacy one
    write_features(feature_path(tmp_path, "a b"), torch.zeros(3, 2), video_id="a b", meta={})
    assert find_feature_file(tmp_path, "a b") == feature_path(tmp_path, "a b") != tmp_path / "a_b.pt"


def test_writing_over_the_features_of_a_clashing_id_is_refused(tmp_path: Path) -> None:
    """What a case-insensitive file system does to ``A`` then ``a``, made here on any file system: the file
    named for ``a`` already holds ``A``'s features."""
    write_features(tmp_path / "a.pt", torch.ones(3, 2), video_id="A", meta={})
    with pytest.raises(ValueError, match=r"a\.pt: holds the features of video 'A', and 'a' maps to the same file"):
        write_features(feature_path(tmp_path, "a"), torch.zeros(3, 2), video_id="a", meta={})
    write_features(tmp_path / "a_b.pt", torch.ones(3, 2), video_id="a b", meta={})  # a legacy file: replaced
    write_features(feature_path(tmp_path, "a_b"), torch.zeros(3, 2), video_id="a_b", meta={})
    assert torch.load(tmp_path / "a_b.pt", weights_only=True)["video_id"] == "a_b"


def test_frame_cache_entries_of_tricky_ids(tmp_path: Path) -> None:
    video = write_video(tmp_path / "clip.mp4", duration_sec=2.0, fps=10)
    cache = FrameCache(tmp_path / "cache", num_snippets=2, frames_per_snippet=1, short_side_px=16)
    for vid in ("a b", "a_b", "../../escape", ".hidden"):
        frames_path, meta_path = cache.entry_paths(vid)
        assert frames_path.resolve().parent == meta_path.resolve().parent == (tmp_path / "cache").resolve()
        assert cache.load(video, vid).from_cache is False
        assert json.loads(meta_path.read_text())["video_id"] == vid
    assert cache.load(video, "a b").from_cache and cache.num_decoded == 4
    assert len(list((tmp_path / "cache").iterdir())) == 8 and not (tmp_path / "escape.npy").exists()
    # an entry holding another id (a case clash, faked) is not used, and not overwritten for the clashing id
    frames_path, meta_path = cache.entry_paths("v")
    cache.load(video, "V")
    cache.entry_paths("V")[1].rename(meta_path)
    cache.entry_paths("V")[0].rename(frames_path)
    with pytest.raises(ValueError, match="frame cache entry of video 'V', and 'v' maps to the same file"):
        cache.load(video, "v")
