"""ActionFormer head: shapes for any T, gradients to every parameter and to the features, label assignment by
hand, empty windows, and a loss that goes down."""

from __future__ import annotations

import math

import pytest
import torch

from lofi.core.targets import SegmentTargets
from lofi.models.heads.actionformer import ActionFormerHead, assign_points, default_regression_ranges
from lofi.models.heads.actionformer_blocks import TransformerBlock, local_attention

B, D, C = 2, 32, 3
SMALL = dict(embed_dim=32, num_heads=2, window_size=5)


def _targets() -> SegmentTargets:
    return SegmentTargets(segments=[torch.tensor([[0.1, 0.4], [0.5, 0.9]]), torch.tensor([[-0.2, 0.3]])],
                          labels=[torch.tensor([0, 2]), torch.tensor([1])])


def _empty_targets(batch: int = B) -> SegmentTargets:
    return SegmentTargets(segments=[torch.zeros(0, 2)] * batch, labels=[torch.zeros(0, dtype=torch.long)] * batch)


@pytest.mark.parametrize("num_snippets,num_levels", [(16, 1), (16, 4), (25, 3), (25, 4), (32, 5), (7, 4)])
def test_output_shapes_units_and_finiteness(num_snippets, num_levels):
    torch.manual_seed(0)
    head = ActionFormerHead(in_dim=D, num_classes=C, num_snippets=num_snippets, num_levels=num_levels, **SMALL)
    outputs = head(torch.randn(B, D, num_snippets))
    sizes = [math.ceil(num_snippets / 2 ** level) for level in range(num_levels)]
    num_points = sum(sizes)
    assert outputs["cls_logits"].shape == (B, num_points, C)
    assert outputs["offsets"].shape == (B, num_points, 2)
    assert outputs["points"].shape == (num_points, 4)
    assert all(torch.isfinite(v).all() for v in outputs.values())
    assert (outputs["offsets"] >= 0).all()
    centre, stride = outputs["points"][:, 0], outputs["points"][:, 1]
    expected_centre = torch.cat([(torch.arange(n) * 2 ** level + 0.5) / num_snippets for level, n in enumerate(sizes)])
    expected_stride = torch.cat([torch.full((n,), 2 ** level / num_snippets) for level, n in enumerate(sizes)])
    torch.testing.assert_close(centre, expected_centre)
    torch.testing.assert_close(stride, expected_stride)
    assert (centre > 0).all() and (centre < 1).all()  # every point lies inside the window
    # the prior-probability bias: every class starts at a score of about 0.01
    assert abs(outputs["cls_logits"].sigmoid().mean().item() - 0.01) < 0.01


def test_default_regression_ranges_follow_actionformer():
    assert default_regression_ranges(6) == [(0, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, math.inf)]
    assert default_regression_ranges(1) == [(0, math.inf)]


