"""Writing the synthetic dataset: real MP4 files, loadable annotations, determinism, the CLI."""

import json

import numpy as np
import pytest

from lofi.cli import main
from lofi.data.formats import load_annotations
from lofi.data.synthetic import SyntheticConfig, generate_dataset, plan_dataset
from lofi.data.synthetic.generate import render_video, to_annotations
from lofi.data.video import probe_video

TINY = dict(num_videos=2, num_classes=3, width_px=64, height_px=48, fps=10.0, video_duration_sec=(6.0, 8.0),
            gap_sec=(1.0, 2.0), middle_sec=(1.0, 3.0))


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    config = SyntheticConfig(seed=11, **TINY)
    return config, generate_dataset(tmp_path_factory.mktemp("synth"), config, workers=1, progress=False)


def test_videos_are_decodable_h264_with_the_planned_frames(tiny_dataset):
    config, dataset = tiny_dataset
    for plan in plan_dataset(config):
        info = probe_video(dataset.videos_dir / f"{plan.video_id}.mp4")
        assert info.codec == "h264"
        assert (info.width, info.height) == (64, 48)
        assert info.fps == pytest.approx(10.0)
        assert info.num_frames == plan.num_frames
        assert info.duration_sec == pytest.approx(plan.num_frames / 10.0, abs=0.11)
    assert dataset.num_frames == sum(p.num_frames for p in plan_dataset(config))
    assert dataset.frames_per_sec > 0


def test_annotations_file_loads_back_to_the_plan(tiny_dataset):
    config, dataset = tiny_dataset
    loaded = load_annotations(dataset.annotations_path)
    assert loaded.problems == []
    expected = to_annotations(plan_dataset(config), config)
    assert loaded.annotations.classes == expected.classes
    assert set(loaded.annotations.videos) == set(expected.videos)
    for vid, video in expected.videos.items():
        got = loaded.annotations[vid]
        assert got.subset == video.subset
        assert got.duration_sec == pytest.approx(video.duration_sec)
        assert [(s.start_sec, s.end_sec, s.label) for s in got.segments] == \
               [(s.start_sec, s.end_sec, s.label) for s in video.segments]


def test_metadata_holds_the_phases_and_the_config(tiny_dataset):
    config, dataset = tiny_dataset
    meta = json.loads(dataset.metadata_path.read_text())
    assert SyntheticConfig.from_dict(meta["config"]) == config
    assert set(meta["classes"]) == set(config.class_names)
    for plan in plan_dataset(config):
        instances = meta["videos"][plan.video_id]["instances"]
        assert [i["middle_start_frame"] for i in instances] == [i.middle_start_frame for i in plan.instances]
        for inst in instances:
            assert inst["start_sec"] <= inst["middle_sec"][0] < inst["middle_sec"][1] <= inst["end_sec"]


def test_same_seed_gives_byte_identical_files(tiny_dataset, tmp_path):
    config, dataset = tiny_dataset
    again = generate_dataset(tmp_path, config, workers=1, progress=False)
    assert again.annotations_path.read_bytes() == dataset.annotations_path.read_bytes()
    assert again.metadata_path.read_bytes() == dataset.metadata_path.read_bytes()
    for path in dataset.videos_dir.glob("*.mp4"):
        assert (again.videos_dir / path.name).read_bytes() == path.read_bytes()


def test_encoding_the_same_frames_repeatedly_gives_identical_bytes(tmp_path):
    # x264's AVX-512 macroblock-tree code made repeated encodes in one process differ (about half of them at
    # 320x240 on AVX-512 CPUs); write_mp4 turns mbtree off. Heap churn between encodes makes a difference likelier.
    from lofi.data.synthetic.generate import write_mp4

    config = SyntheticConfig(seed=3, **{**TINY, "width_px": 320, "height_px": 240, "video_duration_sec": (6.0, 6.0)})
    frames = list(render_video(plan_dataset(config)[0], config, 0))
    digests, churn = set(), []
    for i in range(12):
        path = tmp_path / f"{i}.mp4"
        write_mp4(path, iter(frames), fps=config.fps, width_px=320, height_px=240, crf=config.crf,
                  keyframe_interval_frames=20)
        digests.add(path.read_bytes())
        churn.append([bytearray(1000 + 997 * k) for k in range(40)])  # heap churn between encodes
    assert len(digests) == 1, f"{len(digests)} different encodings of the same frames"


