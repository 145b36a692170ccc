"""Memory levers: checkpointing, channels-last and autocast change nothing that matters; frozen parts stay frozen."""

from __future__ import annotations

import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from lofi.models.encoders.r2plus1d import r2plus1d_18
from lofi.models.encoders.tsm_resnet import tsm_resnet18

BUILDERS = [tsm_resnet18, r2plus1d_18]
SHAPE = (1, 2, 2, 3, 32, 32)  # [B, T, F, 3, H, W]


def _pair(builder, **options):
    """A default encoder and one with ``options``, holding the same weights."""
    torch.manual_seed(0)
    reference = builder()
    other = builder(**options)
    other.load_state_dict(reference.state_dict())
    return reference, other


def _bn_stats(encoder) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in encoder.state_dict().items() if "running" in k or "num_batches" in k}


def _step(encoder, frames):
    features = encoder(frames)  # [B, D, T]
    features.square().mean().backward()
    return features.detach(), {n: p.grad for n, p in encoder.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("builder", BUILDERS)
def test_checkpointing_gives_the_same_outputs_gradients_and_bn_statistics(builder):
    reference, checkpointed = _pair(builder, checkpoint_stages=True)
    frames = torch.randn(SHAPE)
    out_ref, grads_ref = _step(reference, frames)
    out_ck, grads_ck = _step(checkpointed, frames)
    assert torch.allclose(out_ref, out_ck, atol=1e-5)
    assert grads_ref.keys() == grads_ck.keys()
    for name in grads_ref:
        assert torch.allclose(grads_ref[name], grads_ck[name], rtol=1e-3, atol=1e-6), name
    stats_ref, stats_ck = _bn_stats(reference), _bn_stats(checkpointed)
    for name in stats_ref:  # the recomputation in backward must not update running stats a second time
        assert torch.allclose(stats_ref[name], stats_ck[name], atol=1e-6), name


@pytest.mark.parametrize("builder", BUILDERS)
def test_channels_last_matches_the_default_layout(builder):
    reference, channels_last = _pair(builder, channels_last=True)
    weight = next(p for p in channels_last.parameters() if p.dim() >= 4)
    assert weight.is_contiguous(memory_format=torch.channels_last if weight.dim() == 4 else torch.channels_last_3d)
    frames = torch.randn(SHAPE)
    # Train mode: the two layouts run the same float32 arithmetic in another order (other conv kernels, other
    # reduction orders in batch norm). Batch statistics over a few values amplify that rounding through the
    # layers: R(2+1)D's outputs (max ~2) differ by up to ~3e-4 depending on the seed, just past a fixed 1e-4. So
    # the bound is relative to the outputs' magnitude: 1e-3 of max |output|, several times the observed
    # reordering noise (<= ~1.5e-4 of it), while a layout bug (channels or H and W mixed up) is off by O(1).
    out_ref, out_cl = reference(frames).detach(), channels_last(frames).detach()
    error, scale = (out_ref - out_cl).abs().max().item(), out_ref.abs().max().item()
    assert scale > 0 and error <= 1e-3 * scale, f"max |difference| {error:.3g} vs max |output| {scale:.3g}"
    # Gradients in eval mode: with batch statistics over a few values, tiny random-init models are so
    # ill-conditioned that a 1e-6 input change moves R(2+1)D's gradients by 20%, whatever the layout.
    reference.eval()
    channels_last.eval()
    out_ref, grads_ref = _step(reference, frames)
    out_cl, grads_cl = _step(channels_last, frames)
    assert torch.allclose(out_ref, out_cl, atol=1e-4)
    assert all(torch.allclose(grads_ref[n], grads_cl[n], rtol=1e-3, atol=1e-5) for n in grads_ref)


@pytest.mark.parametrize("builder", BUILDERS)
def test_bf16_autocast_is_close_to_fp32_and_returns_fp32(builder):
    reference, bf16 = _pair(builder, autocast="bf16")
    reference.eval()
    bf16.eval()
    frames = torch.randn(SHAPE)
    with torch.no_grad():
        out_ref, out_bf16 = reference(frames), bf16(frames)
    assert out_bf16.dtype == torch.float32
    relative = (out_bf16 - out_ref).norm() / out_ref.norm()
    assert relative < 0.05, float(relative)


def test_fp16_autocast_needs_cuda_and_bad_values_are_rejected():
    with pytest.raises(ValueError, match="CUDA"):
        tsm_resnet18(autocast="fp16")(torch.randn(1, 1, 1, 3, 32, 32))
    with pytest.raises(ValueError, match="autocast"):
        tsm_resnet18(autocast="fp32")
    with pytest.raises(ValueError, match="frozen_stages"):
        r2plus1d_18(frozen_stages=6)


@pytest.mark.parametrize("builder", BUILDERS)
def test_frozen_bn_keeps_statistics_and_affine_in_train_mode(builder):
    torch.manual_seed(0)
    encoder = builder(frozen_bn=True).train()
    norms = [m for m in encoder.modules() if isinstance(m, _BatchNorm)]
    assert norms and not any(m.training for m in norms)
    before = _bn_stats(encoder)
    _, grads = _step(encoder, torch.randn(SHAPE))
    after = _bn_stats(encoder)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None and not p.requires_grad for m in norms for p in m.parameters())
    convs = [n for n, p in encoder.named_parameters() if p.requires_grad]
    assert convs and all(grads[n] is not None for n in convs)


@pytest.mark.parametrize("builder", BUILDERS)
@pytest.mark.parametrize("frozen_stages", [2, 3])
def test_frozen_stages_get_no_gradient_and_stay_in_eval(builder, frozen_stages):
    torch.manual_seed(0)
    encoder = builder(frozen_stages=frozen_stages, checkpoint_stages=True)
    encoder.eval().train()
    frozen = [group for group in encoder._stages()[:frozen_stages]]
    frozen_names = {id(p) for group in frozen for m in group for p in m.parameters()}
    before = _bn_stats(encoder)
    _step(encoder, torch.randn(SHAPE))
    after = _bn_stats(encoder)
    for name, param in encoder.named_parameters():
        if id(param) in frozen_names:
            assert not param.requires_grad and param.grad is None, name
        else:
            assert param.requires_grad and param.grad is not None, name
    stem_and_layer1 = [k for k in before if k.startswith(("stem.", "bn1.", "layer1."))]
    assert stem_and_layer1 and all(torch.equal(before[k], after[k]) for k in stem_and_layer1)
    assert not all(torch.equal(before[k], after[k]) for k in before if k.startswith("layer4."))
    assert all(not m.training for group in frozen for root in group for m in root.modules())


@pytest.mark.parametrize("builder", BUILDERS)
def test_everything_frozen_is_a_fixed_feature_extractor(builder):
    encoder = builder(frozen_stages=5, checkpoint_stages=True).train()
    assert not any(p.requires_grad for p in encoder.parameters())
    assert not any(m.training for m in encoder.modules() if isinstance(m, _BatchNorm))
    features = encoder(torch.randn(SHAPE))
    assert not features.requires_grad and torch.isfinite(features).all()
