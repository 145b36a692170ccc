"""Building blocks of the ActionFormer head: channel LayerNorm, local-window self-attention, transformer blocks.

All blocks take and return ``[B, D, T]`` sequences. A block with ``stride=2`` halves the length to ``ceil(T / 2)``:
output position ``i`` is centred on input position ``2 * i`` (kernel 3, padding 1), for any T.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ChannelNorm(nn.Module):
    """LayerNorm over the channels of a ``[B, D, T]`` sequence (each time step normalised on its own)."""

    def __init__(self, *, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)  # [B, D, T]


def local_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, window_size: int) -> torch.Tensor:
    """Self-attention of each position over the ``window_size`` (odd) positions centred on it.

    ``q``, ``k``, ``v`` are ``[B, Nh, T, Dh]``; keys beyond either end of the sequence are masked out, so T is free.
    Vectorised with a sliding-window view: memory ``O(T * window_size)``, not ``O(T ** 2)``.
    """
    seq_len, head_dim = q.shape[2], q.shape[3]
    half = window_size // 2
    k_win = F.pad(k, (0, 0, half, half)).unfold(2, window_size, 1)  # [B, Nh, T, Dh, Nw]
    v_win = F.pad(v, (0, 0, half, half)).unfold(2, window_size, 1)  # [B, Nh, T, Dh, Nw]
    scores = torch.einsum("bhtd,bhtdw->bhtw", q, k_win) / math.sqrt(head_dim)  # [B, Nh, T, Nw]
    key_idx = torch.arange(seq_len, device=q.device)[:, None] + torch.arange(-half, half + 1, device=q.device)
    outside = (key_idx < 0) | (key_idx >= seq_len)  # [T, Nw]; never a whole row: a position sees itself
    attn = scores.masked_fill(outside, float("-inf")).softmax(dim=-1)  # [B, Nh, T, Nw]
    return torch.einsum("bhtw,bhtdw->bhtd", attn, v_win)  # [B, Nh, T, Dh]


class LocalSelfAttention(nn.Module):
    """Multi-head local-window self-attention on ``[B, D, T]``, optionally strided (``stride=2`` downsamples).

    As in ActionFormer, queries, keys and values first go through a depthwise conv (kernel 3, the given stride)
    and a LayerNorm, then 1x1 projections; attention is computed at the output resolution.
    """

    def __init__(self, *, dim: int, num_heads: int, window_size: int, stride: int = 1,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"LocalSelfAttention: dim {dim} is not divisible by num_heads {num_heads}")
        if window_size < 1 or window_size % 2 == 0:
            raise ValueError(f"LocalSelfAttention: window_size must be odd and >= 1, got {window_size}")
        if stride not in (1, 2):
            raise ValueError(f"LocalSelfAttention: stride must be 1 or 2, got {stride}")
        self.num_heads, self.window_size = num_heads, window_size
        self.convs = nn.ModuleList(
            nn.Conv1d(dim, dim, 3, stride=stride, padding=1, groups=dim, bias=False) for _ in range(3))
        self.norms = nn.ModuleList(ChannelNorm(dim=dim) for _ in range(3))
        self.projs = nn.ModuleList(nn.Conv1d(dim, dim, 1) for _ in range(3))
        self.out = nn.Conv1d(dim, dim, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, dim = x.shape[:2]
        q, k, v = (proj(norm(conv(x))) for conv, norm, proj in zip(self.convs, self.norms, self.projs))  # [B, D, T']
        heads = [t.reshape(batch, self.num_heads, dim // self.num_heads, -1).transpose(2, 3)
                 for t in (q, k, v)]  # 3 x [B, Nh, T', Dh]
        out = local_attention(*heads, window_size=self.window_size)  # [B, Nh, T', Dh]
        out = out.transpose(2, 3).reshape(batch, dim, -1)  # [B, D, T']
        return self.dropout(self.out(out))


class TransformerBlock(nn.Module):
    """Pre-norm transformer block on ``[B, D, T]``: local attention then a 1x1-conv MLP, both residual.

    With ``stride=2`` the residual path is max-pooled (kernel 3, stride 2, padding 1) to the attention's length.
    """

    def __init__(self, *, dim: int, num_heads: int, window_size: int, stride: int = 1, mlp_ratio: int = 4,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.attn_norm = ChannelNorm(dim=dim)
        self.attn = LocalSelfAttention(dim=dim, num_heads=num_heads, window_size=window_size, stride=stride,
                                       dropout=dropout)
        self.skip = nn.MaxPool1d(3, stride=2, padding=1) if stride == 2 else nn.Identity()
        self.mlp_norm = ChannelNorm(dim=dim)
        self.mlp = nn.Sequential(nn.Conv1d(dim, mlp_ratio * dim, 1), nn.GELU(), nn.Dropout(dropout),
                                 nn.Conv1d(mlp_ratio * dim, dim, 1), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.skip(x) + self.attn(self.attn_norm(x))  # [B, D, T] -> [B, D, T']
        return x + self.mlp(self.mlp_norm(x))  # [B, D, T']


class ConvStack(nn.Module):
    """``num_layers`` of (conv kernel 3, LayerNorm, ReLU) on ``[B, D, T]``, length-preserving."""

    def __init__(self, *, in_dim: int, out_dim: int, num_layers: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(num_layers):
            layers += [nn.Conv1d(in_dim if i == 0 else out_dim, out_dim, 3, padding=1, bias=False),
                       ChannelNorm(dim=out_dim), nn.ReLU()]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)  # [B, D_in, T] -> [B, D_out, T]
