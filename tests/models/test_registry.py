"""Every registered encoder and head, timm-style: shapes, finite outputs, gradients everywhere, save/load."""

from __future__ import annotations

import io

import pytest
import torch

from lofi.cli import main
from lofi.core.targets import SegmentTargets
from lofi.models import Detector, count_parameters, create_encoder, create_head, create_model, list_models

ENCODERS = [e.name for e in list_models("encoder")]
HEADS = [e.name for e in list_models("head")]
B, T, F, SIZE = 2, 4, 2, 32
NUM_CLASSES = 3


def _targets() -> SegmentTargets:
    return SegmentTargets(segments=[torch.tensor([[0.1, 0.4], [0.5, 0.9]]), torch.zeros(0, 2)],
                          labels=[torch.tensor([0, 2]), torch.zeros(0, dtype=torch.long)])


@pytest.mark.parametrize("name", ENCODERS)
def test_encoder_forward_shape_and_gradients(name):
    torch.manual_seed(0)
    encoder = create_encoder(name)
    frames = torch.randn(B, T, F, 3, SIZE, SIZE)
    features = encoder(frames)  # [B, D, T]
    assert features.shape == (B, encoder.feature_dim, T)
    assert torch.isfinite(features).all()
    features.square().mean().backward()
    missing = [n for n, p in encoder.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient for {missing[:5]}"


@pytest.mark.parametrize("name", HEADS)
@pytest.mark.parametrize("num_snippets", [16, 25])
def test_head_outputs_loss_and_gradients(name, num_snippets):
    torch.manual_seed(0)
    head = create_head(name, in_dim=32, num_classes=NUM_CLASSES, num_snippets=num_snippets)
    features = torch.randn(B, 32, num_snippets, requires_grad=True)
    outputs = head(features)
    assert outputs and all(torch.isfinite(v).all() for v in outputs.values() if v.is_floating_point())
    assert all(v.shape[0] == B for k, v in outputs.items() if k != "points")
    losses = head.loss(outputs, _targets())
    assert "loss" in losses and losses["loss"].dim() == 0 and torch.isfinite(losses["loss"])
    losses["loss"].backward()
    missing = [n for n, p in head.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient for {missing[:5]}"
    assert features.grad is not None and features.grad.abs().sum() > 0  # the encoder is trained through the head


@pytest.mark.parametrize("head", HEADS)
def test_detector_trains_the_encoder_through_the_localization_loss(head):
    torch.manual_seed(0)
    model = create_model(encoder="tsm_resnet18", head=head, num_classes=NUM_CLASSES, num_snippets=T,
                         encoder_options={"frozen_stages": 2})
    frames = torch.randint(0, 256, (B, T, F, 3, SIZE, SIZE), dtype=torch.uint8)
    loss = model.loss(model(frames), _targets())["loss"]
    loss.backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert all(p.grad is not None for _, p in trainable), [n for n, p in trainable if p.grad is None][:5]
    frozen = [(n, p) for n, p in model.encoder.named_parameters() if not p.requires_grad]
    assert frozen and all(p.grad is None for _, p in frozen)
    assert any(n.startswith("encoder.layer4.") for n, _ in trainable)  # the late stages learn from the TAL loss


@pytest.mark.parametrize("head", HEADS)
def test_state_dict_round_trip_gives_identical_outputs(head):
    torch.manual_seed(0)
    kwargs = dict(encoder="tsm_resnet18", head=head, num_classes=NUM_CLASSES, num_snippets=T)
    model = create_model(**kwargs).eval()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    torch.manual_seed(1)
    again = create_model(**kwargs).eval()
    again.load_state_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=True))
    frames = torch.randint(0, 256, (1, T, F, 3, SIZE, SIZE), dtype=torch.uint8)
    with torch.no_grad():
        first, second = model(frames), again(frames)
    assert first.keys() == second.keys()
    for key in first:
        torch.testing.assert_close(first[key], second[key], rtol=0, atol=0)


def test_detector_rejects_wrong_frame_layout():
    model = Detector(encoder=create_encoder("tsm_resnet18"),
                     head=create_head(HEADS[0], in_dim=512, num_classes=2, num_snippets=T))
    with pytest.raises(ValueError, match=r"\[B, T, F, 3, H, W\]"):
        model(torch.zeros(T, F, 3, SIZE, SIZE, dtype=torch.uint8))


def test_unknown_names_list_the_registered_ones():
    with pytest.raises(ValueError, match="registered encoders: tsm_resnet18"):
        create_encoder("resnet9000")
    with pytest.raises(ValueError, match="registered heads: gtad"):
        create_head("tsm_resnet18", in_dim=8, num_classes=2, num_snippets=8)


def test_lofi_models_lists_everything_with_parameter_counts(capsys):
    assert main(["models", "--num-classes", "20"]) == 0
    out = capsys.readouterr().out
    for name in ENCODERS + HEADS:
        assert name in out
    row = next(line for line in out.splitlines() if line.strip().startswith("tsm_resnet18"))
    assert "11.18M" in row and " 512 " in row
    assert count_parameters(create_encoder("tsm_resnet18")) == 11_176_512
