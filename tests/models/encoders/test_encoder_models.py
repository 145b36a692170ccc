"""TSM-ResNet and R(2+1)D: shapes, gradients, parameter counts and torchvision's parameter names."""

from __future__ import annotations

import pytest
import torch

from lofi.models.encoders.r2plus1d import R2Plus1D, r2plus1d_18
from lofi.models.encoders.tsm_resnet import TSMResNet, tsm_resnet18, tsm_resnet34, tsm_resnet50

B, T, F, SIZE = 2, 3, 2, 32
BUILDERS = {"tsm_resnet18": tsm_resnet18, "tsm_resnet34": tsm_resnet34, "tsm_resnet50": tsm_resnet50,
            "r2plus1d_18": r2plus1d_18}
#: torchvision's counts without ``fc``: resnet18 11,689,512 - 513,000; resnet34 21,797,672 - 513,000;
#: resnet50 25,557,032 - 2,049,000; video r2plus1d_18 31,505,325 - 205,200.
PARAMS = {"tsm_resnet18": 11_176_512, "tsm_resnet34": 21_284_672, "tsm_resnet50": 23_508_032,
          "r2plus1d_18": 31_300_125}
DIMS = {"tsm_resnet18": 512, "tsm_resnet34": 512, "tsm_resnet50": 2048, "r2plus1d_18": 512}


