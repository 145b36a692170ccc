"""metrics.jsonl / metrics.csv bookkeeping and the loss-curve PNG."""

from __future__ import annotations

import csv
import json
import struct
from pathlib import Path

import numpy as np
import torch

from lofi.train.records import MetricsLog, Progress, plot_curves, read_metrics


def test_csv_grows_columns_and_resume_truncates(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path)
    log.log({"kind": "step", "epoch": 0, "step": 1, "loss": torch.tensor(2.0)})
    log.log({"kind": "epoch", "epoch": 0, "step": 1, "train_loss": np.float32(1.5), "mAP": 0.25})
    log.log({"kind": "step", "epoch": 1, "step": 2, "loss": 1.0})
    log.close()
    with open(tmp_path / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["kind", "epoch", "step", "loss", "train_loss", "mAP"]
    assert [r["loss"] for r in rows] == ["2.0", "", "1.0"] and rows[1]["mAP"] == "0.25"
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"kind": "st')  # a line cut short by a kill
    assert len(read_metrics(tmp_path / "metrics.jsonl")) == 3

    resumed = MetricsLog(tmp_path, keep_records=2)  # the checkpoint had seen 2 records
    resumed.log({"kind": "step", "epoch": 1, "step": 2, "loss": 0.9})
    resumed.close()
    lines = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("loss") for r in lines] == [2.0, None, 0.9]
    assert len((tmp_path / "metrics.csv").read_text().splitlines()) == 4
    assert MetricsLog(tmp_path / "off", enabled=False).num_records == 0 and not (tmp_path / "off").exists()
    assert not Progress(total=3, enabled=True).shown  # stderr is not a terminal under pytest


def test_plot_curves_writes_a_png(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path)
    rng = np.random.default_rng(0)
    for step in range(1, 61):
        log.log({"kind": "step", "epoch": (step - 1) // 20, "step": step, "lr": 0.1 * 0.5 ** ((step - 1) // 20),
                 "loss": float(2.0 * np.exp(-step / 25) + 0.2 * rng.random())})
        if step % 20 == 0:
            log.log({"kind": "epoch", "epoch": step // 20 - 1, "step": step, "train_loss": 2.0 * np.exp(-step / 30),
                     "mAP": 0.1 * step / 20, "epoch_sec": 3.0})
    log.close()
    out = plot_curves(tmp_path / "metrics.jsonl", tmp_path / "plots" / "curves.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 600 and height > 900  # three panels: loss, learning rate, per-epoch metrics
