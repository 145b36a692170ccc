"""Every head takes features of any length T with the same weights (LoFi stage 2 changes T with the fidelity).

A head built for ``num_snippets=16`` runs at T = 16, 8 and 25; at T = 8 or 25 it equals a head built for that
length with the same weights; its state_dict does not depend on the lengths it has seen; the grids it builds
lazily for other lengths follow ``.to`` / ``.double()``.
"""

from __future__ import annotations

import math

import pytest
import torch

from lofi.core.targets import SegmentTargets
from lofi.models.heads.actionformer import ActionFormerHead
from lofi.models.heads.bmn import BMNHead
from lofi.models.heads.gtad import GTADHead
from lofi.postprocess.decode import decode_outputs

B, D, C, T0 = 2, 16, 3, 16
GTAD = dict(hidden_dim=16, align_dim=16, map_dim=8, groups=2, width_per_group=4, stem_groups=2, video_hidden_dim=8,
            num_samples=4)
BMN = dict(hidden_dim=16, hidden_dim_2d=8, hidden_dim_3d=16, groups=2, num_samples=4, samples_per_bin=2,
           video_hidden_dim=8)
AF = dict(embed_dim=16, num_heads=2, window_size=5, num_levels=3, num_head_layers=2)

#: name -> (head class, options, decoder name, max_duration_snippets at num_snippets=16 (None: the head's default))
HEADS = {
    "gtad": (GTADHead, GTAD, "gtad", None),
    "gtad_max_duration": (GTADHead, GTAD, "gtad", 6),
    "bmn": (BMNHead, BMN, "bmn", None),
    "bmn_max_duration": (BMNHead, BMN, "bmn", 10),
    "actionformer": (ActionFormerHead, AF, "actionformer", None),
}


def _build(name: str, num_snippets: int = T0, max_duration_snippets: int | None = None) -> torch.nn.Module:
    cls, options, _, default_max = HEADS[name]
    if default_max is not None:
        options = dict(options, max_duration_snippets=max_duration_snippets or default_max)
    return cls(in_dim=D, num_classes=C, num_snippets=num_snippets, **options)


def _targets() -> SegmentTargets:
    return SegmentTargets(segments=[torch.tensor([[0.25, 0.5], [0.6, 1.2]]), torch.zeros(0, 2)],
                          labels=[torch.tensor([0, 2]), torch.zeros(0, dtype=torch.long)])


def _expected_shapes(name: str, head: torch.nn.Module, t: int) -> dict[str, tuple[int, ...]]:
    if name == "actionformer":
        p = sum(math.ceil(t / 2 ** level) for level in range(head.num_levels))
        return {"cls_logits": (B, p, C), "offsets": (B, p, 2), "points": (p, 4)}
    rows = head.max_duration_at(t) if isinstance(head, BMNHead) else t
    return {"start": (B, t), "end": (B, t), "confidence": (B, 2, rows, t), "snippet_logits": (B, C, t)}


def _decode(name: str, head: torch.nn.Module, out: dict[str, torch.Tensor]):
    options = {}
    if isinstance(head, GTADHead):
        options = dict(max_duration_snippets=head.max_duration_snippets, num_snippets=head.num_snippets)
    return decode_outputs(HEADS[name][2], out, **options)


def _run(head: torch.nn.Module, features: torch.Tensor) -> tuple[dict, dict, dict]:
    head.zero_grad(set_to_none=True)
    out = head(features)
    losses = head.loss(out, _targets())
    losses["loss"].backward()
    grads = {n: p.grad.clone() for n, p in head.named_parameters() if p.grad is not None}
    return out, losses, grads


@pytest.mark.parametrize("name", list(HEADS))
def test_one_head_trains_and_decodes_at_several_lengths(name):
    torch.manual_seed(0)
    head = _build(name)
    for t in (16, 8, 25):
        features = torch.randn(B, D, t, requires_grad=True)
        out, losses, grads = _run(head, features)
        assert {k: tuple(v.shape) for k, v in out.items()} == _expected_shapes(name, head, t)
        assert all(torch.isfinite(v).all() for v in out.values())
        assert all(torch.isfinite(v) for v in losses.values())
        assert features.grad is not None and torch.isfinite(features.grad).all() and features.grad.abs().sum() > 0
        assert grads and all(torch.isfinite(g).all() for g in grads.values())
        if name != "actionformer":
            valid, _ = head.map_grid(t)
            assert (out["confidence"][:, :, ~valid] == 0).all()
            if HEADS[name][3] is not None:  # the longest candidate is the same fraction of the window
                assert head.max_duration_at(t) == math.ceil(HEADS[name][3] * t / T0)
        candidates = _decode(name, head, out)
        assert len(candidates) == B
        for window in candidates:
            assert len(window) > 0
            seg = window.segments
            assert (seg >= 0).all() and (seg <= 1).all() and (seg[:, 1] >= seg[:, 0]).all()
            if name != "actionformer":  # on the grid of the outputs' T, within the (scaled) max duration
                assert torch.allclose(seg * t, (seg * t).round(), atol=1e-4)
                limit = head.max_duration_at(t)
                assert limit is None or (seg[:, 1] - seg[:, 0]).max() <= limit / t + 1e-6


