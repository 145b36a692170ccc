"""Partial snippet back-propagation (ETAD: back-propagate through a random share of the snippets; TALLFormer:
re-run a share of the chunks): every snippet's features are computed with the same weights in the same step, but
only the chosen snippets' with gradients.

Encoders compute each snippet on its own (TSM shifts across the ``F`` frames inside a snippet; R(2+1)D convolves
over them), except through BatchNorm in train mode, whose batch statistics span every frame of the batch. So::

    frames [B, T, F, 3, H, W], grad_mask [B, T]
        |-- the other R snippets, in batches of <= K --(no_grad)-->  [R, D] -.
        '-- the K chosen snippets, as one batch      --(grad)----->  [K, D] -+--> features [B, D, T]

The encoder's activations kept for backward are those of the K chosen snippets only (with ``checkpoint_stages``,
its stage inputs), so they scale with the share; the no-grad batches are no larger than the chosen one, so their
transient activations stay below the chosen forward's.

BatchNorm: in eval mode (``frozen_bn``, frozen stages, ``.eval()``) the result is exact: the features and the
gradients of every parameter are those of a full forward whose non-chosen features are detached. In train mode
each batch is normalised with its own batch statistics (sub-batches of the same videos, close to but not the
full batch's), and the running statistics are updated once per step, by the chosen group: the no-grad pass puts
them back (:func:`~lofi.models.encoders.levers.bn_stats_restored`). ETAD's end-to-end setting keeps BatchNorm in
eval mode (OpenTAD's ``norm_eval=True``).
"""

from __future__ import annotations

from typing import Callable, Literal

import numpy as np
import torch
from torch import nn

from lofi.models.encoders.levers import bn_stats_restored

#: How the snippets that carry gradients are drawn.
PartialMode = Literal["random", "chunks"]


def step_seed(seed: int, *, global_step: int, accum_index: int = 0, rank: int = 0) -> int:
    """A 63-bit seed from the run's ``seed`` and where the micro-batch sits: a resumed run draws the same masks."""
    state = np.random.SeedSequence([seed, global_step, accum_index, rank]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


def draw_grad_mask(*, batch_size: int, num_snippets: int, share: float, mode: PartialMode = "random",
                   chunk_snippets: int = 4, seed: int = 0) -> torch.Tensor:
    """The snippets that carry gradients, ``[B, T]`` bool (CPU), drawn independently for each video from ``seed``.

    ``random``: ``round(share * T)`` snippets of each video. ``chunks``: the ``T`` snippets are cut into
    consecutive chunks of ``chunk_snippets`` (the last may be shorter) and ``round(share * num_chunks)`` of them are
    chosen. Each video gets at least one snippet (chunk); ``share == 1`` chooses all.
    """
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], got {share!r}")
    if mode not in ("random", "chunks"):
        raise ValueError(f"mode must be 'random' or 'chunks', got {mode!r}")
    if chunk_snippets < 1:
        raise ValueError(f"chunk_snippets must be >= 1, got {chunk_snippets!r}")
    generator = torch.Generator().manual_seed(seed)
    mask = torch.zeros(batch_size, num_snippets, dtype=torch.bool)  # [B, T]
    size = 1 if mode == "random" else chunk_snippets
    num_units = -(-num_snippets // size)  # snippets or chunks per video
    chosen = min(num_units, max(1, int(share * num_units + 0.5)))
    for b in range(batch_size):
        for unit in torch.randperm(num_units, generator=generator)[:chosen].tolist():
            mask[b, unit * size:(unit + 1) * size] = True
    return mask


def partial_backprop_features(encoder: nn.Module, frames: torch.Tensor, grad_mask: torch.Tensor, *,
                              prepare: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """``encoder(prepare(frames))`` ``[B, D, T]``, with gradients only through the snippets of ``grad_mask``.

    ``frames`` is ``[B, T, ...]`` (``[B, T, F, 3, H, W]`` for lofi's encoders), ``grad_mask`` ``[B, T]`` bool with
    at least one snippet per video; ``prepare`` (e.g. uint8 normalisation) runs on each group, so the full batch is
    never converted at once. The other snippets run first under ``torch.no_grad()``, in batches of at most as many
    snippets as are chosen, then the chosen ones as one batch. An all-true mask, or no grad mode, is the plain
    forward. See the module docstring for BatchNorm.
    """
    b, t = frames.shape[:2]
    if grad_mask.shape != (b, t) or grad_mask.dtype != torch.bool:
        raise ValueError(f"grad_mask must be bool [B, T] = {[b, t]}, got {grad_mask.dtype} {list(grad_mask.shape)}")
    if not bool(grad_mask.any(dim=1).all()):
        raise ValueError("grad_mask must choose at least one snippet of every video")

    def encode(x: torch.Tensor) -> torch.Tensor:
        return encoder(prepare(x) if prepare is not None else x)

    if bool(grad_mask.all()) or not torch.is_grad_enabled():
        return encode(frames)  # [B, D, T]
    flat_mask = grad_mask.reshape(b * t).to(frames.device)  # [B*T]
    chosen_idx = flat_mask.nonzero().squeeze(1)  # [K]
    other_idx = (~flat_mask).nonzero().squeeze(1)  # [R]
    snippets = frames.reshape(b * t, 1, *frames.shape[2:])  # [B*T, 1, F, 3, H, W]: each snippet a video of one
    with torch.no_grad(), bn_stats_restored([encoder]):  # in pieces of at most K: no larger transient peak
        other = torch.cat([encode(snippets.index_select(0, piece))[:, :, 0]
                           for piece in other_idx.split(len(chosen_idx))])  # [R, D]
    chosen = encode(snippets.index_select(0, chosen_idx))[:, :, 0]  # [K, D]
    flat = chosen.new_zeros(b * t, chosen.shape[1])  # [B*T, D]
    flat = flat.index_copy(0, other_idx, other.to(chosen.dtype)).index_copy(0, chosen_idx, chosen)
    return flat.view(b, t, -1).transpose(1, 2)  # [B, D, T]
