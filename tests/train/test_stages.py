"""The three LoFi stages on tiny real synthetic videos: real optimisation steps, losses go down, the encoder changes
in stage 2 and not in stage 3, and the run directory holds what a researcher looks for."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from lofi.config import load_config
from lofi.data.features import read_features
from lofi.infer.extract import extract_features
from lofi.models.options import encoder_kwargs
from lofi.models.registry import create_encoder
from lofi.runtime.context import make_context
from lofi.runtime.run_identity import stage_identity
from lofi.train.checkpoint import load_checkpoint
from lofi.train.head_stage import run_head_stage
from lofi.train.lofi_stage import run_lofi
from lofi.train.pretrain import run_pretrain

from _tiny import write_tiny_synthetic

TINY_MODEL = ("model.head_options={hidden_dim: 32, align_dim: 32, map_dim: 16, num_samples: 4, "
              "video_hidden_dim: 32, groups: 4, width_per_group: 2, stem_groups: 2}")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return write_tiny_synthetic(tmp_path_factory.mktemp("synth"))


def _config(dataset: Path, run_root: Path, *extra: str):
    return load_config("synthetic", _overrides(dataset, run_root, *extra))


def _overrides(dataset: Path, run_root: Path, *extra: str) -> list[str]:
    return [
        f"data.annotations={dataset / 'annotations.json'}", f"data.videos={dataset / 'videos'}",
        f"data.cache_dir={run_root / 'cache'}", f"out_dir={run_root}", "name=tiny", "device=cpu",
        "fidelity.num_snippets=12", "fidelity.frame_size_px=48", "fidelity.mode=C-short", "fidelity.cycle_steps=1",
        "pretrain.num_snippets=2", "pretrain.frame_size_px=48", "data.frames_per_snippet=2", "data.frame_stride=1",
        "pretrain.clip_sec=null", "pretrain.clips_per_range=1", "pretrain.crop_scale_min=1.0",
        "pretrain.color_jitter=0.0", "pretrain.channel_shuffle=false", "model.encoder=tsm_resnet18", "model.head=gtad",
        TINY_MODEL,
        "pretrain.optim={optimizer: adamw, lr: 0.001, epochs: 4, batch_size: 4, weight_decay: 0.0}",
        "train.optim={optimizer: adamw, lr: 0.0005, epochs: 3, batch_size: 2, weight_decay: 0.0}",
        "head.optim={optimizer: adamw, lr: 0.003, epochs: 8, batch_size: 2, weight_decay: 0.0}", *extra]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _epoch_losses(stage_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (stage_dir / "metrics.jsonl").read_text().splitlines()]
    return [row["train_loss"] for row in rows if row.get("kind") == "epoch"]


def test_three_stages_end_to_end(dataset, tmp_path):
    torch.set_num_threads(1)
    context = make_context(_config(dataset, tmp_path), progress=False)
    assert not context.run_dir.exists()  # nothing is written before a stage starts for real

    stage1 = run_pretrain(context)
    for name in ("config.yaml", "identity.json", "encoder.pt"):  # the config beside the outputs it made
        assert (stage1.parent / name).is_file(), name
    losses = _epoch_losses(stage1.parent)
    assert len(losses) == 4 and losses[-1] < losses[0]

    stage2 = run_lofi(context, encoder_weights=stage1)
    before, after = torch.load(stage1, weights_only=True), torch.load(stage2, weights_only=True)
    changed = [k for k in before if before[k].is_floating_point() and not torch.equal(before[k], after[k])]
    assert any(k.startswith("layer4.") for k in changed) and any(k.startswith("conv1.") for k in changed)
    fidelities = {json.loads(line).get("num_snippets") for line in (stage2.parent / "metrics.jsonl").read_text()
                  .splitlines() if json.loads(line).get("kind") == "step"}
    assert fidelities - {None} <= {12.0, 3.0, 6.0}  # C-short over S (12), T (3), ST (6) snippets

    stage2_sha = _sha256(stage2)
    features = extract_features(context, encoder_weights=stage2, features_dir=tmp_path / "features")
    files = sorted(features.glob("*.pt"))
    assert len(files) == len(context.annotations) and (features / "identity.json").is_file()
    feats, meta = read_features(files[0])
    assert feats.shape == (512, 12) and meta["num_snippets"] == 12 and meta["encoder_weights"] == str(stage2)
    assert all(read_features(f)[1]["encoder_weights_sha256"] == stage2_sha[:16] for f in files)  # that file
    features_sha = {f.name: _sha256(f) for f in files}

    stage3 = run_head_stage(context, features_dir=features, out_dir=tmp_path / "head")
    head_losses = _epoch_losses(tmp_path / "head")
    assert head_losses[-1] < head_losses[0]
    for name in ("raw_predictions.json", "predictions.json", "metrics.json", "head.pt"):
        assert (tmp_path / "head" / name).is_file(), name
    # G-TAD labels each proposal from its per-snippet class scores: labelled raw candidates, no video scores
    assert not (tmp_path / "head" / "video_scores.json").exists()
    raw = json.loads((tmp_path / "head" / "raw_predictions.json").read_text())["results"]
    assert {d["label"] for dets in raw.values() for d in dets} <= set(context.classes)
    metrics = json.loads((tmp_path / "head" / "metrics.json").read_text())
    assert 0.0 <= metrics["average_mAP"] <= 1.0 and metrics["average_mAP"] == pytest.approx(stage3.result.average_mAP)
    assert (tmp_path / "head" / "plots" / "map_vs_tiou.png").is_file()
    # The encoder is frozen in stage 3: the head trains on fixed features of the stage-2 encoder and never
    # updates the encoder. (1) The head stage optimised the head's parameters only: its optimiser holds fewer
    # values than head.pt (the head's parameters and buffers), far fewer than the encoder has, and the head's
    # weights share no name with the encoder's.
    head_state = torch.load(tmp_path / "head" / "head.pt", weights_only=True)
    assert not set(head_state) & set(after)
    optimizer = load_checkpoint(tmp_path / "head" / "latest.pt")["optimizer"]
    optimised = sum(s["exp_avg"].numel() for s in optimizer["state"].values())
    assert 0 < optimised <= sum(t.numel() for t in head_state.values()) < sum(t.numel() for t in after.values())
    assert sum(len(g["params"]) for g in optimizer["param_groups"]) <= len(head_state)
    # (2) Stage 3 left the stage-2 weights and the features it trained on as they were ...
    assert _sha256(stage2) == stage2_sha
    assert {f.name: _sha256(f) for f in sorted(features.glob("*.pt"))} == features_sha
    # (3) ... and those features are what the saved stage-2 encoder gives: extracting again matches them.
    again = extract_features(context, encoder_weights=stage2, features_dir=tmp_path / "features_again")
    for f in files:
        assert torch.equal(read_features(again / f.name)[0], read_features(f)[0]), f.name


def test_a_stage_run_twice_gives_the_same_weights(dataset, tmp_path):
    torch.set_num_threads(1)
    weights = []
    for name in ("a", "b"):
        context = make_context(_config(dataset, tmp_path / name, "pretrain.optim.epochs=1"), progress=False)
        weights.append(torch.load(run_pretrain(context), weights_only=True))
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_a_rerun_reuses_finished_stages_and_refuses_changed_ones(dataset, tmp_path, capsys):
    """`lofi run` again with the head's lr changed: stages 1, 2 and extraction are reused (they say so), the head
    stage is refused with the key that changed; with stage 1's lr changed, stage 1 is refused before any work."""
    from lofi.train.pipeline import run_all
    from lofi.runtime.run_identity import RunMismatchError

    torch.set_num_threads(1)
    short = ("pretrain.optim.epochs=1", "train.optim.epochs=1", "head.optim.epochs=1")
    run_all(make_context(_config(dataset, tmp_path, *short), progress=False), baseline=False)
    run_dir = tmp_path / "tiny"
    encoder_sha = _sha256(run_dir / "stage1_pretrain" / "encoder.pt")
    metrics = (run_dir / "stage3_head_lofi" / "metrics.json").read_text()
    capsys.readouterr()

    changed_head = make_context(_config(dataset, tmp_path, *short, "head.optim.lr=0.05"), progress=False)
    with pytest.raises(RunMismatchError, match=r"head\.optim\.lr: 0\.003 -> 0\.05"):
        run_all(changed_head, baseline=False)
    err = capsys.readouterr().err
    assert "stage1_pretrain: already trained" in err and "stage2_lofi: already trained" in err
    assert "features_lofi: features of these settings are there already" in err
    assert (run_dir / "stage3_head_lofi" / "metrics.json").read_text() == metrics

    changed_stage1 = make_context(_config(dataset, tmp_path, *short, "pretrain.optim.lr=0.5"), progress=False)
    with pytest.raises(RunMismatchError, match=r"pretrain\.optim\.lr: 0\.001 -> 0\.5"):
        run_all(changed_stage1, baseline=False)
    assert _sha256(run_dir / "stage1_pretrain" / "encoder.pt") == encoder_sha
    assert "lr: 0.001" in (run_dir / "stage1_pretrain" / "config.yaml").read_text()


