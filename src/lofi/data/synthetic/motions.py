"""Class-defining motion patterns of the synthetic dataset.

Each action class is one pattern: a displacement (and optionally a spin or a pulsation) of the actor around its
drifting home position, as a function of the phase ``u`` in cycles. A pattern takes several frames to see: every
single position it produces is also a position an idle object can have, so one frame never reveals the class
(circle_cw and circle_ccw differ only in the order of their frames).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

TAU = 2.0 * np.pi


@dataclass(frozen=True)
class MotionOffsets:
    """Per-frame offsets in units of the pattern amplitude (``dx``, ``dy``), radius fraction and radians."""

    dx: np.ndarray  # [N]
    dy: np.ndarray  # [N]
    radius_scale: np.ndarray  # [N], multiplies the object's radius (1 = unchanged)
    spin_rad: np.ndarray  # [N], added to the object's orientation


@dataclass(frozen=True)
class MotionPattern:
    name: str
    description: str
    fn: Callable[[np.ndarray], MotionOffsets]


def _offsets(u: np.ndarray, dx=None, dy=None, radius_scale=None, spin_rad=None) -> MotionOffsets:
    zeros = np.zeros_like(u)
    return MotionOffsets(dx=zeros if dx is None else dx, dy=zeros if dy is None else dy,
                         radius_scale=np.ones_like(u) if radius_scale is None else radius_scale,
                         spin_rad=zeros if spin_rad is None else spin_rad)


def _triangle(u: np.ndarray) -> np.ndarray:
    """Triangle wave with period 1, value 0 at u=0, peaks +1 at u=1/4 and -1 at u=3/4."""
    frac = np.mod(u + 0.25, 1.0)
    return 1.0 - 4.0 * np.abs(frac - 0.5)


def _square_path(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walk the unit square's edges once per cycle, starting and ending at a corner (0, 0)."""
    frac = np.mod(u, 1.0) * 4.0
    side = np.floor(frac).astype(int)
    t = frac - side
    corners = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]])
    start, end = corners[side], corners[side + 1]
    xy = start + (end - start) * t[:, None]  # [N, 2]
    return xy[:, 0], xy[:, 1]


MOTION_PATTERNS: dict[str, MotionPattern] = {}


def _register(name: str, description: str):
    def wrap(fn: Callable[[np.ndarray], MotionOffsets]) -> Callable[[np.ndarray], MotionOffsets]:
        MOTION_PATTERNS[name] = MotionPattern(name=name, description=description, fn=fn)
        return fn

    return wrap


@_register("circle_cw", "moves once around a circle clockwise per cycle")
def _circle_cw(u):
    return _offsets(u, dx=np.sin(TAU * u), dy=1.0 - np.cos(TAU * u))


@_register("circle_ccw", "moves once around a circle counter-clockwise per cycle")
def _circle_ccw(u):
    return _offsets(u, dx=-np.sin(TAU * u), dy=1.0 - np.cos(TAU * u))


@_register("swing_horizontal", "swings left and right")
def _swing_horizontal(u):
    return _offsets(u, dx=np.sin(TAU * u))


@_register("swing_vertical", "swings up and down")
def _swing_vertical(u):
    return _offsets(u, dy=np.sin(TAU * u))


@_register("bounce", "hops upwards and falls back, twice per cycle")
def _bounce(u):
    return _offsets(u, dy=-np.abs(np.sin(TAU * u)))


@_register("figure_eight", "traces a figure eight")
def _figure_eight(u):
    return _offsets(u, dx=np.sin(TAU * u), dy=0.5 * np.sin(2.0 * TAU * u))


@_register("spin", "spins in place, one turn per cycle")
def _spin(u):
    return _offsets(u, spin_rad=TAU * u)


@_register("pulse", "grows and shrinks in place")
def _pulse(u):
    return _offsets(u, radius_scale=1.0 + 0.3 * np.sin(TAU * u))


@_register("swing_diagonal", "swings along the main diagonal at constant speed")
def _swing_diagonal(u):
    wave = _triangle(u) / np.sqrt(2.0)
    return _offsets(u, dx=wave, dy=wave)


@_register("square", "walks around a square")
def _square(u):
    dx, dy = _square_path(u)
    return _offsets(u, dx=1.5 * dx, dy=1.5 * dy)


@_register("zigzag", "fast left-right zigzag while drifting up and down slowly")
def _zigzag(u):
    return _offsets(u, dx=0.6 * _triangle(2.0 * u), dy=np.sin(0.5 * TAU * u))


@_register("spiral", "spirals outwards and jumps back to the centre each cycle")
def _spiral(u):
    radius = np.mod(u, 1.0)
    return _offsets(u, dx=radius * np.sin(2.0 * TAU * u), dy=radius * (1.0 - np.cos(2.0 * TAU * u)) * 0.5)
