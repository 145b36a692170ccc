"""Rendering a synthetic video: a panning textured background and look-alike objects, one of them the actor.

All objects (the actor and the distractors) are discs drawn from the same distributions of colour, size, speed
and spin, each with an orientation marker, drifting smoothly and bouncing off a margin. The actor is present from
the first frame to the last; it differs from the distractors only during its action instances:

* onset and offset phases: a class-agnostic jitter of ``boundary_cue_px`` around its drifting position;
* middle phase: the class motion pattern (:mod:`lofi.data.synthetic.motions`), faded in and out over 0.25 s.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from lofi.data.synthetic.config import SyntheticConfig
from lofi.data.synthetic.motions import MOTION_PATTERNS
from lofi.data.synthetic.timeline import VideoPlan

_PALETTE = np.array([
    [230, 60, 50], [250, 170, 30], [240, 230, 60], [70, 200, 80], [40, 190, 200],
    [60, 110, 235], [160, 80, 220], [235, 90, 180], [245, 245, 245], [250, 130, 90],
], dtype=np.float32)


@dataclass(frozen=True)
class SceneTrack:
    """Per-frame state of every object: ``xy`` [N, O, 2] px, ``radius`` [N, O] px, ``angle`` [N, O] rad."""

    xy: np.ndarray
    radius: np.ndarray
    angle: np.ndarray
    aspect: np.ndarray  # [N, O], ellipse axis ratio (1 = disc); only the actor's changes, with shape_cue
    colors: np.ndarray  # [O, 3]
    actor_index: int


def make_texture(rng: np.random.Generator, *, height_px: int, width_px: int, contrast: float) -> np.ndarray:
    """A smooth multi-octave noise texture in two random muted colours: float32 [H, W, 3] in 0..255."""
    noise = torch.zeros(1, 1, height_px, width_px)
    for octave, cells in enumerate((4, 8, 16, 32, 64)):
        grid = torch.from_numpy(rng.standard_normal((1, 1, cells, cells)).astype(np.float32))
        noise += F.interpolate(grid, size=(height_px, width_px), mode="bicubic", align_corners=False) / (1.4 ** octave)
    field = noise[0, 0].numpy()
    field = (field - field.min()) / max(float(np.ptp(field)), 1e-6)  # [H, W] in 0..1
    base = rng.uniform(60, 160, size=3).astype(np.float32)
    tint = rng.uniform(-1, 1, size=3).astype(np.float32) * 255.0 * contrast
    return np.clip(base + (field[..., None] - 0.5) * tint, 0, 255).astype(np.float32)


def _drift(rng: np.random.Generator, *, num_frames: int, num_objects: int, low: np.ndarray, high: np.ndarray,
           speed_px_per_frame: np.ndarray) -> np.ndarray:
    """Smooth random walks that bounce off the box ``[low, high]``: [N, O, 2] px."""
    xy = np.empty((num_frames, num_objects, 2), dtype=np.float64)
    pos = rng.uniform(low, high, size=(num_objects, 2))
    heading = rng.uniform(0, 2 * np.pi, size=num_objects)
    turns = rng.normal(0.0, 0.12, size=(num_frames, num_objects))
    for n in range(num_frames):
        xy[n] = pos
        heading = heading + turns[n]
        step = speed_px_per_frame[:, None] * np.stack([np.cos(heading), np.sin(heading)], axis=1)
        pos = pos + step
        for axis in range(2):  # reflect at the walls and turn around
            below, above = pos[:, axis] < low[axis], pos[:, axis] > high[axis]
            pos[below, axis] = 2 * low[axis] - pos[below, axis]
            pos[above, axis] = 2 * high[axis] - pos[above, axis]
            flip = below | above
            if axis == 0:
                heading[flip] = np.pi - heading[flip]
            else:
                heading[flip] = -heading[flip]
    return xy


def _fade(num_frames: int, fade_frames: int) -> np.ndarray:
    """Smoothstep fade-in and fade-out envelope over a phase: [n] in 0..1."""
    n = np.arange(num_frames, dtype=np.float64)
    ramp = np.minimum(1.0, np.minimum(n + 1, num_frames - n) / max(fade_frames, 1))
    return ramp * ramp * (3 - 2 * ramp)


def shape_axis_rad(pattern_index: int, num_classes: int) -> float:
    """The world-fixed axis the shape cue stretches motion pattern ``pattern_index`` along: ``num_classes`` axes
    evenly spread over 180 degrees, the next ``num_classes`` patterns (a source dataset of other classes, see
    ``class_offset``) on the axes halfway between them, so that no source class shares a target class's pose."""
    block, k = divmod(pattern_index, num_classes)
    return float(np.pi * (k + 0.5 * (block % 2)) / num_classes)


