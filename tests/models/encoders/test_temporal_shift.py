"""The temporal shift, checked value by value, and its residual placement inside the TSM blocks."""

from __future__ import annotations

import pytest
import torch

from lofi.models.encoders.resnet_blocks import BasicBlock, Bottleneck, temporal_shift


def _frames(num_snippets: int, num_frames: int, channels: int) -> torch.Tensor:
    """``[N*F, C, 1, 1]`` with value ``100 * snippet + 10 * frame + channel + 1`` (never 0)."""
    n, f, c = torch.meshgrid(torch.arange(num_snippets), torch.arange(num_frames), torch.arange(channels),
                             indexing="ij")
    return (100 * n + 10 * f + c + 1).float().reshape(num_snippets * num_frames, channels, 1, 1)


def test_shift_moves_one_fold_each_way_with_zero_padding():
    x = _frames(1, 3, 8)  # fold = 8 // 4 = 2
    out = temporal_shift(x, num_frames=3, shift_div=4)[:, :, 0, 0]  # [F, C]
    expected = torch.tensor([
        # ch 0-1: next frame   ch 2-3: previous frame   ch 4-7: untouched
        [11.0, 12.0, 0.0, 0.0, 5.0, 6.0, 7.0, 8.0],  # frame 0
        [21.0, 22.0, 3.0, 4.0, 15.0, 16.0, 17.0, 18.0],  # frame 1
        [0.0, 0.0, 13.0, 14.0, 25.0, 26.0, 27.0, 28.0],  # frame 2
    ])
    assert torch.equal(out, expected)


def test_shift_stays_within_each_snippet():
    x = _frames(2, 2, 4)  # fold = 4 // 4 = 1
    out = temporal_shift(x, num_frames=2, shift_div=4)[:, :, 0, 0]  # [N*F, C]
    expected = torch.tensor([
        [11.0, 0.0, 3.0, 4.0],  # snippet 0, frame 0
        [0.0, 2.0, 13.0, 14.0],  # snippet 0, frame 1
        [111.0, 0.0, 103.0, 104.0],  # snippet 1, frame 0: nothing from snippet 0
        [0.0, 102.0, 113.0, 114.0],  # snippet 1, frame 1: nothing from snippet 2's start
    ])
    assert torch.equal(out, expected)


def test_default_shift_div_moves_one_eighth_each_way():
    x = _frames(1, 2, 16)
    out = temporal_shift(x, num_frames=2)
    changed = (out != x)[:, :, 0, 0].any(dim=0)  # [C]
    assert changed.tolist() == [True] * 4 + [False] * 12


def test_single_frame_and_shift_div_zero_are_identity():
    x = _frames(3, 1, 8)
    assert temporal_shift(x, num_frames=1) is x
    y = _frames(1, 4, 8)
    assert temporal_shift(y, num_frames=4, shift_div=0) is y


def test_shift_keeps_channels_last_and_values():
    x = torch.randn(6, 16, 3, 5)
    out = temporal_shift(x.contiguous(memory_format=torch.channels_last), num_frames=3)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out, temporal_shift(x, num_frames=3))


def test_shift_gradient_is_the_reverse_shift():
    x = _frames(1, 3, 8).requires_grad_(True)
    weights = torch.randn(3, 8, 1, 1)
    (temporal_shift(x, num_frames=3, shift_div=4) * weights).sum().backward()
    expected = torch.zeros(3, 8, 1, 1)
    expected[1:, :2] = weights[:-1, :2]  # frame f's value went to frame f - 1
    expected[:-1, 2:4] = weights[1:, 2:4]  # frame f's value went to frame f + 1
    expected[:, 4:] = weights[:, 4:]
    assert torch.equal(x.grad, expected)


def test_shift_rejects_a_partial_snippet():
    with pytest.raises(ValueError, match="whole number of snippets"):
        temporal_shift(torch.zeros(5, 8, 1, 1), num_frames=2)


@pytest.mark.parametrize("block_cls", [BasicBlock, Bottleneck])
def test_shift_is_on_the_residual_branch_only(block_cls):
    torch.manual_seed(0)
    block = block_cls(in_channels=16, planes=16, stride=2, shift_div=8).eval()
    x = torch.randn(2 * 3, 16, 8, 8)  # 2 snippets of 3 frames
    shifted = temporal_shift(x, num_frames=3, shift_div=8)
    branch = block.relu(block.bn1(block.conv1(shifted)))
    if block_cls is Bottleneck:
        branch = block.bn3(block.conv3(block.relu(block.bn2(block.conv2(branch)))))
    else:
        branch = block.bn2(block.conv2(branch))
    expected = block.relu(branch + block.downsample(x))  # the shortcut sees the unshifted input
    with torch.no_grad():
        assert torch.allclose(block(x, num_frames=3), expected, atol=1e-6)
