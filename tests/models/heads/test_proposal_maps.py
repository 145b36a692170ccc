"""Proposal-map targets, losses and the fused sampler, checked on hand-computed cases."""

from __future__ import annotations

import pytest
import torch

from lofi.core.targets import SegmentTargets
from lofi.core.proposal_grid import (
    duration_start_segments,
    duration_start_to_start_end,
    duration_start_valid_mask,
    scaled_max_duration,
    start_end_segments,
    start_end_valid_mask,
)
from lofi.models.heads.proposal_maps import (
    ProposalSampler,
    balanced_bce,
    balanced_l2,
    boundary_labels,
    interpolation_matrix,
    proposal_map_losses,
    proposal_targets,
)

T = 16


def _one_gt() -> SegmentTargets:
    # snippets 4..7 of 16: [4/16, 8/16]
    return SegmentTargets(segments=[torch.tensor([[0.25, 0.5]])], labels=[torch.tensor([0])])


def test_start_end_iou_map_hand_values():
    maps = proposal_targets(_one_gt(), candidates=start_end_segments(T), num_snippets=T)
    assert maps.iou.shape == (1, T, T)
    assert maps.iou[0, 4, 7] == pytest.approx(1.0)  # [4/16, 8/16] is the GT
    assert maps.iou[0, 4, 9] == pytest.approx(2 / 3)  # [4/16, 10/16]: 4 / 6 snippets
    assert maps.iou[0, 2, 5] == pytest.approx(1 / 3)  # [2/16, 6/16]: overlap 2, union 6
    assert maps.iou[0, 10, 12] == 0.0
    assert int((maps.iou[0] > 0.999).sum()) == 1


def test_duration_start_iou_map_hand_values():
    maps = proposal_targets(_one_gt(), candidates=duration_start_segments(T, T), num_snippets=T)
    assert maps.iou.shape == (1, T, T)
    assert maps.iou[0, 3, 4] == pytest.approx(1.0)  # d=3, ts=4 -> [4/16, 8/16]
    assert maps.iou[0, 5, 4] == pytest.approx(2 / 3)
    valid = duration_start_valid_mask(T, T)
    assert valid[15, 0] and not valid[15, 1] and valid[0, 15] and int(valid.sum()) == T * (T + 1) // 2


def test_boundary_labels_at_the_right_indices():
    start, end = boundary_labels(torch.tensor([[0.25, 0.5]]), T)  # start at 4/16, end at 8/16 = end of snippet 7
    assert torch.nonzero(start > 0.5).flatten().tolist() == [3, 4, 5]
    assert torch.nonzero(end > 0.5).flatten().tolist() == [6, 7, 8]
    assert start[4] == 1.0 and start[2] == 0.0 and start[6] == 0.0
    # a boundary half-way between two anchor centres covers half of the outer anchors
    start, _ = boundary_labels(torch.tensor([[4.5 / 16, 0.75]]), T)
    assert start[3].item() == pytest.approx(0.5) and start[4] == 1.0 and start[5] == 1.0
    assert start[6].item() == pytest.approx(0.5)


def test_window_without_gt_and_out_of_window_segments():
    targets = SegmentTargets(segments=[torch.zeros(0, 2), torch.tensor([[-0.5, -0.1], [0.9, 1.4]])],
                             labels=[torch.zeros(0, dtype=torch.long), torch.tensor([1, 2])])
    maps = proposal_targets(targets, candidates=start_end_segments(T), num_snippets=T)
    assert maps.iou[0].abs().sum() == 0 and maps.start[0].sum() == 0 and maps.end[0].sum() == 0
    # [-0.5, -0.1] is dropped; [0.9, 1.4] is clipped to [0.9, 1.0], best matched by [14/16, 16/16]
    assert maps.iou[1].max() == pytest.approx(0.1 / 0.125) and maps.iou[1, 14, 15] == maps.iou[1].max()
    assert maps.start[1, 0] == 0 and maps.end[1, 15] == 1.0


def test_valid_masks_and_reindexing():
    mask = start_end_valid_mask(5, max_duration=2)
    assert mask.tolist()[1] == [False, True, True, False, False]
    ds = torch.arange(2 * 5, dtype=torch.float32).view(1, 2, 5) + 1  # [1, D=2, T=5]
    se = duration_start_to_start_end(ds)[0]  # [5, 5]
    assert se[1, 1] == ds[0, 0, 1] and se[1, 2] == ds[0, 1, 1] and se[4, 4] == ds[0, 0, 4]
    assert bool(((se != 0) == mask).all())


def test_interpolation_matrix_hand_case():
    positions = torch.tensor([[0.25], [2.5], [-0.5], [3.0], [4.5], [1.0]])
    rows = interpolation_matrix(positions, 4)
    expected = torch.tensor([[0.75, 0.25, 0, 0], [0, 0, 0.5, 0.5], [0.5, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 0],
                             [0, 1, 0, 0]])
    assert torch.allclose(rows, expected)
    mean_of_two = interpolation_matrix(torch.tensor([[0.5, 2.0]]), 4)  # mean of two points
    assert torch.allclose(mean_of_two, torch.tensor([[0.25, 0.25, 0.5, 0.0]]))


