"""Stage 2 with ``data.windows`` on tiny real synthetic videos: it trains on sliding windows of the videos (only
those holding an instance), at the schedule's fidelities, with the frame cache at the snippet rate, and writes the
tuned encoder."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from lofi.config import load_config
from lofi.data.synthetic import SyntheticConfig, generate_dataset
from lofi.runtime.context import make_context
from lofi.train.lofi_stage import fidelity_schedule, run_lofi, training_dataset

TINY_MODEL = ("model.head_options={hidden_dim: 16, align_dim: 16, map_dim: 8, num_samples: 4, "
              "video_hidden_dim: 16, groups: 4, width_per_group: 2, stem_groups: 2}")


def test_stage_2_trains_on_sliding_windows_and_writes_the_encoder(tmp_path: Path) -> None:
    torch.set_num_threads(2)
    generate_dataset(tmp_path / "synth", SyntheticConfig(
        num_videos=3, num_classes=2, seed=5, width_px=48, height_px=48, video_duration_sec=(9.0, 10.0),
        validation_fraction=0.34, middle_sec=(1.5, 2.5), gap_sec=(1.0, 2.0), num_distractors=(0, 1)),
        progress=False)
    root = tmp_path / "synth"
    config = load_config("synthetic", [
        f"data.annotations={root / 'annotations.json'}", f"data.videos={root / 'videos'}",
        f"data.cache_dir={tmp_path / 'cache'}", f"out_dir={tmp_path / 'runs'}", "name=windowed", "device=cpu",
        "fidelity.num_snippets=12", "fidelity.frame_size_px=32", "fidelity.mode=C-short", "fidelity.cycle_steps=1",
        "data.frames_per_snippet=1", "data.num_workers=0", "model.encoder=tsm_resnet18", "model.head=gtad",
        TINY_MODEL, "data.windows={snippets_per_sec: 2, stride_snippets: 6}",
        "train.optim={optimizer: adamw, lr: 0.0005, epochs: 1, batch_size: 2, weight_decay: 0.0}"])
    context = make_context(config, progress=False)
    dataset = training_dataset(context, fidelity_schedule(context).fidelities)
    assert len(dataset) > 2 and all(w.num_instances > 0 for w in dataset.windows)  # windows, not videos
    assert {w.video_index for w in dataset.windows} == set(range(len(dataset.video_ids)))
    encoder = run_lofi(context, encoder_weights=None)
    assert encoder == context.run_dir / "stage2_lofi" / "encoder.pt" and encoder.is_file()
    rows = [json.loads(line) for line in (encoder.parent / "metrics.jsonl").read_text().splitlines()]
    epoch = [row for row in rows if row.get("kind") == "epoch"][-1]
    assert epoch["step"] == math.ceil(len(dataset) / 2)  # one step per batch of 2 windows
    assert 3.0 <= epoch["train_num_snippets"] < 12.0  # C-short: lower fidelities of the same windows too
    entries = sorted((tmp_path / "cache").glob("*.json"))
    assert entries and all(json.loads(p.read_text())["snippets_per_sec"] == 2.0 for p in entries)
