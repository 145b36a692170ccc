"""Loading torchvision and official-TSM-release checkpoints: identical outputs, clear reports, clear failures."""

from __future__ import annotations

import re

import pytest
import torch

from lofi.models.encoders.checkpoints import (LoadReport, load_torchvision_r2plus1d, load_torchvision_resnet,
                                              load_tsm_checkpoint)
from lofi.models.encoders.r2plus1d import r2plus1d_18
from lofi.models.encoders.tsm_resnet import tsm_resnet18, tsm_resnet34

FRAMES = (1, 2, 2, 3, 32, 32)  # [B, T, F, 3, H, W]


def _trained_like(builder, seed: int = 1):
    """An encoder whose weights and BatchNorm statistics are all non-default."""
    torch.manual_seed(seed)
    encoder = builder()
    with torch.no_grad():
        for name, tensor in encoder.state_dict().items():
            if name.endswith("running_var"):
                tensor.uniform_(0.5, 2.0)
            elif name.endswith(("running_mean", "bias")):
                tensor.normal_(0.0, 0.1)
            elif name.endswith("num_batches_tracked"):
                tensor.fill_(7)
    return encoder.eval()


def _torchvision_layout(encoder, num_classes: int = 10) -> dict[str, torch.Tensor]:
    state = dict(encoder.state_dict())
    state["fc.weight"] = torch.randn(num_classes, encoder.feature_dim)
    state["fc.bias"] = torch.randn(num_classes)
    return state


def _tsm_release_layout(encoder, num_classes: int = 10) -> dict:
    """How mit-han-lab/temporal-shift-module saves a TSN(base_model=resnet, shift_place='blockres') model wrapped
    in DataParallel: ``module.base_model.`` prefix, shifted convs as ``conv1.net``, classifier ``new_fc``."""
    state = {}
    for key, value in encoder.state_dict().items():
        key = re.sub(r"^(layer\d\.\d+\.conv1)\.", r"\1.net.", key)
        state[f"module.base_model.{key}"] = value.clone()
    state["module.new_fc.weight"] = torch.randn(num_classes, encoder.feature_dim)
    state["module.new_fc.bias"] = torch.randn(num_classes)
    return {"epoch": 3, "arch": "resnet18", "best_prec1": 71.2, "state_dict": state}


def _same_outputs(a, b) -> bool:
    frames = torch.randn(FRAMES)
    with torch.no_grad():
        return torch.equal(a.eval()(frames), b.eval()(frames))


def test_torchvision_resnet_file_loads_exactly(tmp_path, capsys):
    source = _trained_like(tsm_resnet18)
    path = tmp_path / "resnet18.pth"
    torch.save(_torchvision_layout(source), path)
    fresh = tsm_resnet18()
    report = load_torchvision_resnet(fresh, path)
    assert isinstance(report, LoadReport) and report.complete
    assert report.ignored == ("fc.weight", "fc.bias")
    assert len(report.loaded) == 120 and report.missing == () and report.unexpected == ()
    assert _same_outputs(source, fresh)
    assert capsys.readouterr().out == ""


def test_tsm_release_checkpoint_loads_exactly(tmp_path, capsys):
    source = _trained_like(tsm_resnet18)
    checkpoint = _tsm_release_layout(source)
    assert "module.base_model.layer3.1.conv1.net.weight" in checkpoint["state_dict"]
    path = tmp_path / "TSM_kinetics_RGB_resnet18_shift8_blockres_avg_segment8_e50.pth"
    torch.save(checkpoint, path)
    for target in (path, checkpoint, checkpoint["state_dict"]):
        fresh = tsm_resnet18()
        report = load_tsm_checkpoint(fresh, target)
        assert report.complete and len(report.loaded) == 120
        assert report.ignored == ("module.new_fc.weight", "module.new_fc.bias")
        assert _same_outputs(source, fresh)
    assert capsys.readouterr().out == ""


def test_tsm_release_with_channels_last_model(tmp_path):
    source = _trained_like(tsm_resnet18)
    fresh = tsm_resnet18(channels_last=True)
    load_tsm_checkpoint(fresh, _tsm_release_layout(source))
    assert fresh.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    frames = torch.randn(FRAMES)
    with torch.no_grad():
        assert torch.allclose(source(frames), fresh.eval()(frames), atol=1e-4)


def test_torchvision_r2plus1d_loads_exactly(tmp_path):
    source = _trained_like(r2plus1d_18)
    path = tmp_path / "r2plus1d_18.pth"
    torch.save(_torchvision_layout(source, num_classes=400), path)
    fresh = r2plus1d_18()
    report = load_torchvision_r2plus1d(fresh, path)
    assert report.complete and report.ignored == ("fc.weight", "fc.bias")
    assert _same_outputs(source, fresh)


