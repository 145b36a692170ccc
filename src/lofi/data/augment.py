"""Clip augmentations for classification pre-training: random resized crop, flip and colour jitter.

Every draw comes from the caller's ``torch.Generator``, so an item is the same for the same (seed, epoch, index).
Flips (and rotations, which are not offered) change the class of direction-dependent actions (the synthetic
dataset's ``circle_cw``/``circle_ccw`` and its shape cue): :class:`ClipAugment` leaves them off unless asked.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ClipAugment:
    """What to do to a training clip.

    ``crop_scale``: the crop's side as a fraction of the frame's short side, drawn uniformly in ``(low, high)``,
    placed at random and resized to the output size (``(1, 1)``: a plain random crop of the short side).
    ``flip``: horizontal flip with probability 1/2. ``color_jitter``: brightness, contrast and saturation factors
    drawn in ``[1 - j, 1 + j]``. ``channel_shuffle``: permute the RGB channels at random (breaks a shortcut through
    object colours; only for data whose classes do not depend on colour).
    """

    crop_scale: tuple[float, float] = (1.0, 1.0)
    flip: bool = False
    color_jitter: float = 0.0
    channel_shuffle: bool = False

    def __post_init__(self) -> None:
        low, high = self.crop_scale
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(f"crop_scale must be (low, high) with 0 < low <= high <= 1, got {self.crop_scale!r}")
        if not 0.0 <= self.color_jitter < 1.0:
            raise ValueError(f"color_jitter must be in [0, 1), got {self.color_jitter!r}")


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def crop_box(height: int, width: int, *, scale: tuple[float, float], random: bool,
             generator: torch.Generator | None) -> tuple[int, int, int]:
    """``(y, x, side)`` of a square crop of ``side = scale * short side`` pixels: centred, or placed at random."""
    short = min(height, width)
    if random and generator is not None:
        side = max(1, min(short, int(round(_uniform(generator, *scale) * short))))
        y = int(torch.randint(0, height - side + 1, (1,), generator=generator))
        x = int(torch.randint(0, width - side + 1, (1,), generator=generator))
        return y, x, side
    return (height - short) // 2, (width - short) // 2, short


def augment_clip(frames: torch.Tensor, *, size_px: int, augment: ClipAugment | None,
                 generator: torch.Generator | None) -> torch.Tensor:
    """uint8 ``[T, F, H, W, 3]`` frames of one clip -> uint8 ``[T, F, 3, S, S]`` (channels-last memory),
    ``S = size_px``.

    Without ``augment`` (or ``generator``): the centre square of side ``min(H, W)``, resized to ``S`` when it
    differs. With it: one crop box, flip and colour draw for the whole clip (every frame alike).
    """
    t, f, height, width, _ = frames.shape
    random = augment is not None and generator is not None
    scale = augment.crop_scale if augment is not None else (1.0, 1.0)
    y, x, side = crop_box(height, width, scale=scale, random=random, generator=generator)
    clip = frames[:, :, y:y + side, x:x + side].reshape(t * f, side, side, 3).permute(0, 3, 1, 2)  # [N, 3, s, s]
    if side != size_px:
        clip = F.interpolate(clip.float(), size=(size_px, size_px), mode="bilinear", antialias=True,
                             align_corners=False)
    if random:
        assert augment is not None and generator is not None
        if augment.flip and bool(torch.rand((), generator=generator) < 0.5):
            clip = clip.flip(-1)
        if augment.channel_shuffle:
            clip = clip[:, torch.randperm(3, generator=generator)]
        if augment.color_jitter > 0:
            j = augment.color_jitter
            clip = clip.float()
            brightness, contrast, saturation = (_uniform(generator, 1 - j, 1 + j) for _ in range(3))
            gray = (0.299 * clip[:, 0] + 0.587 * clip[:, 1] + 0.114 * clip[:, 2]).unsqueeze(1)  # [N, 1, S, S]
            clip = gray + (clip - gray) * saturation
            clip = (clip - clip.mean()) * contrast + clip.mean()
            clip = clip * brightness
    if clip.dtype != torch.uint8:  # resized or colour-jittered in float
        clip = clip.round().clamp(0, 255).to(torch.uint8)
    out = clip.reshape(t, f, 3, size_px, size_px)
    return out.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)  # [T, F, 3, S, S], channels-last memory
