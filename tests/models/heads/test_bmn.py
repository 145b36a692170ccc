"""BMN head: shapes, gradients into the features, the BM sampling matrix, targets-as-outputs decoding, learning."""

from __future__ import annotations

import pytest
import torch

from lofi.core.proposal_grid import duration_start_segments, duration_start_valid_mask
from lofi.core.targets import SegmentTargets
from lofi.models.heads.bmn import BMNHead, bm_matrix
from lofi.models.heads.proposal_maps import proposal_targets
from lofi.models.registry import create_head
from lofi.postprocess.decoders.bmn import decode_bmn

B, D, C = 2, 32, 3
SMALL = dict(hidden_dim=32, hidden_dim_2d=16, hidden_dim_3d=32, num_samples=8, samples_per_bin=2,
             video_hidden_dim=16)


def _targets() -> SegmentTargets:
    return SegmentTargets(segments=[torch.tensor([[0.25, 0.5], [0.6, 1.2]]), torch.zeros(0, 2)],
                          labels=[torch.tensor([0, 2]), torch.zeros(0, dtype=torch.long)])


@pytest.mark.parametrize("proposal_labels", ["snippet", "video"])
@pytest.mark.parametrize("num_snippets,max_duration_snippets", [(16, None), (25, 10)])
def test_forward_shapes_loss_and_gradients_reach_every_parameter_and_the_features(num_snippets, max_duration_snippets,
                                                                                   proposal_labels):
    torch.manual_seed(0)
    head = BMNHead(in_dim=D, num_classes=C, num_snippets=num_snippets, max_duration_snippets=max_duration_snippets,
                   proposal_labels=proposal_labels, **SMALL)
    features = torch.randn(B, D, num_snippets, requires_grad=True)
    out = head(features)
    t, d = num_snippets, max_duration_snippets or num_snippets
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "start": (B, t), "end": (B, t), "confidence": (B, 2, d, t),
        **({"snippet_logits": (B, C, t)} if proposal_labels == "snippet" else {"video_logits": (B, C)})}
    assert all(torch.isfinite(v).all() for v in out.values())
    assert (out["confidence"][:, :, ~head.valid_mask] == 0).all()
    losses = head.loss(out, _targets())
    assert set(losses) == {"loss", "localization", "boundary", "map_cls", "map_reg", f"{proposal_labels}_cls"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    losses["loss"].backward()
    missing = [n for n, p in head.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing
    assert features.grad is not None and features.grad.abs().sum() > 0


def test_registry_builds_bmn_with_defaults_and_empty_windows_work():
    torch.manual_seed(0)
    head = create_head("bmn", in_dim=D, num_classes=C, num_snippets=16)
    assert isinstance(head, BMNHead)
    out = head(torch.randn(B, D, 16))
    empty = SegmentTargets(segments=[torch.zeros(0, 2)] * B, labels=[torch.zeros(0, dtype=torch.long)] * B)
    losses = head.loss(out, empty)
    assert all(torch.isfinite(v) for v in losses.values()) and losses["loss"] > 0


def test_bm_matrix_reproduces_linear_interpolation():
    t = 16
    # cell d=3, ts=2: snippets 2..5, coords [1.5, 5.5]; no context; 5 points evenly with ends -> 1.5, 2.5, ... 5.5
    matrix, cells = bm_matrix(t, t, num_samples=5, samples_per_bin=1, context_ratio=0.0)
    m = int(torch.nonzero(cells == 3 * t + 2))
    ramp = torch.arange(t, dtype=torch.float32) * 3 - 2  # x[t] = 3t - 2
    assert torch.allclose(matrix[m] @ ramp, torch.tensor([1.5, 2.5, 3.5, 4.5, 5.5]) * 3 - 2)
    assert torch.allclose(matrix[m, 0, :3], torch.tensor([0.0, 0.5, 0.5]))
    # 2 bins of 2 points: points 1.5, 1.5 + 4/3, 1.5 + 8/3, 5.5; bin 0 averages the first two
    matrix, cells = bm_matrix(t, t, num_samples=2, samples_per_bin=2, context_ratio=0.0)
    m = int(torch.nonzero(cells == 3 * t + 2))
    p1 = 1.5 + 4 / 3  # 2.8333: 1/6 on x[2], 5/6 on x[3]
    expected = torch.zeros(t)
    expected[1] += 0.5 * 0.5
    expected[2] += 0.5 * 0.5 + 0.5 * (3 - p1)
    expected[3] += 0.5 * (p1 - 2)
    assert torch.allclose(matrix[m, 0], expected, atol=1e-6)
    # context 0.5 on a 1-snippet cell at ts=0: coords [-1, 1], 3 points -1, 0, 1 -> x[-1] is zero padding
    matrix, cells = bm_matrix(t, t, num_samples=3, samples_per_bin=1, context_ratio=0.5)
    m = int(torch.nonzero(cells == 0))
    assert matrix[m, 0].sum() == 0 and matrix[m, 1, 0] == 1 and matrix[m, 2, 1] == 1


def test_sample_gives_bmn_bm_feature_layout():
    head = BMNHead(in_dim=D, num_classes=C, num_snippets=16, max_duration_snippets=8, **SMALL)
    sampled = head.boundary_matching.sample(torch.randn(1, 32, 16))
    assert sampled.shape == (1, 32, 8, 8, 16)  # [B, C, N, Dmax, T]
    assert (sampled[..., ~duration_start_valid_mask(16, 8)] == 0).all()


def test_decoding_perfect_outputs_ranks_the_ground_truth_first():
    t = 25
    targets = SegmentTargets(segments=[torch.tensor([[0.2, 0.48], [0.63, 0.91]]), torch.tensor([[0.0, 1.0]])],
                             labels=[torch.tensor([0, 1]), torch.tensor([2])])
    maps = proposal_targets(targets, candidates=duration_start_segments(t, t), num_snippets=t)
    conf = torch.stack([maps.iou, maps.iou], dim=1) * duration_start_valid_mask(t, t)  # [B, 2, D, T]
    candidates = decode_bmn({"start": maps.start, "end": maps.end, "confidence": conf}, top_k=20)
    assert all(c.labels is None and 0 < len(c) <= 20 for c in candidates)
    assert torch.allclose(candidates[0].segments[0], torch.tensor([0.2, 0.48]), atol=1e-6)
    near = candidates[0].segments[(candidates[0].segments - torch.tensor([0.63, 0.91])).abs().amax(dim=1) < 0.2]
    assert (near[0] - torch.tensor([0.63, 0.91])).abs().max() <= 1 / t
    assert torch.allclose(candidates[1].segments[0], torch.tensor([0.0, 1.0]))


def test_a_few_training_steps_reduce_the_loss():
    torch.manual_seed(0)
    head = BMNHead(in_dim=D, num_classes=C, num_snippets=16, **SMALL)
    features = torch.randn(B, D, 16)
    optimizer = torch.optim.Adam(head.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        loss = head.loss(head(features), _targets())["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.85 * losses[0]


def test_forward_at_100_snippets():
    torch.manual_seed(0)
    head = BMNHead(in_dim=D, num_classes=C, num_snippets=100, **SMALL)
    out = head(torch.randn(1, D, 100))
    assert out["confidence"].shape == (1, 2, 100, 100) and torch.isfinite(out["confidence"]).all()
    assert len(decode_bmn(out, top_k=10)[0]) == 10


def test_max_duration_scales_with_the_window_length():
    torch.manual_seed(0)
    head = BMNHead(in_dim=D, num_classes=C, num_snippets=16, max_duration_snippets=10, **SMALL)
    assert [head.max_duration_at(t) for t in (16, 8, 25)] == [10, 5, 16]  # ceil(10 * T / 16)
    out = head(torch.randn(1, D, 25))
    assert out["confidence"].shape == (1, 2, 16, 25)
    valid, segments = head.map_grid(25)
    assert torch.equal(valid, duration_start_valid_mask(25, 16)) and segments.shape == (16, 25, 2)
    assert (out["confidence"][:, :, ~valid] == 0).all()
    cands = decode_bmn(out, top_k=None, boundary_filter=False)[0]
    assert len(cands) == int(valid.sum()) * C  # one labelled candidate per cell and class
    assert (cands.segments[:, 1] - cands.segments[:, 0]).max() <= 16 / 25 + 1e-6
    default = BMNHead(in_dim=D, num_classes=C, num_snippets=16, **SMALL)  # Dmax = T at every length
    assert default(torch.randn(1, D, 8))["confidence"].shape == (1, 2, 8, 8)