@pytest.mark.parametrize("t", [8, 25])
@pytest.mark.parametrize("name", list(HEADS))
def test_running_at_another_length_equals_a_head_built_for_it(name, t):
    torch.manual_seed(0)
    head = _build(name)
    scaled = head.max_duration_at(t) if name != "actionformer" else None
    reference = _build(name, num_snippets=t, max_duration_snippets=scaled)
    reference.load_state_dict(head.state_dict())  # strict: same keys and shapes
    features = torch.randn(B, D, t)
    out, losses, grads = _run(head, features)
    ref_out, ref_losses, ref_grads = _run(reference, features)
    assert out.keys() == ref_out.keys() and all(torch.equal(out[k], ref_out[k]) for k in out)
    assert all(torch.equal(losses[k], ref_losses[k]) for k in ref_losses)
    assert grads.keys() == ref_grads.keys() and all(torch.equal(grads[k], ref_grads[k]) for k in grads)


@pytest.mark.parametrize("name", list(HEADS))
def test_state_dict_does_not_depend_on_the_lengths_seen(name):
    torch.manual_seed(0)
    head = _build(name)
    before = {k: v.clone() for k, v in head.state_dict().items()}
    with torch.no_grad():
        for t in (8, 25, 16):
            head(torch.randn(1, D, t))
    after = head.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    other = _build(name, num_snippets=8, max_duration_snippets=4 if HEADS[name][3] else None).state_dict()
    assert {k: v.shape for k, v in other.items()} == {k: v.shape for k, v in before.items()}
    if name != "actionformer":  # the lazily built grids exist, outside the state_dict
        assert len(head._grids) == 2 and not any("grid" in k or "_lengths" in k for k in after)


@pytest.mark.parametrize("name", list(HEADS))
def test_lazy_grids_follow_dtype_and_device(name):
    torch.manual_seed(0)
    head = _build(name)
    t = 8
    with torch.no_grad():
        head(torch.randn(1, D, t))  # builds (and caches) the float32 grids of T = 8
        head.double()
        out = head(torch.randn(B, D, t, dtype=torch.float64))
    floating = [v for k, v in out.items() if k != "points"]  # ActionFormer's points stay float32
    assert all(v.dtype == torch.float64 and torch.isfinite(v).all() for v in floating)
    if name == "actionformer":
        return
    _, segments = head.map_grid(t)
    sampler = head.align if isinstance(head, GTADHead) else head.boundary_matching
    sampling, cell_index, _ = sampler.grid(t)
    assert segments.dtype == sampling.dtype == torch.float64 and cell_index.dtype == torch.long
    assert segments.device == sampling.device == head.candidate_segments.device
    # the same as a head built for T = 8 and cast to float64
    reference = _build(name, num_snippets=t, max_duration_snippets=head.max_duration_at(t)).double()
    assert torch.equal(reference.candidate_segments, segments)
    assert torch.equal(reference.valid_mask, head.map_grid(t)[0])
    ref_sampler = reference.align if isinstance(reference, GTADHead) else reference.boundary_matching
    assert torch.equal(ref_sampler.sampling, sampling) and torch.equal(ref_sampler.cell_index, cell_index)
    head.float()
    assert head.map_grid(t)[1].dtype == sampler.grid(t)[0].dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["gtad_max_duration", "bmn_max_duration"])
def test_lazy_grids_follow_the_module_to_cuda(name):
    torch.manual_seed(0)
    head = _build(name)
    head(torch.randn(1, D, 8))
    head.cuda()
    out = head(torch.randn(B, D, 25, device="cuda"))
    assert out["confidence"].is_cuda and head.map_grid(25)[0].is_cuda
    losses = head.loss(out, _targets().to("cuda"))
    assert torch.isfinite(losses["loss"])
    assert all(c.segments.is_cuda for c in _decode(name, head, out))
