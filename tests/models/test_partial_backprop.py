"""Partial snippet back-propagation: with eval-mode BatchNorm the gradients are exactly those of a full forward with
the other snippets' features detached; masks have the asked share; the encoder's saved activations shrink."""

from __future__ import annotations

import pytest
import torch

from lofi.core.targets import SegmentTargets
from lofi.models import create_model
from lofi.models.memory_measure import MemoryTrace
from lofi.models.partial_backprop import draw_grad_mask, partial_backprop_features, step_seed

TINY_HEAD = dict(hidden_dim=32, align_dim=32, map_dim=16, num_samples=4, video_hidden_dim=32, groups=4,
                 width_per_group=2, stem_groups=2)
B, T, F, SIZE_PX = 2, 8, 2, 32


def _model(num_snippets: int = T, **encoder_options):
    torch.manual_seed(0)
    return create_model(encoder="tsm_resnet18", head="gtad", num_classes=3, num_snippets=num_snippets,
                        encoder_options={"width": 0.25, **encoder_options}, head_options=TINY_HEAD).train()


def _batch(batch: int = B, num_snippets: int = T, frames: int = F, size_px: int = SIZE_PX):
    generator = torch.Generator().manual_seed(1)
    clips = torch.randint(0, 256, (batch, num_snippets, frames, 3, size_px, size_px), dtype=torch.uint8,
                          generator=generator)  # [B, T, F, 3, S, S]
    targets = SegmentTargets(segments=[torch.tensor([[0.2, 0.6]])] * batch, labels=[torch.tensor([1])] * batch)
    return clips, targets


def _grads(model, features, targets):
    model.zero_grad(set_to_none=True)
    model.loss(model.head(features), targets)["loss"].backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _reference(model, frames, mask, targets):
    """Full forward, the other snippets' features detached."""
    full = model.features(frames)  # [B, D, T]
    features = torch.where(mask[:, None, :], full, full.detach())  # [B, D, T]
    return features.detach(), _grads(model, features, targets)


@pytest.mark.parametrize("options", [{"frozen_bn": True}, {"frozen_bn": True, "checkpoint_stages": True},
                                     {"frozen_bn": True, "frozen_stages": 2}], ids=["frozen_bn", "checkpoint",
                                                                                     "frozen_stages"])
def test_gradients_equal_full_backprop_with_the_others_detached(options):
    model = _model(**options)
    frames, targets = _batch()
    mask = draw_grad_mask(batch_size=B, num_snippets=T, share=0.3, seed=5)  # [B, T]
    ref_features, ref_grads = _reference(model, frames, mask, targets)
    features = model.features(frames, grad_mask=mask)  # [B, D, T]
    assert features.shape == ref_features.shape
    assert torch.allclose(features.detach(), ref_features, atol=1e-5)
    grads = _grads(model, features, targets)
    assert grads.keys() == ref_grads.keys()
    assert any(n.startswith("encoder.") for n in grads)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == set(grads)  # every trainable parameter gets a gradient
    for name in grads:
        assert torch.allclose(grads[name], ref_grads[name], rtol=1e-4, atol=1e-6), name


def test_only_the_chosen_snippets_carry_gradient():
    model = _model(frozen_bn=True)
    frames, _ = _batch()
    frames = frames.float().requires_grad_()  # float frames: taken as normalised
    mask = draw_grad_mask(batch_size=B, num_snippets=T, share=0.3, seed=2)
    model.features(frames, grad_mask=mask).sum().backward()
    touched = frames.grad.abs().flatten(2).sum(dim=2) > 0  # [B, T]
    assert torch.equal(touched, mask)


def test_share_one_is_the_full_forward_bit_for_bit():
    model = _model()  # train-mode BatchNorm too
    frames, targets = _batch()
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    full = model.features(frames)
    full_grads = _grads(model, full, targets)
    model.load_state_dict({**model.state_dict(), **stats})
    mask = draw_grad_mask(batch_size=B, num_snippets=T, share=1.0, seed=0)
    assert bool(mask.all())
    partial = model.features(frames, grad_mask=mask)
    assert torch.equal(partial, full)
    for name, grad in _grads(model, partial, targets).items():
        assert torch.equal(grad, full_grads[name]), name


def test_train_mode_bn_statistics_are_updated_once_by_the_chosen_snippets():
    model = _model()
    twin = _model()  # same weights and statistics
    frames, _ = _batch()
    mask = draw_grad_mask(batch_size=B, num_snippets=T, share=0.3, seed=3)
    model.features(frames, grad_mask=mask)
    chosen = frames[mask][:, None]  # [K, 1, F, 3, S, S]
    twin.features(chosen)  # one forward of the chosen snippets alone
    for (name, ours), (_, theirs) in zip(model.encoder.state_dict().items(), twin.encoder.state_dict().items()):
        if "running" in name or "num_batches" in name:
            assert torch.allclose(ours, theirs, atol=1e-6), name


def test_bad_masks_are_refused():
    model = _model(frozen_bn=True)
    frames, _ = _batch()
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[1] = False
    with pytest.raises(ValueError, match="at least one snippet of every video"):
        partial_backprop_features(model.encoder, frames, mask)
    with pytest.raises(ValueError, match="bool"):
        partial_backprop_features(model.encoder, frames, torch.ones(B, T + 1, dtype=torch.bool))