@pytest.mark.parametrize("name", list(BUILDERS))
def test_forward_shape_finite_and_every_parameter_gets_a_gradient(name):
    torch.manual_seed(0)
    encoder = BUILDERS[name]()
    assert encoder.feature_dim == DIMS[name]
    assert sum(p.numel() for p in encoder.parameters()) == PARAMS[name]
    features = encoder(torch.randn(B, T, F, 3, SIZE, SIZE))  # [B, D, T]
    assert features.shape == (B, DIMS[name], T) and features.dtype == torch.float32
    assert torch.isfinite(features).all()
    features.square().mean().backward()
    missing = [n for n, p in encoder.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient for {missing[:5]}"


@pytest.mark.parametrize("builder", [tsm_resnet18, r2plus1d_18])
@pytest.mark.parametrize("num_frames", [1, 3])
def test_any_number_of_frames_per_snippet(builder, num_frames):
    torch.manual_seed(0)
    features = builder().eval()(torch.randn(1, 2, num_frames, 3, SIZE, SIZE))
    assert features.shape == (1, 512, 2) and torch.isfinite(features).all()


@pytest.mark.parametrize("builder", [tsm_resnet18, r2plus1d_18])
def test_snippets_are_encoded_independently(builder):
    torch.manual_seed(0)
    encoder = builder().eval()
    frames = torch.randn(1, 3, F, 3, SIZE, SIZE)
    changed = frames.clone()
    changed[0, 1] += 1.0
    with torch.no_grad():
        before, after = encoder(frames), encoder(changed)  # [1, D, T]
    assert torch.allclose(before[..., [0, 2]], after[..., [0, 2]], atol=1e-5)
    assert not torch.allclose(before[..., 1], after[..., 1], atol=1e-3)


def test_shift_mixes_frames_and_single_frame_means_no_shift():
    torch.manual_seed(0)
    tsm = tsm_resnet18().eval()
    plain = tsm_resnet18(shift_div=0).eval()
    plain.load_state_dict(tsm.state_dict())
    with torch.no_grad():
        one = torch.randn(1, 2, 1, 3, SIZE, SIZE)
        assert torch.equal(tsm(one), plain(one))
        many = torch.randn(1, 2, 4, 3, SIZE, SIZE)
        assert not torch.allclose(tsm(many), plain(many), atol=1e-3)


def test_tsm_parameter_names_are_torchvision_resnet_without_fc():
    keys18 = list(tsm_resnet18().state_dict())
    assert len(keys18) == 120  # torchvision resnet18: 122 with fc.weight and fc.bias
    assert keys18[:2] == ["conv1.weight", "bn1.weight"]
    for key in ("layer1.0.conv1.weight", "layer2.0.downsample.0.weight", "layer2.0.downsample.1.running_var",
                "layer4.1.bn2.num_batches_tracked"):
        assert key in keys18
    assert not any(k.startswith("fc.") or ".net." in k for k in keys18)
    keys50 = tsm_resnet50().state_dict()
    assert len(keys50) == 318  # torchvision resnet50: 320
    assert keys50["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert keys50["layer2.0.conv2.weight"].shape == (128, 128, 3, 3)  # the stride sits on the 3x3 conv
    assert keys50["layer3.5.bn3.weight"].shape == (1024,)


def test_r2plus1d_parameter_names_and_shapes_are_torchvision_video():
    state = r2plus1d_18().state_dict()
    expected = {
        "stem.0.weight": (45, 3, 1, 7, 7), "stem.1.weight": (45,), "stem.3.weight": (64, 45, 3, 1, 1),
        "stem.4.running_mean": (64,),
        "layer1.0.conv1.0.0.weight": (144, 64, 1, 3, 3), "layer1.0.conv1.0.1.weight": (144,),
        "layer1.0.conv1.0.3.weight": (64, 144, 3, 1, 1), "layer1.0.conv1.1.weight": (64,),
        "layer2.0.conv1.0.0.weight": (230, 64, 1, 3, 3), "layer2.0.conv2.0.0.weight": (230, 128, 1, 3, 3),
        "layer2.0.downsample.0.weight": (128, 64, 1, 1, 1), "layer2.0.downsample.1.weight": (128,),
        "layer2.1.conv1.0.0.weight": (288, 128, 1, 3, 3), "layer4.1.conv2.1.bias": (512,),
    }
    for key, shape in expected.items():
        assert tuple(state[key].shape) == shape, key
    assert not any(k.startswith("fc.") for k in state)


@pytest.mark.parametrize("cls", [TSMResNet, R2Plus1D])
def test_bad_inputs_and_options_fail_clearly(cls):
    encoder = cls()
    with pytest.raises(ValueError, match=r"\[B, T, F, 3, H, W\]"):
        encoder(torch.zeros(2, 3, 3, SIZE, SIZE))
    with pytest.raises(ValueError, match="normalize_frames"):
        encoder(torch.zeros(1, 1, 1, 3, SIZE, SIZE, dtype=torch.uint8))
    with pytest.raises(TypeError):
        cls(1)  # keyword-only


def test_tsm_rejects_unknown_depth_and_bad_shift_div():
    with pytest.raises(ValueError, match="depth"):
        TSMResNet(depth=101)
    with pytest.raises(ValueError, match="shift_div"):
        TSMResNet(shift_div=1)


def test_width_and_stem_pool_options():
    from lofi.models.encoders.tsm_resnet import tsm_resnet18_slim

    slim = tsm_resnet18_slim()
    assert slim.feature_dim == 128 and slim.conv1.out_channels == 16 and slim.layer4[0].conv1.out_channels == 128
    full = tsm_resnet18()
    assert sum(p.numel() for p in slim.parameters()) < sum(p.numel() for p in full.parameters()) / 12
    # the same parameters with and without the stem's max-pool; without it, layer 1 sees twice the resolution
    no_pool = tsm_resnet18_slim(stem_pool=False)
    assert [n for n, _ in no_pool.named_parameters()] == [n for n, _ in slim.named_parameters()]
    x = torch.randn(1, 3, 64, 64)
    assert slim._stem(x).shape[-1] == 16 and no_pool._stem(x).shape[-1] == 32
    frames = torch.randn(2, 3, 2, 3, 64, 64)  # [B, T, F, 3, H, W]
    assert no_pool(frames).shape == slim(frames).shape == (2, 128, 3)
    with pytest.raises(ValueError, match="width"):
        TSMResNet(width=0.3)