def test_losses_finite_positive_and_empty_batches_work():
    torch.manual_seed(0)
    valid = start_end_valid_mask(T)
    conf = torch.rand(2, 2, T, T, requires_grad=True)
    start, end = torch.rand(2, T, requires_grad=True), torch.rand(2, T, requires_grad=True)
    for targets in (_one_gt(), SegmentTargets(segments=[torch.zeros(0, 2)], labels=[torch.zeros(0, dtype=torch.long)])):
        maps = proposal_targets(targets, candidates=start_end_segments(T), num_snippets=T)
        losses = proposal_map_losses(start=start[:1], end=end[:1], confidence=conf[:1], valid=valid, targets=maps)
        assert all(torch.isfinite(v) and v > 0 for v in losses.values())
        losses["localization"].backward()
        assert torch.isfinite(conf.grad).all()


def test_balanced_bce_matches_half_pos_half_neg_means():
    p = torch.tensor([0.9, 0.2, 0.3, 0.6])
    pos = torch.tensor([True, False, False, True])
    expected = 0.5 * -(torch.log(torch.tensor(0.9)) + torch.log(torch.tensor(0.6))) / 2 \
        + 0.5 * -(torch.log(torch.tensor(0.8)) + torch.log(torch.tensor(0.7))) / 2
    assert balanced_bce(p, pos).item() == pytest.approx(expected.item(), rel=1e-4)


def test_balanced_l2_is_deterministic_and_weights_sets():
    iou = torch.tensor([0.95, 0.5, 0.5, 0.1, 0.1, 0.1, 0.0, 0.0])
    pred = torch.zeros(8)
    valid = torch.ones(8, dtype=torch.bool)
    # one high cell (weight 1), two mid cells (1/2 each), five low cells (1/5 each): sum of weights 3
    expected = 0.5 * (0.95 ** 2 + 0.5 * 2 * 0.25 + 0.2 * 3 * 0.01) / 3
    assert balanced_l2(pred, iou, valid).item() == pytest.approx(expected, rel=1e-5)
    assert balanced_l2(pred, iou, valid).item() == balanced_l2(pred, iou, valid).item()


def test_proposal_sampler_equals_sample_then_project():
    torch.manual_seed(0)
    matrix = torch.rand(5, 3, 6)  # [M, P, T]
    cells = torch.tensor([0, 2, 3, 5, 8])
    sampler = ProposalSampler(in_dim=4, out_dim=7, matrix=matrix, cell_index=cells, map_shape=(3, 3))
    x = torch.randn(2, 4, 6)
    sampled = sampler.sample(x)  # [B, C, P, 3, 3]
    assert sampled.shape == (2, 4, 3, 3, 3)
    assert torch.allclose(sampled.flatten(3)[..., 2], torch.einsum("bct,pt->bcp", x, matrix[1]), atol=1e-5)
    naive = torch.einsum("bcpij,ocp->boij", sampled, sampler.weight) + sampler.bias.view(1, -1, 1, 1)
    assert torch.allclose(sampler(x), naive, atol=1e-5)


def test_scaled_max_duration():
    assert [scaled_max_duration(64, 100, t) for t in (100, 25, 50, 200, 1)] == [64, 16, 32, 128, 1]
    assert scaled_max_duration(1, 100, 25) == 1  # never below one snippet
    assert scaled_max_duration(100, 100, 25) == 25 and scaled_max_duration(None, 100, 25) is None
    assert all(scaled_max_duration(d, 16, 16) == d for d in range(1, 17))
    with pytest.raises(ValueError, match="max_duration"):
        scaled_max_duration(101, 100, 25)


def _ramp_grid(t: int) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
    matrix = torch.arange(2 * 3 * t, dtype=torch.float32).view(2, 3, t) / t  # [M=2, P=3, T]
    return matrix, torch.tensor([0, t - 1]), (1, t)


def test_proposal_sampler_other_lengths_need_build_and_are_cached():
    torch.manual_seed(0)
    matrix, cells, shape = _ramp_grid(6)
    fixed = ProposalSampler(in_dim=4, out_dim=5, matrix=matrix, cell_index=cells, map_shape=shape)
    with pytest.raises(ValueError, match="built for T=6"):
        fixed(torch.randn(2, 4, 9))
    any_length = ProposalSampler(in_dim=4, out_dim=5, matrix=matrix, cell_index=cells, map_shape=shape,
                                 build=_ramp_grid)
    any_length.load_state_dict(fixed.state_dict())
    x = torch.randn(2, 4, 6)
    assert torch.equal(any_length(x), fixed(x))
    reference = ProposalSampler(in_dim=4, out_dim=5, matrix=_ramp_grid(9)[0], cell_index=_ramp_grid(9)[1],
                                map_shape=(1, 9))
    reference.load_state_dict(fixed.state_dict())
    x = torch.randn(2, 4, 9)
    assert torch.equal(any_length(x), reference(x)) and torch.equal(any_length.sample(x), reference.sample(x))
    assert len(any_length._lengths) == 1 and any_length(x).shape == (2, 5, 1, 9)
    any_length.double()
    assert len(any_length._lengths) == 0 and any_length.grid(9)[0].dtype == torch.float64
    assert any_length.grid(9)[1].dtype == torch.long
