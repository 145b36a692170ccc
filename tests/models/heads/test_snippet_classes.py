"""Per-proposal classes for G-TAD and BMN: per-snippet class targets and loss, pooling over proposals, labelled
decoding, best-match map positives, and raw predictions that replay with their labels."""

from __future__ import annotations

import pytest
import torch

from lofi.core.proposal_grid import start_end_segments, start_end_valid_mask
from lofi.core.targets import SegmentTargets
from lofi.models.heads.bmn import BMNHead
from lofi.models.heads.gtad import GTADHead
from lofi.models.heads.proposal_maps import best_matches, proposal_targets
from lofi.models.heads.snippet_classifier import (
    SnippetClassifier,
    snippet_class_targets,
    snippet_classification_loss,
)
from lofi.infer.predict import RawPredictions, collect_candidates, finish_predictions
from lofi.postprocess import PostprocessConfig
from lofi.postprocess.decoders.gtad import decode_start_end, proposal_class_scores

SMALL = dict(hidden_dim=16, class_hidden_dim=8)


def test_snippet_targets_are_the_class_coverage_of_each_snippet():
    targets = SegmentTargets(segments=[torch.tensor([[0.125, 0.375], [0.3, 0.5], [0.9, 1.5]]), torch.zeros(0, 2)],
                             labels=[torch.tensor([0, 0, 2]), torch.zeros(0, dtype=torch.long)])
    out = snippet_class_targets(targets, 3, 4)  # snippets of 0.25
    assert out.shape == (2, 3, 4)
    assert out[0, 0].tolist() == pytest.approx([0.5, 1.0, 0.0, 0.0])  # overlapping segments of one class: <= 1
    assert out[0, 1].tolist() == [0.0] * 4
    assert out[0, 2].tolist() == pytest.approx([0.0, 0.0, 0.0, 0.4])  # clipped to the window
    assert (out[1] == 0).all()
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        snippet_class_targets(SegmentTargets(segments=[torch.tensor([[0.1, 0.2]])], labels=[torch.tensor([3])]), 3, 4)


def test_snippet_loss_is_low_for_the_targets_own_logits_and_trains_the_branch():
    targets = SegmentTargets(segments=[torch.tensor([[0.0, 0.5]])], labels=[torch.tensor([1])])
    good = torch.logit(snippet_class_targets(targets, 2, 4).clamp(1e-4, 1 - 1e-4))  # [1, 2, 4]
    assert snippet_classification_loss(good, targets) < 0.01 < snippet_classification_loss(-good, targets)
    torch.manual_seed(0)
    branch = SnippetClassifier(in_dim=4, num_classes=2, hidden_dim=8, prior_prob=0.1)
    assert torch.sigmoid(branch.net[-1].bias).tolist() == pytest.approx([0.1, 0.1])
    logits = branch(torch.randn(1, 4, 4))
    assert logits.shape == (1, 2, 4)
    snippet_classification_loss(logits, targets).backward()
    assert all(p.grad is not None for p in branch.parameters())


def test_proposal_class_scores_are_means_over_the_cells_snippets():
    probs = torch.tensor([[[1.0, 0.0, 0.5, 1.0], [0.0, 1.0, 0.5, 0.0]]])  # [1, C=2, T=4]
    pooled = proposal_class_scores(probs)  # [1, T, T, C]
    assert pooled.shape == (1, 4, 4, 2)
    assert pooled[0, 0, 0].tolist() == [1.0, 0.0]
    assert pooled[0, 0, 1].tolist() == pytest.approx([0.5, 0.5])
    assert pooled[0, 1, 3].tolist() == pytest.approx([0.5, 0.5])
    assert pooled[0, 0, 3].tolist() == pytest.approx([2.5 / 4, 1.5 / 4])
    assert (pooled[0, 2, 1] == 0).all()  # te < ts: not a cell


