"""Candidate grids of the proposal-map heads (G-TAD start-end, BMN duration-start), shared by the heads' targets
and the decoders in ``lofi.postprocess``.

Grid convention (used by the targets, both heads and both decoders): a window of ``T`` snippets spans [0, 1];
snippet ``t`` covers ``[t/T, (t+1)/T]`` and its feature sits at its centre. A candidate proposal is a pair of
snippet indices ``(ts, te)`` with ``0 <= ts <= te < T``; it covers ``[ts/T, (te+1)/T]``: it starts where snippet
``ts`` starts and ends where snippet ``te`` ends (so ``1 <= te + 1 - ts <= T`` snippets long, and the window edges
0 and 1 are reachable exactly). ``start[b, t]`` is the probability that an action starts at ``t/T``;
``end[b, t]`` that one ends at ``(t+1)/T``.

Two map layouts hold one value per candidate:

- start-end (G-TAD): ``[T, T]`` indexed ``[ts, te]``; valid on the upper triangle with the diagonal, ``te >= ts``
  (and ``te - ts < max_duration`` when limited);
- duration-start (BMN): ``[Dmax, T]`` indexed ``[d, ts]`` with ``te = ts + d`` (``d + 1`` snippets); valid where
  ``ts + d < T``.
"""

from __future__ import annotations

import torch


def scaled_max_duration(max_duration: int | None, num_snippets: int, length: int) -> int | None:
    """A ``max_duration`` counted in snippets at ``num_snippets``, at a window of ``length`` snippets.

    The same fraction of the window, rounded up (a proposal of ``max_duration / num_snippets`` of the window stays a
    candidate) and clipped to ``[1, length]``: ``ceil(max_duration * length / num_snippets)``. Exact (integer
    arithmetic) and the identity at ``length == num_snippets``; None (no limit: the window length) stays None.
    E.g. 64 at 100 snippets -> 16 at 25, 32 at 50, 128 at 200.
    """
    if num_snippets < 1 or length < 1:
        raise ValueError(f"scaled_max_duration: need num_snippets >= 1 and length >= 1, got {num_snippets}, {length}")
    if max_duration is None:
        return None
    if not 1 <= max_duration <= num_snippets:
        raise ValueError(f"max_duration must be in [1, num_snippets={num_snippets}] snippets, got {max_duration}")
    return max(1, min(length, -(-max_duration * length // num_snippets)))


def start_end_valid_mask(num_snippets: int, *, max_duration: int | None = None) -> torch.Tensor:
    """``[T, T]`` bool: ``[ts, te]`` is a candidate when ``ts <= te`` and ``te - ts < max_duration``."""
    _check_grid(num_snippets, max_duration)
    t = torch.arange(num_snippets)
    length = t[None, :] - t[:, None] + 1  # [T, T] snippets spanned by [ts, te]
    limit = num_snippets if max_duration is None else max_duration
    return (length >= 1) & (length <= limit)


def start_end_segments(num_snippets: int) -> torch.Tensor:
    """``[T, T, 2]`` float: cell ``[ts, te]`` -> ``(ts/T, (te+1)/T)`` (meaningful where the cell is valid)."""
    t = torch.arange(num_snippets, dtype=torch.float32)
    starts = (t / num_snippets)[:, None].expand(num_snippets, num_snippets)  # [T, T]
    ends = ((t + 1) / num_snippets)[None, :].expand(num_snippets, num_snippets)  # [T, T]
    return torch.stack([starts, ends], dim=-1)


def duration_start_valid_mask(num_snippets: int, max_duration: int) -> torch.Tensor:
    """``[Dmax, T]`` bool: ``[d, ts]`` is a candidate when ``ts + d < T`` (it ends inside the window)."""
    _check_grid(num_snippets, max_duration)
    d = torch.arange(max_duration)[:, None]  # [Dmax, 1]
    t = torch.arange(num_snippets)[None, :]  # [1, T]
    return t + d < num_snippets


def duration_start_segments(num_snippets: int, max_duration: int) -> torch.Tensor:
    """``[Dmax, T, 2]`` float: cell ``[d, ts]`` -> ``(ts/T, (ts+d+1)/T)``."""
    d = torch.arange(max_duration, dtype=torch.float32)[:, None]  # [Dmax, 1]
    t = torch.arange(num_snippets, dtype=torch.float32)[None, :]  # [1, T]
    starts = (t / num_snippets).expand(max_duration, num_snippets)  # [Dmax, T]
    ends = (t + d + 1) / num_snippets  # [Dmax, T]
    return torch.stack([starts, ends], dim=-1)


def duration_start_to_start_end(maps: torch.Tensor) -> torch.Tensor:
    """Re-index duration-start maps ``[..., Dmax, T]`` to start-end maps ``[..., T, T]`` (cells off the grid -> 0)."""
    d_max, t_max = maps.shape[-2:]
    d = torch.arange(d_max, device=maps.device)[:, None]  # [Dmax, 1]
    ts = torch.arange(t_max, device=maps.device)[None, :].expand(d_max, t_max)  # [Dmax, T]
    te = ts + d  # [Dmax, T]
    keep = te < t_max  # [Dmax, T]
    flat_index = (ts * t_max + te)[keep]  # [K] cells of the start-end map
    out = maps.new_zeros(*maps.shape[:-2], t_max * t_max)  # [..., T*T]
    out[..., flat_index] = maps[..., keep]
    return out.view(*maps.shape[:-2], t_max, t_max)


def _check_grid(num_snippets: int, max_duration: int | None) -> None:
    if num_snippets < 1:
        raise ValueError(f"num_snippets must be >= 1, got {num_snippets}")
    if max_duration is not None and not 1 <= max_duration <= num_snippets:
        raise ValueError(f"max_duration must be in [1, num_snippets={num_snippets}] snippets, got {max_duration}")
