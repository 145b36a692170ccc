"""Fidelities: how many snippets and how many pixels a mini-batch holds, and the LoFi schedules over them.

Full fidelity is ``L`` snippets of ``S x S`` frames (the paper: L = 100, S = 224). The paper's low-fidelity modes
each keep about a quarter of the full ``L * S^2`` with the batch size unchanged:

* ``S`` (spatial): ``L`` snippets at ``S / 2``;
* ``T`` (temporal): ``L / 4`` snippets at ``S``;
* ``ST`` (spatio-temporal): ``L / 2`` snippets at ``S / sqrt(2)`` (100 x 224 -> 50 x 158);
* ``C-short`` / ``C-long`` (cyclic): S, T, ST in turn, changing every ``cycle_steps`` optimiser steps (16 in the
  paper) or every epoch (the paper's best);
* ``full``, and ``custom`` (any ``L`` and ``S``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

FidelityMode = Literal["full", "S", "T", "ST", "C-short", "C-long", "custom"]
FIDELITY_MODES: tuple[str, ...] = ("full", "S", "T", "ST", "C-short", "C-long", "custom")
CYCLE: tuple[str, ...] = ("S", "T", "ST")


@dataclass(frozen=True)
class Fidelity:
    """One mini-batch composition: ``num_snippets`` snippets of ``frame_size_px`` x ``frame_size_px`` frames."""

    name: str
    num_snippets: int
    frame_size_px: int

    def __post_init__(self) -> None:
        if self.num_snippets < 1 or self.frame_size_px < 1:
            raise ValueError(f"fidelity {self.name!r}: num_snippets and frame_size_px must be >= 1, got "
                             f"{self.num_snippets} and {self.frame_size_px}")

    @property
    def pixels(self) -> int:
        """Snippet-pixels per video, ``L * S^2``: what memory scales with."""
        return self.num_snippets * self.frame_size_px ** 2


def lofi_fidelities(*, num_snippets: int, frame_size_px: int) -> dict[str, Fidelity]:
    """``full``, ``S``, ``T`` and ``ST`` for a full fidelity of ``num_snippets`` x ``frame_size_px``^2."""
    def make(name: str, snippets: float, size: float) -> Fidelity:
        return Fidelity(name, max(1, int(round(snippets))), max(1, int(round(size))))

    return {
        "full": make("full", num_snippets, frame_size_px),
        "S": make("S", num_snippets, frame_size_px / 2),
        "T": make("T", num_snippets / 4, frame_size_px),
        "ST": make("ST", num_snippets / 2, frame_size_px / math.sqrt(2)),
    }


@dataclass(frozen=True)
class FidelitySchedule:
    """Which fidelity each optimiser step of stage 2 uses.

    ``full`` is the full fidelity (``num_snippets`` x ``frame_size_px``); ``custom`` uses ``custom`` as given;
    the other modes derive from the full fidelity (:func:`lofi_fidelities`).
    """

    mode: FidelityMode
    full: Fidelity
    custom: Fidelity | None = None
    cycle_steps: int = 16

    def __post_init__(self) -> None:
        if self.mode not in FIDELITY_MODES:
            raise ValueError(f"fidelity mode {self.mode!r}: expected one of {', '.join(FIDELITY_MODES)}")
        if self.mode == "custom" and self.custom is None:
            raise ValueError("fidelity mode 'custom' needs a custom fidelity (num_snippets and frame_size_px)")
        if self.cycle_steps < 1:
            raise ValueError(f"cycle_steps must be >= 1, got {self.cycle_steps}")

    @property
    def fidelities(self) -> dict[str, Fidelity]:
        """Every fidelity the schedule can use, by name."""
        named = lofi_fidelities(num_snippets=self.full.num_snippets, frame_size_px=self.full.frame_size_px)
        if self.mode == "custom":
            return {"custom": self.custom}  # type: ignore[dict-item]
        if self.mode.startswith("C-"):
            return {name: named[name] for name in CYCLE}
        return {self.mode: named[self.mode]}

    def at(self, *, epoch: int, step: int) -> Fidelity:
        """The fidelity of optimiser ``step`` (0-based, counted over the whole run) in ``epoch`` (0-based)."""
        fidelities = self.fidelities
        if self.mode == "C-short":
            return fidelities[CYCLE[(step // self.cycle_steps) % len(CYCLE)]]
        if self.mode == "C-long":
            return fidelities[CYCLE[epoch % len(CYCLE)]]
        return next(iter(fidelities.values()))
