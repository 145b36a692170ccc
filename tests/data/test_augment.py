"""Clip augmentation: shapes, layout, determinism, and what each option does."""

from __future__ import annotations

import pytest
import torch

from lofi.data.augment import ClipAugment, augment_clip, crop_box


def _frames(seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (2, 3, 40, 56, 3), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_without_augmentation_the_centre_square_resized() -> None:
    frames = _frames()
    out = augment_clip(frames, size_px=40, augment=None, generator=None)  # [T, F, 3, S, S]
    assert out.shape == (2, 3, 3, 40, 40) and out.dtype == torch.uint8
    assert out.permute(0, 1, 3, 4, 2).is_contiguous()  # channels-last memory, like decoded snippets
    assert torch.equal(out.permute(0, 1, 3, 4, 2), frames[:, :, :, 8:48])  # short side kept, no resize
    small = augment_clip(frames, size_px=20, augment=None, generator=None)
    assert small.shape == (2, 3, 3, 20, 20)


def test_same_generator_same_clip_and_one_draw_for_every_frame() -> None:
    frames = _frames()
    options = ClipAugment(crop_scale=(0.5, 1.0), flip=True, color_jitter=0.4, channel_shuffle=True)
    a = augment_clip(frames, size_px=32, augment=options, generator=torch.Generator().manual_seed(5))
    b = augment_clip(frames, size_px=32, augment=options, generator=torch.Generator().manual_seed(5))
    c = augment_clip(frames, size_px=32, augment=options, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    same = torch.zeros(2, 3, 40, 56, 3, dtype=torch.uint8) + torch.arange(56, dtype=torch.uint8).view(1, 1, 1, 56, 1)
    out = augment_clip(same, size_px=16, augment=options, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(out[0, 0], out[t, f]) for t in range(2) for f in range(3))  # one crop/flip/colour


def test_flip_and_channel_shuffle() -> None:
    ramp = torch.arange(40, dtype=torch.uint8).view(1, 1, 1, 40, 1).expand(1, 1, 40, 40, 3).contiguous()
    ramp[..., 1] = 100
    flipped = [augment_clip(ramp, size_px=40, augment=ClipAugment(flip=True),
                            generator=torch.Generator().manual_seed(s)) for s in range(12)]
    firsts = {int(f[0, 0, 0, 0, 0]) for f in flipped}
    assert firsts == {0, 39}  # some kept, some mirrored
    never = [augment_clip(ramp, size_px=40, augment=ClipAugment(flip=False),
                          generator=torch.Generator().manual_seed(s)) for s in range(12)]
    assert all(int(f[0, 0, 0, 0, 0]) == 0 for f in never)
    shuffled = [augment_clip(ramp, size_px=40, augment=ClipAugment(channel_shuffle=True),
                             generator=torch.Generator().manual_seed(s)) for s in range(12)]
    green = {tuple(int(f[0, 0, c, 0, 5]) for c in range(3)) for f in shuffled}
    assert len(green) > 1 and all(sorted(g) == [5, 5, 100] for g in green)


def test_crop_box_scale_and_bounds() -> None:
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        y, x, side = crop_box(40, 56, scale=(0.5, 0.8), random=True, generator=generator)
        assert 20 <= side <= 32 and 0 <= y <= 40 - side and 0 <= x <= 56 - side
    assert crop_box(40, 56, scale=(0.5, 0.8), random=False, generator=None) == (0, 8, 40)


@pytest.mark.parametrize("options", [{"crop_scale": (0.0, 1.0)}, {"crop_scale": (0.9, 0.5)}, {"color_jitter": 1.5}])
def test_bad_options(options) -> None:
    with pytest.raises(ValueError):
        ClipAugment(**options)
