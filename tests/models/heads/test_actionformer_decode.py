"""Decoding ActionFormer outputs: units agree with the label assignment, a perfect output gives back its action."""

from __future__ import annotations

import pytest
import torch

from lofi.models.heads.actionformer import ActionFormerHead, assign_points
from lofi.postprocess.decoders.actionformer import decode_actionformer

C = 3


def _head(num_snippets: int, num_levels: int = 4) -> ActionFormerHead:
    return ActionFormerHead(in_dim=8, num_classes=C, num_snippets=num_snippets, num_levels=num_levels,
                            embed_dim=16, num_heads=2, window_size=3)


def _perfect_outputs(points: torch.Tensor, segments: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """What a perfectly trained head outputs for one window: confident on its positive points, exact offsets."""
    cls_t, reg_t = assign_points(points, segments, labels, num_classes=C)
    logits = torch.where(cls_t > 0, 8.0, -8.0)  # sigmoid: 0.9997 / 0.0003
    return {"cls_logits": logits[None], "offsets": reg_t[None], "points": points}


@pytest.mark.parametrize("num_snippets,segment", [(32, (0.25, 0.6)), (25, (0.1, 0.3)), (25, (0.0, 0.96)),
                                                  (16, (0.5, 0.75))])
def test_a_perfect_output_decodes_to_its_action_first(num_snippets, segment):
    points = _head(num_snippets).points(num_snippets)
    gt = torch.tensor([segment])
    outputs = _perfect_outputs(points, gt, torch.tensor([1]))
    (candidates,) = decode_actionformer(outputs)
    assert len(candidates) > 0 and candidates.labels[0] == 1
    assert (candidates.scores[:-1] >= candidates.scores[1:]).all()
    assert len(candidates) == int((outputs["cls_logits"] > 0).sum())  # background points fall under the threshold
    positives = torch.nonzero(outputs["cls_logits"][0].amax(1) > 0).flatten()
    max_stride = points[positives, 1].max()
    assert (candidates.segments - gt).abs().max() <= max_stride  # within one stride (exact here)
    torch.testing.assert_close(candidates.segments[0], gt[0])


def test_offsets_are_in_point_strides_and_centres_at_snippet_centres():
    num_snippets = 16
    head = _head(num_snippets, num_levels=2)
    points = head.points(num_snippets)  # 16 points of stride 1 then 8 of stride 2
    logits = torch.full((1, 24, C), -10.0)
    logits[0, 3, 0] = 5.0  # level 0, snippet 3: centre 3.5 / 16
    logits[0, 16 + 2, 2] = 4.0  # level 1, point 2: centre of snippet 4, 4.5 / 16, stride 2 / 16
    offsets = torch.zeros(1, 24, 2)
    offsets[0, 3] = torch.tensor([0.5, 0.5])  # exactly snippet 3
    offsets[0, 18] = torch.tensor([1.0, 3.0])  # [4.5 - 2, 4.5 + 6] snippets
    (candidates,) = decode_actionformer({"cls_logits": logits, "offsets": offsets, "points": points})
    assert candidates.labels.tolist() == [0, 2]
    torch.testing.assert_close(candidates.segments, torch.tensor([[3 / 16, 4 / 16], [2.5 / 16, 10.5 / 16]]))
    torch.testing.assert_close(candidates.scores, torch.tensor([5.0, 4.0]).sigmoid())


def test_threshold_top_k_clipping_and_min_length():
    torch.manual_seed(0)
    head = _head(25).eval()
    with torch.no_grad():
        outputs = head(torch.randn(2, 8, 25))
    outputs["offsets"] = outputs["offsets"] + 50.0  # every segment reaches past both ends of the window
    batch = decode_actionformer(outputs, score_threshold=0.0, top_k_per_window=7)
    assert len(batch) == 2 and all(len(c) == 7 for c in batch)
    for c in batch:
        assert c.segments.min() >= 0 and c.segments.max() <= 1
        assert (c.segments == torch.tensor([0.0, 1.0])).all()
    assert all(len(c) == 0 for c in decode_actionformer(outputs, score_threshold=0.0, min_length=1.0))
    assert all(len(c) == 0 for c in decode_actionformer(outputs, score_threshold=1.0))


def test_decoding_the_heads_own_outputs_on_a_batch():
    torch.manual_seed(0)
    head = _head(25)
    outputs = head(torch.randn(2, 8, 25))
    batch = decode_actionformer(outputs, score_threshold=0.005, top_k_per_window=50)
    assert len(batch) == 2
    for c in batch:
        assert 0 < len(c) <= 50 and c.labels is not None and c.labels.max() < C
        assert not c.segments.requires_grad and not c.scores.requires_grad
    with pytest.raises(ValueError, match="top_k_per_window"):
        decode_actionformer(outputs, top_k_per_window=0)
