"""Stalled losses made visible: a loss term that stops falling while it is still near where it started.

A healthy loss term falls fast in its first epochs and flattens near its floor; a stalled one flattens near its
start (a regression branch with dead outputs sat at 0.60 for 14 of 15 epochs while other seeds reached 0.06-0.09).
:class:`StallWatch` reads the epoch records a :class:`lofi.train.engine.Trainer` logs and warns once per term,
naming the stage folder and the term, when over the last ``window_epochs`` epochs the term fell by less than
``min_drop`` of its value and it is still above ``high_fraction`` of its first epoch's value, while the learning rate
at the window's start was at least ``min_lr_fraction`` of its peak (every loss flattens in a schedule's tail).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

logger = logging.getLogger("lofi.train")

#: Epoch-record keys that are not losses (``train_<term>`` keys are checked, except these terms).
_NOT_LOSSES = ("accuracy", "num_positives", "num_snippets")


@dataclass(frozen=True)
class Stall:
    """One stalled loss term: where it started, where it sits, over which epochs (0-based, inclusive)."""

    term: str
    first_value: float
    value: float
    since_epoch: int
    epoch: int

    def message(self, stage: str) -> str:
        return (f"{stage}: train {self.term} has not fallen for {self.epoch - self.since_epoch} epochs (epochs "
                f"{self.since_epoch + 1}-{self.epoch + 1}: {self.value:.4g}; epoch 1: {self.first_value:.4g}): "
                f"that loss is not learning. Look at {stage}/metrics.jsonl and curves.png; a head stuck like this "
                f"usually learns with another seed or a lower learning rate")


@dataclass
class StallWatch:
    """Finds stalled ``train_*`` loss terms in a run's epoch records; warns once per term and keeps the stalls."""

    stage: str
    window_epochs: int = 3
    min_drop: float = 0.02
    high_fraction: float = 0.65  # a stalled head sat at 0.75 of its start; a slow stage 2 reached 0.52 (tests)
    #: a term that flattens once the learning rate has decayed below this share of its peak is the schedule
    #: ending, not a stall (G-TAD's snippet classification sat at 0.7 of its start in a cosine schedule's tail)
    min_lr_fraction: float = 0.4
    stalls: list[Stall] = field(default_factory=list)

    def check(self, records: Sequence[Mapping[str, Any]]) -> list[Stall]:
        """The stalls new in ``records`` (every epoch record so far, in order); each is logged as a warning."""
        epochs = [r for r in records if r.get("kind") == "epoch"]
        if len(epochs) <= self.window_epochs:
            return []
        found = []
        warned = {s.term for s in self.stalls}
        for key in sorted(epochs[-1]):
            term = key[len("train_"):]
            if not key.startswith("train_") or term in _NOT_LOSSES or term in warned:
                continue
            if not self._lr_still_high(epochs):
                continue
            stall = self._stall(term, [r.get(key) for r in epochs])
            if stall is not None:
                found.append(stall)
                logger.warning(stall.message(self.stage))
        self.stalls.extend(found)
        return found

    def _lr_still_high(self, epochs: Sequence[Mapping[str, Any]]) -> bool:
        """Whether the window began at a learning rate of at least ``min_lr_fraction`` of the peak so far (records
        without ``lr`` always count)."""
        rates = [r.get("lr") for r in epochs]
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in rates) or max(rates) <= 0:
            return True
        return rates[-1 - self.window_epochs] >= self.min_lr_fraction * max(rates)

    def _stall(self, term: str, values: list[Any]) -> Stall | None:
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            return None
        first, before, recent = values[0], values[-1 - self.window_epochs], values[-self.window_epochs:]
        if first <= 0 or before <= 0:
            return None
        flat = min(recent) > before * (1 - self.min_drop)
        high = values[-1] > self.high_fraction * first
        if not (flat and high):
            return None
        return Stall(term=term, first_value=float(first), value=float(values[-1]),
                     since_epoch=len(values) - 1 - self.window_epochs, epoch=len(values) - 1)