def simulate_scene(rng: np.random.Generator, plan: VideoPlan, config: SyntheticConfig) -> SceneTrack:
    """Draw the objects and compute every object's state in every frame of ``plan``."""
    short_px = min(config.width_px, config.height_px)
    num_objects = 1 + int(rng.integers(config.num_distractors[0], config.num_distractors[1] + 1))
    radius = rng.uniform(*config.object_radius_frac, size=num_objects) * short_px
    speed = rng.uniform(*config.object_speed_frac_per_sec, size=num_objects) * short_px / config.fps
    colors = _PALETTE[rng.choice(len(_PALETTE), size=num_objects, replace=num_objects > len(_PALETTE))]
    colors = np.clip(colors + rng.normal(0, 12, size=colors.shape), 0, 255).astype(np.float32)
    spin = rng.normal(0.0, 0.6, size=num_objects) / config.fps
    actor = int(rng.integers(num_objects))
    margin = config.object_radius_frac[1] * short_px + 2.0
    low = np.array([margin, margin])
    high = np.array([config.width_px - margin, config.height_px - margin])
    if np.any(high <= low):
        low = high = np.array([config.width_px / 2, config.height_px / 2])

    n = plan.num_frames
    xy = _drift(rng, num_frames=n, num_objects=num_objects, low=low, high=high, speed_px_per_frame=speed)
    angle = rng.uniform(0, 2 * np.pi, size=num_objects)[None, :] + np.arange(n)[:, None] * spin[None, :]
    radii = np.repeat(radius[None, :], n, axis=0)
    aspect = np.ones((n, num_objects))
    jitter = rng.uniform(-1.0, 1.0, size=(n, 2)) * config.boundary_cue_px
    class_index = {name: i for i, name in enumerate(MOTION_PATTERNS)}
    fade_frames = max(1, int(round(0.25 * config.fps)))
    for inst in plan.instances:
        for lo, hi in ((inst.start_frame, inst.middle_start_frame), (inst.middle_end_frame, inst.end_frame)):
            xy[lo:hi, actor] += jitter[lo:hi]
        lo, hi = inst.middle_start_frame, inst.middle_end_frame
        cycles = np.arange(hi - lo) / (config.fps * inst.period_sec)
        motion = MOTION_PATTERNS[inst.label].fn(cycles)
        envelope = _fade(hi - lo, fade_frames)
        xy[lo:hi, actor, 0] += envelope * motion.dx * inst.amplitude_px
        xy[lo:hi, actor, 1] += envelope * motion.dy * inst.amplitude_px
        radii[lo:hi, actor] *= 1.0 + envelope * (motion.radius_scale - 1.0)
        angle[lo:hi, actor] += envelope * motion.spin_rad
        if config.shape_cue:  # a pose cue: the actor stretches into an ellipse with a class-specific orientation
            target = shape_axis_rad(class_index[inst.label], config.num_classes)
            turn = np.mod(target - angle[lo:hi, actor] + np.pi / 2, np.pi) - np.pi / 2  # shortest turn (mod pi)
            aspect[lo:hi, actor] = 1.0 + (config.shape_cue_aspect - 1.0) * envelope
            angle[lo:hi, actor] += envelope * turn
    return SceneTrack(xy=xy, radius=radii, angle=angle, aspect=aspect, colors=colors, actor_index=actor)


def _draw_ellipse(canvas: np.ndarray, *, cx: float, cy: float, rx: float, ry: float, angle: float,
                  color: np.ndarray) -> None:
    """Alpha-blend an anti-aliased filled ellipse into ``canvas`` [H, W, 3] (float32), in place."""
    h, w = canvas.shape[:2]
    reach = max(rx, ry) + 1.5
    x0, x1 = max(0, int(cx - reach)), min(w, int(cx + reach) + 2)
    y0, y1 = max(0, int(cy - reach)), min(h, int(cy + reach) + 2)
    if x0 >= x1 or y0 >= y1:
        return
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dx, dy = xs + 0.5 - cx, ys + 0.5 - cy
    cos, sin = np.cos(angle), np.sin(angle)
    u, v = (dx * cos + dy * sin) / rx, (-dx * sin + dy * cos) / ry
    dist_px = (np.sqrt(u * u + v * v) - 1.0) * min(rx, ry)  # approx. signed distance to the edge
    alpha = np.clip(0.5 - dist_px, 0.0, 1.0)[..., None]
    patch = canvas[y0:y1, x0:x1]
    patch += alpha * (color - patch)


def render_frame(background: np.ndarray, scene: SceneTrack, frame_index: int, *, pan_xy: tuple[int, int],
                 height_px: int, width_px: int, noise: np.ndarray | None = None) -> np.ndarray:
    """One RGB frame: uint8 [H, W, 3]."""
    ox, oy = pan_xy
    canvas = background[oy:oy + height_px, ox:ox + width_px].copy()
    for k in range(scene.xy.shape[1]):
        cx, cy = scene.xy[frame_index, k]
        r = scene.radius[frame_index, k]
        angle = scene.angle[frame_index, k]
        aspect = scene.aspect[frame_index, k]
        color = scene.colors[k]
        rx, ry = r * np.sqrt(aspect), r / np.sqrt(aspect)
        _draw_ellipse(canvas, cx=cx, cy=cy, rx=rx, ry=ry, angle=angle, color=color * 0.55)  # outline
        _draw_ellipse(canvas, cx=cx, cy=cy, rx=rx - 1.2, ry=ry - 1.2, angle=angle, color=color)
        mark_x, mark_y = cx + 0.5 * rx * np.cos(angle), cy + 0.5 * rx * np.sin(angle)
        _draw_ellipse(canvas, cx=mark_x, cy=mark_y, rx=0.3 * r, ry=0.3 * r, angle=0.0, color=color * 0.25)
    if noise is not None:
        canvas += noise
    return np.clip(canvas + 0.5, 0, 255).astype(np.uint8)


def camera_path(rng: np.random.Generator, *, num_frames: int, margin_px: int, speed_px_per_frame: float
                ) -> np.ndarray:
    """Integer background offsets of a camera panning at constant speed, bouncing in ``[0, 2*margin]``: [N, 2]."""
    direction = rng.uniform(0, 2 * np.pi)
    velocity = speed_px_per_frame * np.array([np.cos(direction), np.sin(direction)])
    start = rng.uniform(0, 2 * margin_px, size=2)
    raw = start[None, :] + np.arange(num_frames)[:, None] * velocity[None, :]
    period = 4 * margin_px
    folded = np.mod(raw, period)
    folded = np.where(folded > 2 * margin_px, period - folded, folded)  # triangle wave: bounce at both ends
    return np.round(folded).astype(int)