@pytest.mark.parametrize("targets", [_targets(), _empty_targets()], ids=["with_actions", "no_actions"])
def test_every_parameter_and_the_features_get_gradients(targets):
    torch.manual_seed(0)
    head = ActionFormerHead(in_dim=D, num_classes=C, num_snippets=25, **SMALL)
    features = torch.randn(B, D, 25, requires_grad=True)
    losses = head.loss(head(features), targets)
    assert set(losses) == {"loss", "cls_loss", "reg_loss", "num_positives"}
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    assert (losses["num_positives"] > 0) == (len(targets.segments[0]) > 0)
    losses["loss"].backward()
    missing = [n for n, p in head.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient for {missing[:5]}"
    assert features.grad is not None and features.grad.abs().sum() > 0  # the encoder is trained through the head


def test_empty_windows_give_a_pure_classification_loss():
    torch.manual_seed(0)
    head = ActionFormerHead(in_dim=D, num_classes=C, num_snippets=16, **SMALL)
    losses = head.loss(head(torch.randn(B, D, 16)), _empty_targets())
    assert losses["reg_loss"].item() == 0 and losses["num_positives"].item() == 0
    torch.testing.assert_close(losses["loss"], losses["cls_loss"])


def _points_16x3() -> torch.Tensor:
    """T = 16, 3 levels: strides 1, 2, 4 (16 + 8 + 4 points), ranges (0, 4), (4, 8), (8, inf) snippets."""
    head = ActionFormerHead(in_dim=D, num_classes=C, num_snippets=16, num_levels=3, **SMALL)
    return head.points(16)


def _positives(cls_t: torch.Tensor) -> dict[int, list[int]]:
    return {int(p): torch.nonzero(cls_t[p]).flatten().tolist() for p in torch.nonzero(cls_t.sum(1)).flatten()}


def test_label_assignment_short_segment_on_level_0():
    # segment [4, 8] snippets: centre region 6 +- 1.5 = (4.5, 7.5) on level 0 holds centres 5.5 and 6.5; on level 1
    # (centres 4.5, 6.5) and level 2 (centre 4.5) the larger distance, 3.5 or 2.5, is below the level's range.
    cls_t, reg_t = assign_points(_points_16x3(), torch.tensor([[4 / 16, 8 / 16]]), torch.tensor([1]), num_classes=C)
    assert _positives(cls_t) == {5: [1], 6: [1]}
    torch.testing.assert_close(reg_t[[5, 6]], torch.tensor([[1.5, 2.5], [2.5, 1.5]]))
    assert (reg_t[[p for p in range(28) if p not in (5, 6)]] == 0).all()


def test_label_assignment_long_segment_on_level_1_in_strides():
    # segment [2, 12]: level 0 (region (5.5, 8.5)) reaches 5.5 > 4; level 1 centres 4.5, 6.5, 8.5 (points 16 + 2,
    # 3, 4) reach 7.5, 5.5, 6.5 in [4, 8]; level 2 centres 4.5, 8.5 reach 7.5, 6.5 < 8. Targets in strides of 2.
    cls_t, reg_t = assign_points(_points_16x3(), torch.tensor([[2 / 16, 12 / 16]]), torch.tensor([0]),
                                 num_classes=C)
    assert _positives(cls_t) == {18: [0], 19: [0], 20: [0]}
    torch.testing.assert_close(reg_t[18:21], torch.tensor([[2.5, 7.5], [4.5, 5.5], [6.5, 3.5]]) / 2)


def test_label_assignment_ambiguity_goes_to_the_shortest_segment():
    # [4, 8] (class 0) and [3, 9] (class 2) both qualify at points 5 and 6: the shorter wins. [3, 9] alone
    # qualifies on level 1 at centres 4.5 and 8.5 (reach 4.5 and 5.5), not 6.5 (reach 3.5).
    segments = torch.tensor([[4 / 16, 8 / 16], [3 / 16, 9 / 16]])
    cls_t, reg_t = assign_points(_points_16x3(), segments, torch.tensor([0, 2]), num_classes=C)
    assert _positives(cls_t) == {5: [0], 6: [0], 18: [2], 20: [2]}
    torch.testing.assert_close(reg_t[[5, 18]], torch.tensor([[1.5, 2.5], [1.5 / 2, 4.5 / 2]]))


def test_label_assignment_without_centre_sampling_and_clipping():
    points = _points_16x3()
    cls_t, _ = assign_points(points, torch.tensor([[4 / 16, 8 / 16]]), torch.tensor([1]), num_classes=C,
                             center_sample_radius=0)
    assert sorted(_positives(cls_t)) == [4, 5, 6, 7]  # every level-0 centre inside the segment
    # a segment entirely outside the window is dropped; one crossing its start is clipped to [0, 3] snippets
    cls_t, reg_t = assign_points(points, torch.tensor([[1.2, 1.5], [-0.5, 3 / 16]]), torch.tensor([0, 1]),
                                 num_classes=C)
    assert _positives(cls_t) == {0: [1], 1: [1], 2: [1]}  # centre region 1.5 +- 1.5 holds centres 0.5, 1.5, 2.5
    torch.testing.assert_close(reg_t[:3], torch.tensor([[0.5, 2.5], [1.5, 1.5], [2.5, 0.5]]))


def test_local_attention_matches_dense_banded_attention():
    torch.manual_seed(0)
    for seq_len, window in [(1, 5), (3, 5), (10, 5), (13, 1), (9, 9)]:
        q, k, v = torch.randn(3, 2, 2, seq_len, 4).unbind(0)  # [B, H, T, d] each
        idx = torch.arange(seq_len)
        band = (idx[:, None] - idx[None, :]).abs() <= window // 2  # [T, T]
        scores = (q @ k.transpose(-1, -2) / 2.0).masked_fill(~band, float("-inf"))
        torch.testing.assert_close(local_attention(q, k, v, window_size=window), scores.softmax(-1) @ v)


@pytest.mark.parametrize("seq_len", [1, 2, 7, 16])
def test_strided_block_halves_any_length(seq_len):
    block = TransformerBlock(dim=8, num_heads=2, window_size=3, stride=2)
    assert block(torch.randn(2, 8, seq_len)).shape == (2, 8, math.ceil(seq_len / 2))


def test_bad_options_fail_early():
    with pytest.raises(ValueError, match="odd"):
        ActionFormerHead(in_dim=D, num_classes=C, num_snippets=16, window_size=4)
    with pytest.raises(ValueError, match="regression_ranges"):
        ActionFormerHead(in_dim=D, num_classes=C, num_snippets=16, num_levels=2, regression_ranges=[(0, 4)])
    with pytest.raises(ValueError, match="divisible"):
        ActionFormerHead(in_dim=D, num_classes=C, num_snippets=16, embed_dim=30, num_heads=4)
    with pytest.raises(TypeError):
        ActionFormerHead(in_dim=D, num_classes=C, num_snippets=16, windowsize=9)  # typos do not pass silently
    head = ActionFormerHead(in_dim=D, num_classes=C, num_snippets=16, **SMALL)
    with pytest.raises(ValueError, match=r"\[B, D, T\]"):
        head(torch.randn(D, 16))


def test_label_smoothing_changes_only_the_classification_targets():
    torch.manual_seed(0)
    head = ActionFormerHead(in_dim=D, num_classes=C, num_snippets=16, **SMALL)
    outputs = head(torch.randn(B, D, 16))
    plain = head.loss(outputs, _targets())
    head.label_smoothing = 0.1
    smoothed = head.loss(outputs, _targets())
    assert not torch.isclose(smoothed["cls_loss"], plain["cls_loss"])
    torch.testing.assert_close(smoothed["reg_loss"], plain["reg_loss"])


def test_a_few_optimisation_steps_reduce_the_loss():
    torch.manual_seed(0)
    head = ActionFormerHead(in_dim=D, num_classes=C, num_snippets=16, num_levels=3, **SMALL)
    features, targets = torch.randn(B, D, 16), _targets()
    optimiser = torch.optim.Adam(head.parameters(), lr=3e-3)
    history = []
    for _ in range(8):
        loss = head.loss(head(features), targets)["loss"]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        history.append(loss.item())
    assert history[-1] < 0.6 * history[0], history


def test_mixed_precision_keeps_points_and_loss_in_float32():
    torch.manual_seed(0)
    head = ActionFormerHead(in_dim=D, num_classes=C, num_snippets=25, **SMALL)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = head(torch.randn(B, D, 25))
        losses = head.loss(outputs, _targets())
    assert outputs["points"].dtype == torch.float32
    assert losses["loss"].dtype == torch.float32 and torch.isfinite(losses["loss"])


@pytest.mark.parametrize("seed", range(8))
def test_no_offset_starts_on_the_relus_dead_side(seed):
    """The stall of a stage-3 head (seed 4245 of the demo): with a default-initialised predictor, the ReLU'd offsets
    of almost every positive point were 0, so their DIoU loss gave no gradient. Now every point of every seed
    starts alive and every positive point's loss reaches the regression predictor."""
    torch.manual_seed(seed)
    head = ActionFormerHead(in_dim=D, num_classes=C, num_snippets=25, **SMALL)
    outputs = head(torch.relu(torch.randn(B, D, 25)) * 3)  # non-negative features, as a ReLU encoder gives
    assert (outputs["offsets"] > 0.5).all() and (outputs["offsets"] < 1.5).all()  # about one stride
    losses = head.loss(outputs, _targets())
    losses["loss"].backward()  # only the DIoU term reaches the regression predictor
    assert head.reg_out.weight.grad.abs().sum() > 0 and head.reg_out.bias.grad.abs().min() > 0
