"""The head ceiling: every registered head, trained by stage 3 (``run_head_stage``) on ideal features of a small
synthetic set (from its annotations), must detect nearly every instance: mAP@0.5 >= 0.95 on the validation subset.

The videos hold instances of several classes each, so a head that labels its proposals with the video's top classes
(G-TAD / BMN with ``proposal_labels="video"``) cannot pass. ``benchmarks/head_ceiling.py`` is the full-size run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lofi.config import load_config
from lofi.data.formats.activitynet import write_ground_truth
from lofi.data.ideal_features import write_ideal_features
from lofi.data.synthetic import SyntheticConfig
from lofi.data.synthetic.generate import plan_dataset, to_annotations
from lofi.models.registry import list_models
from lofi.runtime.context import make_context
from lofi.train.head_stage import run_head_stage

HEADS = [entry.name for entry in list_models("head")]
NUM_SNIPPETS = 32
#: Small widths, so that each head trains in seconds on one thread.
HEAD_OPTIONS = {
    "gtad": "{hidden_dim: 32, align_dim: 64, map_dim: 32, num_samples: 8, class_hidden_dim: 32, video_hidden_dim: 32}",
    "bmn": "{hidden_dim: 32, hidden_dim_3d: 64, hidden_dim_2d: 32, num_samples: 8, class_hidden_dim: 32, "
           "video_hidden_dim: 32}",
    "actionformer": "{embed_dim: 32, num_levels: 3}",
}


@pytest.fixture(scope="module")
def ideal_set(tmp_path_factory) -> tuple[Path, Path]:
    """24 annotation-only synthetic videos of 4 classes (16-24 s, 1-3 instances of up to 3 classes each), and
    their ideal features at 32 snippets."""
    root = tmp_path_factory.mktemp("ceiling")
    synth = SyntheticConfig(num_videos=24, num_classes=4, seed=5, width_px=96, height_px=96,
                            video_duration_sec=(16.0, 24.0), num_distractors=(1, 2))
    annotations = to_annotations(plan_dataset(synth), synth)
    assert max(len({s.label for s in v.segments}) for v in annotations) >= 2  # several classes in a video
    write_ground_truth(annotations, root / "annotations.json")
    features = write_ideal_features(annotations, root / "features", num_snippets=NUM_SNIPPETS, dim=16, seed=0)
    return root / "annotations.json", features


def _context(annotations: Path, run_root: Path, head: str, *extra: str):
    config = load_config("synthetic", [
        f"data.annotations={annotations}", f"data.videos={annotations.parent / 'videos'}", f"out_dir={run_root}",
        f"name={head}", "device=cpu", f"fidelity.num_snippets={NUM_SNIPPETS}", f"model.head={head}",
        f"model.head_options={HEAD_OPTIONS.get(head, '{}')}", "eval.tiou=0.5,0.75",
        "head.optim={optimizer: adamw, lr: 0.003, weight_decay: 0.0001, epochs: 20, batch_size: 4, "
        "lr_step_epochs: 15}", *extra])
    return make_context(config, progress=False)


@pytest.mark.parametrize("head", HEADS)
def test_every_head_reaches_the_ceiling_on_ideal_features(ideal_set, tmp_path, head):
    torch.set_num_threads(1)
    annotations, features = ideal_set
    context = _context(annotations, tmp_path, head)
    result = run_head_stage(context, features_dir=features, out_dir=tmp_path / "head", resume=False,
                            eval_every_epochs=10 ** 6).result
    assert float(result.mAP[0]) >= 0.95, f"{head}: mAP@0.5 {float(result.mAP[0]):.3f} on ideal features"