def test_stage2_with_partial_backprop_trains_the_encoder_and_repeats(dataset, tmp_path):
    """train.partial_backprop: the encoder still learns (through a third of the snippets), a second run draws the
    same snippets and ends with the same weights, and the switch is part of stage 2's identity only when on."""
    torch.set_num_threads(1)
    partial = ("pretrain.enabled=false", "train.optim.epochs=1", "train.frozen_bn=true",
               "train.partial_backprop={share: 0.3, mode: chunks, chunk_snippets: 2}")
    weights = []
    for name in ("a", "b"):
        context = make_context(_config(dataset, tmp_path / name, *partial), progress=False)
        weights.append(torch.load(run_lofi(context, encoder_weights=None), weights_only=True))
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    model = context.config.model
    torch.manual_seed(context.config.seed)  # stage 2 builds its encoder first after seeding, as here
    start = create_encoder(model.encoder, **encoder_kwargs(model), frozen_bn=True).state_dict()
    assert any(not torch.equal(start[k], weights[0][k]) for k in start if start[k].is_floating_point())
    on = stage_identity("lofi", context.config).config
    off = stage_identity("lofi", _config(dataset, tmp_path / "c")).config
    assert on["train.partial_backprop.share"] == 0.3 and not any(k.startswith("train.partial") for k in off)