def test_labelled_decoding_gives_each_instance_its_own_class():
    # two instances of different classes in one window: each proposal is labelled by what lies inside it
    t = 8
    targets = SegmentTargets(segments=[torch.tensor([[0.125, 0.375], [0.625, 0.875]])], labels=[torch.tensor([2, 0])])
    maps = proposal_targets(targets, candidates=start_end_segments(t), num_snippets=t)
    valid = start_end_valid_mask(t)
    conf = torch.stack([maps.iou, maps.iou], dim=1) * valid  # [1, 2, T, T]
    class_probs = snippet_class_targets(targets, 3, t)  # [1, 3, T]
    cand = decode_start_end(maps.start, maps.end, conf, valid=valid, top_k=10, class_probs=class_probs)[0]
    assert cand.labels is not None and len(cand) == 10
    first_two = {(tuple(round(x, 3) for x in s.tolist()), int(c)) for s, c in zip(cand.segments[:2], cand.labels[:2])}
    assert first_two == {((0.125, 0.375), 2), ((0.625, 0.875), 0)}
    assert (cand.scores[:-1] >= cand.scores[1:]).all()
    # without class scores the same outputs decode to class-agnostic proposals
    assert decode_start_end(maps.start, maps.end, conf, valid=valid, top_k=10)[0].labels is None


def test_best_matches_mark_each_segments_best_valid_cell():
    t = 4
    candidates = start_end_segments(t)  # [T, T, 2]
    valid = start_end_valid_mask(t, max_duration=2)
    segments = torch.tensor([[0.3, 0.45], [0.0, 1.0]])  # inside snippet 1; the whole window (no valid cell > 2)
    best = best_matches(candidates, segments, valid)
    assert best.shape == (t, t)
    # snippet 1 alone for the first; for the second every valid 2-snippet cell ties at IoU 0.5
    assert best.nonzero().tolist() == [[0, 1], [1, 1], [1, 2], [2, 3]]
    assert not best_matches(candidates, torch.zeros(0, 2), valid).any()
    maps = proposal_targets(SegmentTargets(segments=[segments], labels=[torch.tensor([0, 1])]),
                            candidates=candidates, num_snippets=t, valid=valid)
    assert torch.equal(maps.best[0], best)
    assert maps.iou[0][valid].max() < 0.9  # no valid cell above positive_iou, yet each segment has a positive


@pytest.mark.parametrize("cls", [GTADHead, BMNHead])
def test_the_video_option_keeps_class_agnostic_proposals(cls):
    torch.manual_seed(0)
    options = dict(SMALL, stem_groups=1) if cls is GTADHead else dict(SMALL, groups=1)
    snippet = cls(in_dim=6, num_classes=3, num_snippets=8, **options)
    video = cls(in_dim=6, num_classes=3, num_snippets=8, proposal_labels="video", video_hidden_dim=8, **options)
    assert hasattr(snippet, "snippet_classifier") and not hasattr(snippet, "video_classifier")
    assert hasattr(video, "video_classifier") and not hasattr(video, "snippet_classifier")
    with pytest.raises(ValueError, match="proposal_labels must be one of snippet, video"):
        cls(in_dim=6, num_classes=3, num_snippets=8, proposal_labels="window", **options)


@pytest.mark.parametrize("proposal_labels", ["snippet", "video"])
def test_raw_predictions_replay_with_or_without_video_scores(proposal_labels):
    torch.manual_seed(0)
    head = GTADHead(in_dim=6, num_classes=3, num_snippets=8, stem_groups=1, proposal_labels=proposal_labels,
                    video_hidden_dim=8, **SMALL).eval()
    with torch.no_grad():
        outputs = head(torch.randn(2, 6, 8))
    raw = RawPredictions()
    collect_candidates(outputs, video_ids=["a", "b"], durations_sec=[10.0, 20.0], classes=["x", "y", "z"],
                       into=raw, top_k=20)
    assert raw.class_agnostic == (proposal_labels == "video") and bool(raw.video_scores) == raw.class_agnostic
    labels = {d.label for dets in raw.detections.values() for d in dets}
    assert labels == {"proposal"} if raw.class_agnostic else labels <= {"x", "y", "z"}
    detections = finish_predictions(raw, PostprocessConfig(max_detections=5))
    assert set(detections) == {"a", "b"} and all(0 < len(d) <= 5 for d in detections.values())
    assert all(d.label in {"x", "y", "z"} for dets in detections.values() for d in dets)