def test_decoded_frames_match_the_rendered_ones(tiny_dataset):
    import av

    config, dataset = tiny_dataset
    plan = plan_dataset(config)[0]
    rendered = list(render_video(plan, config, 0))
    with av.open(str(dataset.videos_dir / f"{plan.video_id}.mp4")) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == len(rendered)
    error = np.mean([np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(decoded, rendered)])
    assert error < 4.0  # CRF 18 H.264 in 4:2:0: close, not lossless


def test_different_seeds_give_different_videos(tiny_dataset):
    config, _ = tiny_dataset
    other = SyntheticConfig(**{**TINY, "seed": 12})
    a = next(iter(render_video(plan_dataset(config)[0], config, 0)))
    b = next(iter(render_video(plan_dataset(other)[0], other, 0)))
    assert not np.array_equal(a, b)


def test_cli_synth_writes_a_dataset(tmp_path, capsys):
    out = tmp_path / "synth-out"
    code = main(["synth", str(out), "--videos", "2", "--classes", "2", "--seed", "0", "--width", "64",
                 "--height", "48", "--fps", "10", "--min-duration-sec", "6", "--max-duration-sec", "7",
                 "--workers", "1", "-q"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "frames/s" in printed and "training" in printed
    assert sorted(p.name for p in (out / "videos").iterdir()) == ["video_0000.mp4", "video_0001.mp4"]
    assert load_annotations(out / "annotations.json").problems == []


def test_cli_synth_rejects_bad_options(tmp_path, capsys):
    assert main(["synth", str(tmp_path), "--classes", "20", "-q"]) == 2
    assert "num_classes" in capsys.readouterr().err


def test_cli_demo_generates_checks_and_runs_the_three_stages(tmp_path, capsys):
    # the main command, shortened: 4 videos and one or two epochs per stage
    argv = ["demo", "--out", str(tmp_path / "demo"), "--videos", "4", "--classes", "2", "-q",
            "-o", "pretrain.optim.epochs=1", "-o", "train.optim.epochs=1", "-o", "head.optim.epochs=2",
            "-o", "pretrain.optim.warmup_epochs=0.5", "-o", "train.optim.warmup_epochs=0.5"]  # < epochs
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "no problems found" in out and "frames/s" in out
    assert "frozen stage-1 encoder" in out and "LoFi (C-long) encoder" in out and "average" in out
    data = tmp_path / "demo" / "synthetic"
    assert load_annotations(data / "annotations.json").annotations.classes == ("circle_ccw", "circle_cw")
    run = tmp_path / "demo" / "runs" / "synthetic"
    for name in ("stage1_pretrain/config.yaml", "stage3_head_lofi/identity.json", "comparison.json",
                 "comparison.png", "stage1_pretrain/encoder.pt", "stage1_pretrain/curves.png", "stage2_lofi/latest.pt", "stage2_lofi/metrics.jsonl",
                 "stage3_head_lofi/metrics.json", "stage3_head_frozen/predictions.json"):
        assert (run / name).is_file(), name


def test_cli_demo_data_only_generates_and_checks_and_trains_nothing(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--videos", "3", "--classes", "2", "--seed", "5", "-q", "--data-only"]) == 0
    assert "no problems found" in capsys.readouterr().out
    made = json.loads((out / "synthetic" / "synthetic.json").read_text())
    assert made["config"]["layout"] == "discrepancy" and made["config"]["seed"] == 5
    assert len(list((out / "synthetic" / "videos").glob("*.mp4"))) == 3
    assert not (out / "runs").exists()


def test_cli_demo_refuses_a_dataset_made_with_other_settings(tmp_path, capsys):
    data = tmp_path / "demo" / "synthetic"
    data.mkdir(parents=True)
    (data / "annotations.json").write_text("{}")
    (data / "synthetic.json").write_text(json.dumps({"generator_version": 1, "config": {"num_videos": 4}}))
    assert main(["demo", "--out", str(tmp_path / "demo"), "--videos", "4", "-q"]) == 2
    assert "other settings" in capsys.readouterr().err