def test_stage2_fidelity_mode_auto_plans_trains_and_records_the_choice(dataset, tmp_path):
    """fidelity.mode=auto: stage 2 plans for fidelity.memory, trains with the recommendation, writes plan.json, and
    the choice is part of its identity; a smaller budget picks another configuration."""
    from lofi.train.plan import apply_plan, plan_for_run

    torch.set_num_threads(1)
    auto = ("pretrain.enabled=false", "train.optim.epochs=1", "fidelity.mode=auto", "fidelity.memory=1TB",
            "fidelity.memory_headroom=0", "model.encoder=tsm_resnet18_slim")  # the plan probes every lever combination: a small encoder keeps it quick
    large = _config(dataset, tmp_path / "large", *auto)
    plan = plan_for_run(large, batch_per_rank=2, device="cpu")
    assert (plan.recommendation.mode, plan.recommendation.levers.name) == ("full", "none")
    full_peaks = [c.peak_bytes for c in plan.candidates if c.fidelity.name == "full"]
    budget = f"{min(full_peaks) - 1}B"  # no full configuration fits: the cycle over the reduced fidelities
    context = make_context(_config(dataset, tmp_path / "small", *auto, f"fidelity.memory={budget}"), progress=False)
    encoder = run_lofi(context, encoder_weights=None)
    assert encoder.is_file()
    record = json.loads((encoder.parent / "plan.json").read_text())
    assert record["recommendation"]["mode"] == "C-long" and record["budget_bytes"] == min(full_peaks) - 1
    identity = json.loads((encoder.parent / "identity.json").read_text())["config"]
    assert identity["fidelity.mode"] == "C-long" and identity["fidelity.memory"] == budget
    levers = record["recommendation"]
    assert identity.get("model.encoder_options.checkpoint_stages", False) == levers["checkpoint_stages"]
    assert ("train.partial_backprop.share" in identity) == (levers["partial_share"] is not None)
    resolved = apply_plan(large, plan)
    assert resolved.fidelity.mode == "full" and resolved.train.partial_backprop is None


def test_lofi_plan_plans_for_a_run_config_and_writes_json(dataset, tmp_path, capsys):
    """``lofi plan CONFIG -o ...``: the run's encoder, head, fidelity and batch; the flags that the config holds
    are refused beside it. (After the auto-mode test, the probes of the same encoder are reused.)"""
    from lofi.cli import main

    torch.set_num_threads(1)
    overrides = _overrides(dataset, tmp_path, "model.encoder=tsm_resnet18_slim")
    argv = ["plan", "synthetic", *[x for o in overrides for x in ("-o", o)], "--memory", "1TB", "--threads", "1",
            "--output", str(tmp_path / "plans" / "plan.json")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "tsm_resnet18_slim + gtad, batch 2" in out and "recommended: fidelity.mode=full, levers none" in out
    record = json.loads((tmp_path / "plans" / "plan.json").read_text())
    assert record["encoder"] == "tsm_resnet18_slim" and record["batch_size"] == 2 and record["headroom"] == 0.1
    assert {(c["fidelity"], c["num_snippets"], c["frame_size_px"]) for c in record["candidates"]} == {
        ("full", 12, 48), ("S", 12, 24), ("T", 3, 48), ("ST", 6, 34)}
    assert main(argv[:-2] + ["--batch", "1", "--headroom", "0"]) == 0
    assert "batch 1" in capsys.readouterr().out
    assert main(argv + ["--encoder", "tsm_resnet34"]) == 2
    assert "--encoder: with a CONFIG the run's config holds these" in capsys.readouterr().err


def test_partial_backprop_warns_when_batchnorm_trains(caplog):
    from lofi.train.lofi_stage import warn_train_mode_batchnorm

    with caplog.at_level("WARNING", logger="lofi.train.lofi_stage"):
        assert warn_train_mode_batchnorm(create_encoder("tsm_resnet18_slim"), where="train.partial_backprop")
    assert "BatchNorm layers in train mode" in caplog.text and "train.frozen_bn=true" in caplog.text
    caplog.clear()
    frozen = create_encoder("tsm_resnet18_slim", frozen_bn=True).eval()
    with caplog.at_level("WARNING", logger="lofi.train.lofi_stage"):
        assert not warn_train_mode_batchnorm(frozen, where="train.partial_backprop")
    assert caplog.text == "" and not frozen.training  # its mode is left as it was
