"""G-TAD head: shapes, gradients into the features, SGAlign sampling, targets-as-outputs decoding, learning."""

from __future__ import annotations

import pytest
import torch

from lofi.core.proposal_grid import start_end_segments, start_end_valid_mask
from lofi.core.targets import SegmentTargets
from lofi.models.heads.gtad import GTADHead, knn_indices, sgalign_matrix
from lofi.models.heads.proposal_maps import proposal_targets
from lofi.models.registry import create_head
from lofi.postprocess.decoders.gtad import boundary_peaks, decode_gtad

B, D, C = 2, 32, 3
SMALL = dict(hidden_dim=32, align_dim=32, map_dim=16, groups=4, width_per_group=4, video_hidden_dim=16,
             num_samples=8)


def _targets() -> SegmentTargets:
    return SegmentTargets(segments=[torch.tensor([[0.25, 0.5], [0.6, 1.2]]), torch.zeros(0, 2)],
                          labels=[torch.tensor([0, 2]), torch.zeros(0, dtype=torch.long)])


@pytest.mark.parametrize("proposal_labels", ["snippet", "video"])
@pytest.mark.parametrize("num_snippets", [16, 25])
def test_forward_shapes_loss_and_gradients_reach_every_parameter_and_the_features(num_snippets, proposal_labels):
    torch.manual_seed(0)
    head = GTADHead(in_dim=D, num_classes=C, num_snippets=num_snippets, proposal_labels=proposal_labels, **SMALL)
    features = torch.randn(B, D, num_snippets, requires_grad=True)
    out = head(features)
    t = num_snippets
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "start": (B, t), "end": (B, t), "confidence": (B, 2, t, t),
        **({"snippet_logits": (B, C, t)} if proposal_labels == "snippet" else {"video_logits": (B, C)})}
    assert all(torch.isfinite(v).all() for v in out.values())
    assert (out["confidence"][:, :, ~head.valid_mask] == 0).all()
    assert 0 <= out["start"].min() and out["start"].max() <= 1
    losses = head.loss(out, _targets())
    assert set(losses) == {"loss", "localization", "boundary", "map_cls", "map_reg", f"{proposal_labels}_cls"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    losses["loss"].backward()
    missing = [n for n, p in head.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing
    assert features.grad is not None and features.grad.abs().sum() > 0


def test_registry_builds_gtad_with_defaults():
    head = create_head("gtad", in_dim=D, num_classes=C, num_snippets=16)
    assert isinstance(head, GTADHead)
    assert head(torch.randn(1, D, 16))["confidence"].shape == (1, 2, 16, 16)


def test_all_empty_windows_give_a_finite_loss():
    torch.manual_seed(0)
    head = GTADHead(in_dim=D, num_classes=C, num_snippets=16, **SMALL)
    empty = SegmentTargets(segments=[torch.zeros(0, 2)] * B, labels=[torch.zeros(0, dtype=torch.long)] * B)
    losses = head.loss(head(torch.randn(B, D, 16)), empty)
    assert all(torch.isfinite(v) for v in losses.values()) and losses["loss"] > 0


def test_max_duration_limits_the_candidates():
    head = GTADHead(in_dim=D, num_classes=C, num_snippets=16, max_duration_snippets=4, **SMALL)
    conf = head(torch.randn(1, D, 16))["confidence"]
    assert conf[0, :, 2, 5].abs().sum() > 0 and (conf[0, :, 2, 6] == 0).all()
    assert head.align.sampling.shape[1] == int(start_end_valid_mask(16, max_duration=4).sum())


def test_bad_inputs_fail_early():
    head = GTADHead(in_dim=D, num_classes=C, num_snippets=16, **SMALL)
    with pytest.raises(ValueError, match="expected features"):
        head(torch.randn(1, D + 1, 16))
    with pytest.raises(ValueError, match="T >= 3"):  # fewer snippets than k semantic neighbours
        head(torch.randn(1, D, 2))
    with pytest.raises(ValueError, match="expected confidence"):
        head.loss({**head(torch.randn(B, D, 8)), "confidence": torch.rand(B, 2, 16, 16)}, _targets())
    with pytest.raises(ValueError, match="max_duration_snippets"):
        GTADHead(in_dim=D, num_classes=C, num_snippets=16, max_duration_snippets=17, **SMALL)
    with pytest.raises(ValueError, match="k="):
        GTADHead(in_dim=D, num_classes=C, num_snippets=2, **SMALL)


def test_knn_includes_itself_first():
    x = torch.tensor([[[0.0, 10.0, 1.0, 11.0]]])  # [1, 1, 4]
    idx = knn_indices(x, 2)
    assert idx[0].tolist() == [[0, 2], [1, 3], [2, 0], [3, 1]]


def test_sgalign_matrix_reproduces_linear_interpolation():
    t = 16
    matrix, cells = sgalign_matrix(t, num_samples=4, samples_per_bin=1, context_ratio=0.0)
    m = int(torch.nonzero(cells == 2 * t + 5))  # candidate [2, 5]: snippet coords [1.5, 5.5], bins of width 1
    ramp = torch.arange(t, dtype=torch.float32) * 2 + 1  # x[t] = 2t + 1: interpolation is exact
    assert torch.allclose(matrix[m] @ ramp, torch.tensor([2.0, 3.0, 4.0, 5.0]) * 2 + 1)
    # 8 bins of width 0.5: centres 1.75, 2.25, ..., 5.25, each between two snippets
    matrix, cells = sgalign_matrix(t, num_samples=8, samples_per_bin=1, context_ratio=0.0)
    m = int(torch.nonzero(cells == 2 * t + 5))
    assert matrix[m, 0, 1].item() == pytest.approx(0.25) and matrix[m, 0, 2].item() == pytest.approx(0.75)
    assert torch.allclose(matrix[m] @ ramp, (torch.arange(8) * 0.5 + 1.75) * 2 + 1)
    # context ratio 0.5, 2 points per bin: [1, 4] spans [0.5 - 2, 4.5 + 2] = [-1.5, 6.5], 8 bins of width 1.
    # Bin 2 averages 0.75 and 1.25; bin 0 averages -1.25 (only zero padding) and -0.75 (0.25 of x[0]);
    # bin 1 averages -0.25 (0.75 of x[0]) and 0.25 (0.75 of x[0], 0.25 of x[1]).
    matrix, cells = sgalign_matrix(t, num_samples=8, samples_per_bin=2, context_ratio=0.5)
    m = int(torch.nonzero(cells == 1 * t + 4))
    assert torch.allclose(matrix[m, 2, :3], torch.tensor([0.125, 0.75, 0.125])) and matrix[m, 2, 3:].sum() == 0
    assert torch.allclose(matrix[m, 0], torch.tensor([0.125] + [0.0] * 15))
    assert torch.allclose(matrix[m, 1], torch.tensor([0.75, 0.125] + [0.0] * 14))
    assert torch.allclose(matrix[m, 7, -8:-6], torch.tensor([0.0, 0.0]))  # bin 7 averages 5.75 and 6.25
    assert torch.allclose(matrix[m, 7, 5:8], torch.tensor([0.125, 0.75, 0.125]))


def _perfect_outputs(targets: SegmentTargets, t: int) -> dict[str, torch.Tensor]:
    maps = proposal_targets(targets, candidates=start_end_segments(t), num_snippets=t)
    valid = start_end_valid_mask(t)
    conf = torch.stack([maps.iou, maps.iou], dim=1) * valid  # [B, 2, T, T]
    return {"start": maps.start, "end": maps.end, "confidence": conf}


def test_decoding_perfect_outputs_ranks_the_ground_truth_first():
    t = 25
    targets = SegmentTargets(segments=[torch.tensor([[0.2, 0.48], [0.63, 0.91]]), torch.tensor([[0.0, 1.0]])],
                             labels=[torch.tensor([0, 1]), torch.tensor([2])])
    candidates = decode_gtad(_perfect_outputs(targets, t), top_k=50)
    assert len(candidates) == 2 and all(c.labels is None for c in candidates)
    assert 0 < len(candidates[0]) <= 50  # only cells whose start and end pass the boundary filter
    assert torch.allclose(candidates[0].segments[0], torch.tensor([0.2, 0.48]), atol=1e-6)  # on the grid: exact
    # the best candidate near the off-grid segment is within 1/T of it
    near = candidates[0].segments[(candidates[0].segments - torch.tensor([0.63, 0.91])).abs().amax(dim=1) < 0.2]
    assert (near[0] - torch.tensor([0.63, 0.91])).abs().max() <= 1 / t
    assert torch.allclose(candidates[1].segments[0], torch.tensor([0.0, 1.0]))
    assert (candidates[0].scores[:-1] >= candidates[0].scores[1:]).all()


def test_boundary_peaks():
    probs = torch.tensor([[0.1, 0.3, 0.2, 0.05, 0.9, 0.1]])
    assert boundary_peaks(probs).tolist() == [[False, True, False, False, True, False]]
    assert boundary_peaks(probs, first=True, last=True)[0, [0, 5]].tolist() == [True, True]


def test_a_few_training_steps_reduce_the_loss():
    torch.manual_seed(0)
    head = GTADHead(in_dim=D, num_classes=C, num_snippets=16, **SMALL)
    features = torch.randn(B, D, 16)
    optimizer = torch.optim.Adam(head.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        loss = head.loss(head(features), _targets())["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_forward_at_100_snippets():
    torch.manual_seed(0)
    head = GTADHead(in_dim=D, num_classes=C, num_snippets=100, **SMALL)
    out = head(torch.randn(1, D, 100))
    assert out["confidence"].shape == (1, 2, 100, 100) and torch.isfinite(out["confidence"]).all()
    assert len(decode_gtad(out, top_k=10)[0]) == 10


def test_max_duration_scales_with_the_window_length():
    torch.manual_seed(0)
    head = GTADHead(in_dim=D, num_classes=C, num_snippets=16, max_duration_snippets=6, **SMALL)
    assert [head.max_duration_at(t) for t in (16, 8, 25, 4)] == [6, 3, 10, 2]  # ceil(6 * T / 16)
    out = head(torch.randn(1, D, 8))
    valid, _ = head.map_grid(8)
    assert torch.equal(valid, start_end_valid_mask(8, max_duration=3))
    assert out["confidence"][0, :, 1, 3].abs().sum() > 0 and (out["confidence"][0, :, 1, 4] == 0).all()
    # the decoder applies the same rule from the head's (max_duration_snippets, num_snippets)
    cands = decode_gtad(out, top_k=None, max_duration_snippets=6, num_snippets=16, boundary_filter=False)[0]
    assert len(cands) == int(valid.sum()) * C  # one labelled candidate per cell and class
    assert (cands.segments[:, 1] - cands.segments[:, 0]).max().item() == pytest.approx(3 / 8)
