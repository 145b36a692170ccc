"""Sigmoid focal loss and 1-D DIoU loss against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from lofi.models.losses import diou_loss_1d, sigmoid_focal_loss


def test_focal_loss_hand_computed_values():
    logits = torch.tensor([0.0, 0.0, math.log(3.0), math.log(3.0)])  # p = 0.5, 0.5, 0.75, 0.75
    targets = torch.tensor([1.0, 0.0, 1.0, 0.0])
    expected = torch.tensor([
        0.25 * 0.5 ** 2 * math.log(2.0),  # positive, p_t = 0.5
        0.75 * 0.5 ** 2 * math.log(2.0),  # negative, p_t = 0.5
        0.25 * 0.25 ** 2 * -math.log(0.75),  # positive, p_t = 0.75
        0.75 * 0.75 ** 2 * -math.log(0.25),  # negative, p_t = 0.25
    ])
    loss = sigmoid_focal_loss(logits, targets)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets, reduction="sum"), expected.sum())
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets, reduction="mean"), expected.mean())


def test_focal_loss_without_alpha_and_gamma_is_binary_cross_entropy():
    logits, targets = torch.randn(3, 5), torch.rand(3, 5)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets, alpha=-1, gamma=0.0), expected)


def test_focal_loss_empty_and_bad_inputs():
    assert sigmoid_focal_loss(torch.zeros(0, 3), torch.zeros(0, 3), reduction="mean").item() == 0.0
    with pytest.raises(ValueError, match="same shape"):
        sigmoid_focal_loss(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="reduction"):
        sigmoid_focal_loss(torch.zeros(2), torch.zeros(2), reduction="avg")


def test_diou_loss_hand_computed_values():
    pred = torch.tensor([[0.0, 2.0], [0.0, 1.0], [1.0, 3.0], [0.0, 4.0]])
    target = torch.tensor([[1.0, 4.0], [2.0, 3.0], [1.0, 3.0], [1.0, 3.0]])
    expected = torch.tensor([
        1 - 1 / 4 + (1.5 / 4) ** 2,  # overlap 1, union 4; centres 1 and 2.5, enclosing 4
        1 - 0 + (2 / 3) ** 2,  # disjoint: centres 0.5 and 2.5, enclosing 3
        0.0,  # identical
        1 - 2 / 4 + 0.0,  # nested, same centre
    ])
    torch.testing.assert_close(diou_loss_1d(pred, target), expected)
    torch.testing.assert_close(diou_loss_1d(pred, target, reduction="sum"), expected.sum())


def test_diou_loss_gradient_pulls_disjoint_segments_together():
    pred = torch.tensor([[0.0, 1.0]], requires_grad=True)
    diou_loss_1d(pred, torch.tensor([[2.0, 3.0]])).sum().backward()
    assert pred.grad.sum() < 0  # gradient descent moves the segment towards the target (to the right)
    assert pred.grad[0, 1] < 0  # and its end onto the target


def test_diou_loss_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        diou_loss_1d(torch.zeros(3, 2), torch.zeros(3))