def test_shape_mismatch_names_every_tensor_and_loads_nothing():
    state = _torchvision_layout(tsm_resnet18())
    state["conv1.weight"] = torch.zeros(64, 3, 5, 5)
    state["layer4.1.bn2.running_var"] = torch.ones(7)
    fresh = tsm_resnet18()
    before = {k: v.clone() for k, v in fresh.state_dict().items()}
    with pytest.raises(ValueError) as error:
        load_torchvision_resnet(fresh, state)
    message = str(error.value)
    assert "2 tensor shape mismatch" in message
    assert "conv1.weight (checkpoint conv1.weight): checkpoint (64, 3, 5, 5) vs model (64, 3, 7, 7)" in message
    assert "layer4.1.bn2.running_var" in message and "(7,)" in message and "(512,)" in message
    assert all(torch.equal(before[k], v) for k, v in fresh.state_dict().items())


def test_tsm_shape_mismatch_names_the_checkpoint_key():
    checkpoint = _tsm_release_layout(tsm_resnet18())
    checkpoint["state_dict"]["module.base_model.layer1.0.conv1.net.weight"] = torch.zeros(64, 64, 1, 1)
    expected = ("layer1.0.conv1.weight (checkpoint module.base_model.layer1.0.conv1.net.weight): "
                "checkpoint (64, 64, 1, 1) vs model (64, 64, 3, 3)")
    with pytest.raises(ValueError, match=re.escape(expected)):
        load_tsm_checkpoint(tsm_resnet18(), checkpoint)


def test_missing_and_unexpected_keys_are_reported_by_name():
    state = _torchvision_layout(tsm_resnet18())
    del state["layer1.0.conv1.weight"]
    state["layer9.0.conv1.weight"] = torch.zeros(1)
    state["layer1.0.bn1.num_batches_tracked"] = torch.tensor(3)  # present: loaded as usual
    del state["layer2.0.bn1.num_batches_tracked"]  # absent from old checkpoints: not reported
    report = load_torchvision_resnet(tsm_resnet18(), state)
    assert not report.complete
    assert report.missing == ("layer1.0.conv1.weight",)
    assert report.unexpected == ("layer9.0.conv1.weight",)
    text = str(report)
    assert "missing from the checkpoint (1): layer1.0.conv1.weight" in text
    assert "unexpected in the checkpoint (1): layer9.0.conv1.weight" in text
    with pytest.raises(ValueError, match=r"layer1\.0\.conv1\.weight[\s\S]*layer9\.0\.conv1\.weight"):
        load_torchvision_resnet(tsm_resnet18(), state, strict=True)


def test_tsm_keys_outside_the_base_model_are_unexpected():
    checkpoint = _tsm_release_layout(tsm_resnet18())
    checkpoint["state_dict"]["module.consensus.weight"] = torch.zeros(1)
    report = load_tsm_checkpoint(tsm_resnet18(), checkpoint)
    assert report.unexpected == ("module.consensus.weight",) and report.missing == ()


def test_a_resnet_checkpoint_of_another_depth_fails_on_shapes():
    with pytest.raises(ValueError, match="shape mismatch"):
        load_torchvision_resnet(r2plus1d_18(), _torchvision_layout(tsm_resnet18()))


@pytest.mark.parametrize("layout", ["torchvision", "tsm_release", "lofi_detector"])
def test_create_model_loads_encoder_weights_in_any_published_layout(tmp_path, layout):
    from lofi.models import create_model

    source = _trained_like(tsm_resnet18)
    if layout == "torchvision":
        state = _torchvision_layout(source)
    elif layout == "tsm_release":
        state = _tsm_release_layout(source)
    else:  # a whole detector's state dict: the encoder part is taken
        model = create_model(encoder="tsm_resnet18", head="actionformer", num_classes=3, num_snippets=4)
        model.encoder.load_state_dict(source.state_dict())
        state = model.state_dict()
    path = tmp_path / f"{layout}.pth"
    torch.save(state, path)
    loaded = create_model(encoder="tsm_resnet18", head="actionformer", num_classes=3, num_snippets=4,
                          encoder_weights=path)
    assert _same_outputs(loaded.encoder, source)


def test_create_model_refuses_weights_of_another_depth(tmp_path):
    from lofi.models import create_model

    path = tmp_path / "r34.pth"
    torch.save(_torchvision_layout(tsm_resnet34()), path)
    with pytest.raises(ValueError, match="layer1.2.conv1.weight|strict load failed"):
        create_model(encoder="tsm_resnet18", head="actionformer", num_classes=3, num_snippets=4, encoder_weights=path)