@pytest.mark.parametrize("num_snippets", [1, 7, 100])
@pytest.mark.parametrize("share", [0.01, 0.3, 0.5, 1.0])
def test_random_masks_have_the_share_and_at_least_one_snippet(num_snippets, share):
    mask = draw_grad_mask(batch_size=4, num_snippets=num_snippets, share=share, seed=11)
    expected = min(num_snippets, max(1, int(share * num_snippets + 0.5)))
    assert mask.shape == (4, num_snippets) and mask.dtype == torch.bool
    assert mask.sum(dim=1).tolist() == [expected] * 4
    assert torch.equal(mask, draw_grad_mask(batch_size=4, num_snippets=num_snippets, share=share, seed=11))


def test_random_masks_differ_between_videos_and_steps():
    first = draw_grad_mask(batch_size=8, num_snippets=100, share=0.3, seed=step_seed(0, global_step=0))
    second = draw_grad_mask(batch_size=8, num_snippets=100, share=0.3, seed=step_seed(0, global_step=1))
    assert not torch.equal(first, second)
    assert len({tuple(row.tolist()) for row in first}) == 8
    assert step_seed(0, global_step=3, accum_index=1) == step_seed(0, global_step=3, accum_index=1)
    assert step_seed(0, global_step=3, accum_index=1) != step_seed(0, global_step=3, accum_index=0)
    assert step_seed(0, global_step=3, rank=1) != step_seed(0, global_step=3, rank=0)


@pytest.mark.parametrize("num_snippets, chunk_snippets, share, chunks",
                         [(100, 4, 0.3, 8), (100, 10, 0.3, 3), (10, 4, 0.3, 1), (12, 4, 0.01, 1), (9, 4, 1.0, 3)])
def test_chunk_masks_are_whole_contiguous_chunks(num_snippets, chunk_snippets, share, chunks):
    mask = draw_grad_mask(batch_size=3, num_snippets=num_snippets, share=share, mode="chunks",
                          chunk_snippets=chunk_snippets, seed=4)
    padded = torch.zeros(3, -(-num_snippets // chunk_snippets) * chunk_snippets, dtype=torch.bool)
    padded[:, :num_snippets] = mask
    per_chunk = padded.view(3, -1, chunk_snippets)  # [B, num_chunks, c]
    for b in range(3):
        whole = per_chunk[b].any(dim=1)  # chunks touched
        assert int(whole.sum()) == chunks
        for index in whole.nonzero().flatten().tolist():  # every touched chunk is chosen whole
            start, stop = index * chunk_snippets, min((index + 1) * chunk_snippets, num_snippets)
            assert bool(mask[b, start:stop].all())
    assert torch.equal(mask, draw_grad_mask(batch_size=3, num_snippets=num_snippets, share=share, mode="chunks",
                                            chunk_snippets=chunk_snippets, seed=4))


def _step(model, frames, targets, mask) -> None:
    model.zero_grad(set_to_none=False)
    model.loss(model(frames, grad_mask=mask), targets)["loss"].backward()


@pytest.mark.parametrize("options", [{}, {"checkpoint_stages": True}], ids=["plain", "checkpoint"])
def test_step_peak_memory_drops_with_the_share(options):
    # Measured (torch 2.x CPU, tensor bytes from the profiler, so deterministic): share 0.3 / share 1.0 = 0.33
    # plain, 0.30 with checkpointing, at B=2, T=20, F=1, 64 px; the bound leaves a third of margin.
    num_snippets = 20
    model = _model(num_snippets=num_snippets, **options)
    frames, targets = _batch(num_snippets=num_snippets, frames=1, size_px=64)
    peaks = {}
    for share in (1.0, 0.3):
        mask = draw_grad_mask(batch_size=B, num_snippets=num_snippets, share=share, seed=0)
        _step(model, frames, targets, mask)  # warm-up: gradients allocated
        with MemoryTrace("cpu") as trace, trace.window("step"):
            _step(model, frames, targets, mask)
        peaks[share] = trace.peak_bytes("step")
    assert peaks[0.3] < 0.45 * peaks[1.0], peaks


def test_combines_with_bf16_autocast():
    model = _model(frozen_bn=True, autocast="bf16", checkpoint_stages=True)
    frames, targets = _batch()
    mask = draw_grad_mask(batch_size=B, num_snippets=T, share=0.3, mode="chunks", chunk_snippets=2, seed=1)
    ref_features, ref_grads = _reference(model, frames, mask, targets)
    features = model.features(frames, grad_mask=mask)
    assert features.dtype == torch.float32
    scale = ref_features.abs().max()
    assert torch.allclose(features.detach(), ref_features, atol=2e-2 * scale)  # bf16: other batch, other rounding
    grads = _grads(model, features, targets)
    assert grads.keys() == ref_grads.keys()
    for name in grads:
        assert torch.allclose(grads[name], ref_grads[name], rtol=0.1, atol=0.05 * ref_grads[name].abs().max()), name
