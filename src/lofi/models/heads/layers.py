"""Small layers shared by the heads."""

from __future__ import annotations

import torch
from torch import nn

from lofi.models.heads.proposal_maps import scaled_max_duration


def confidence_map_head(in_channels: int, hidden_channels: int) -> nn.Sequential:
    """The 2-D head of G-TAD and BMN: ``[B, in, *map]`` -> ``[B, 2, *map]`` logits (classification, regression)
    through a 1x1 and two 3x3 convolutions."""
    return nn.Sequential(
        nn.ReLU(inplace=True),
        nn.Conv2d(in_channels, hidden_channels, kernel_size=1), nn.ReLU(inplace=True),
        nn.Conv2d(hidden_channels, hidden_channels, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(hidden_channels, hidden_channels, kernel_size=3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(hidden_channels, 2, kernel_size=1),
    )


class MapGridMixin:
    """Proposal-map grids at any window length, for G-TAD and BMN.

    The head sets ``num_snippets``, ``max_duration``, the buffers ``valid_mask`` and ``candidate_segments`` (the
    grid at ``num_snippets``) and ``_grids``, a :class:`~lofi.models.heads.proposal_maps.LengthCache` that builds
    the grid at other lengths; moving or casting the head empties the cache.
    """

    num_snippets: int
    max_duration: int | None

    def max_duration_at(self, num_snippets: int) -> int | None:
        """The longest candidate, in snippets, at a window of ``num_snippets`` (None: no limit)."""
        return scaled_max_duration(self.max_duration, self.num_snippets, num_snippets)

    def map_grid(self, num_snippets: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(valid_mask, candidate_segments)`` of the confidence map at ``T = num_snippets``: the buffers at the
        head's own length, built lazily and cached at other lengths."""
        if num_snippets == self.num_snippets:
            return self.valid_mask, self.candidate_segments  # type: ignore[attr-defined]
        return self._grids.get(num_snippets, device=self.candidate_segments.device,  # type: ignore[attr-defined]
                               dtype=self.candidate_segments.dtype)  # type: ignore[attr-defined]

    def _apply(self, fn, *args, **kwargs):
        self._grids.clear()  # type: ignore[attr-defined]  # rebuilt on the new device / dtype on next use
        return super()._apply(fn, *args, **kwargs)  # type: ignore[misc]
