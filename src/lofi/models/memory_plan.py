"""Which stage-2 configuration fits a memory budget: every LoFi fidelity with every lever combination, predicted by
:class:`~lofi.models.memory.MemoryModel`, and the recommendation.

Candidates: the given full fidelity and its quarter-size reductions S, T, ST
(:func:`lofi.core.fidelity.lofi_fidelities`), each with and without checkpointing, bf16 autocast and partial
back-prop (0.3), and their combinations. The recommendation:

1. the full fidelity, when a configuration of it fits;
2. otherwise a C-LoFi cycle over S, T and ST (``C-long``, the paper's best, or ``C-short``), with one lever
   combination under which all three fit (a cycle's peak is its largest member's);
3. otherwise the single reduced fidelity that fits;
4. otherwise nothing fits: :class:`NothingFitsError` names the smallest peak and its configuration.

A configuration fits when its predicted peak is at most the budget less its ``headroom`` share. The model counts
tensors; a process needs more than its tensors (on CUDA the context, the caching allocator's fragmentation and
libraries' workspaces; on CPU the interpreter and the allocator), so ``lofi plan`` and ``fidelity.mode=auto``
keep 10% free unless told otherwise.

Among the lever combinations that fit, the exact ones come first: checkpointing recomputes, it changes no result,
while bf16 autocast changes the numerics and partial back-prop the gradients (:func:`lever_rank`: none and
checkpoint, then bf16, then partial, then both); among equals the fewest levers (each costs time or changes the
step: an unneeded one is never chosen, whatever noisy probe timings say), then the fastest (relative step time).
So a large budget gets full fidelity without levers, a medium one full fidelity with checkpointing before bf16 or
partial back-prop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

from lofi.core.fidelity import CYCLE, Fidelity, lofi_fidelities
from lofi.errors import UserError
from lofi.models.memory import MemoryModel, MemoryPrediction
from lofi.models.memory_measure import Levers, lever_combinations

CycleMode = Literal["C-long", "C-short"]


class NothingFitsError(UserError, ValueError):
    """No fidelity and lever combination fits the memory budget."""


@dataclass(frozen=True)
class Candidate:
    """One fidelity with one lever combination: its predicted step and relative step time (1 = full, no levers)."""

    fidelity: Fidelity
    levers: Levers
    prediction: MemoryPrediction
    relative_seconds: float
    fits: bool

    @property
    def peak_bytes(self) -> int:
        return self.prediction.peak_bytes

    def per_video_bytes(self, batch_size: int) -> int:
        """What each video of the batch adds: frames and activations (parameters, gradients and state apart)."""
        p = self.prediction
        return (p.frames_bytes + p.activation_bytes) // batch_size

    def to_dict(self, batch_size: int) -> dict[str, Any]:
        return {"fidelity": self.fidelity.name, "num_snippets": self.fidelity.num_snippets,
                "frame_size_px": self.fidelity.frame_size_px, "levers": self.levers.name,
                "peak_bytes": self.peak_bytes, "per_video_bytes": self.per_video_bytes(batch_size),
                "relative_step_time": round(self.relative_seconds, 3), "fits": self.fits}


@dataclass(frozen=True)
class Recommendation:
    """What stage 2 should run: ``mode`` (a ``fidelity.mode``), the levers, and the peak of its largest member."""

    mode: str
    levers: Levers
    members: tuple[Candidate, ...]

    @property
    def peak_bytes(self) -> int:
        return max(c.peak_bytes for c in self.members)

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "levers": self.levers.name, "checkpoint_stages": self.levers.checkpoint,
                "autocast": self.levers.autocast, "partial_share": self.levers.partial_share,
                "peak_bytes": self.peak_bytes, "members": [c.fidelity.name for c in self.members]}


@dataclass(frozen=True)
class MemoryPlan:
    """Every candidate for one budget, and the recommendation."""

    budget_bytes: int
    batch_size: int
    frames_per_snippet: int
    optimizer: str
    encoder: str
    head: str
    candidates: tuple[Candidate, ...]
    recommendation: Recommendation
    headroom: float = 0.0

    @property
    def usable_bytes(self) -> int:
        """What the step's tensors may take: the budget less the headroom."""
        return usable_bytes(self.budget_bytes, self.headroom)

    def table(self) -> str:
        """The candidates as a text table, then the recommendation."""
        lines = [f"{self.encoder} + {self.head}, batch {self.batch_size}, {self.frames_per_snippet} frame(s) per "
                 f"snippet, {self.optimizer}; budget {format_bytes(self.budget_bytes)}"
                 + (f", {100 * self.headroom:.0f}% kept free: {format_bytes(self.usable_bytes)} for the step"
                    if self.headroom else ""),
                 f"{'fidelity':<8} {'T':>4} {'px':>4} {'levers':<26} {'step peak':>10} {'per video':>10} "
                 f"{'rel. time':>9}  fits"]
        for c in self.candidates:
            lines.append(f"{c.fidelity.name:<8} {c.fidelity.num_snippets:>4} {c.fidelity.frame_size_px:>4} "
                         f"{c.levers.name:<26} {format_bytes(c.peak_bytes):>10} "
                         f"{format_bytes(c.per_video_bytes(self.batch_size)):>10} {c.relative_seconds:>9.2f}  "
                         f"{'yes' if c.fits else 'no'}")
        r = self.recommendation
        members = "" if len(r.members) == 1 else f" over {', '.join(c.fidelity.name for c in r.members)}"
        lines.append(f"recommended: fidelity.mode={r.mode}{members}, levers {r.levers.name}, peak "
                     f"{format_bytes(r.peak_bytes)} of {format_bytes(self.usable_bytes)}")
        lines.append("(relative time: per step, measured at probe sizes and scaled by the pixel count; 1.00 = full "
                     "fidelity without levers)")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"budget_bytes": self.budget_bytes, "headroom": self.headroom, "usable_bytes": self.usable_bytes,
                "batch_size": self.batch_size,
                "frames_per_snippet": self.frames_per_snippet, "optimizer": self.optimizer, "encoder": self.encoder,
                "head": self.head, "recommendation": self.recommendation.to_dict(),
                "candidates": [c.to_dict(self.batch_size) for c in self.candidates]}


def format_bytes(num_bytes: float) -> str:
    """``1.23 GB`` (decimal units, as budgets are written)."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(num_bytes) >= scale:
            return f"{num_bytes / scale:.2f} {unit}"
    return f"{num_bytes:.0f} B"


def usable_bytes(budget_bytes: int, headroom: float) -> int:
    """``budget_bytes`` less its ``headroom`` share (in [0, 1))."""
    if not 0 <= headroom < 1:
        raise ValueError(f"headroom must be in [0, 1), got {headroom!r}")
    return int(budget_bytes * (1 - headroom))


def plan_memory(memory: MemoryModel, *, budget_bytes: int, batch_size: int, num_snippets: int, frame_size_px: int,
                optimizer: str = "sgd", levers: Sequence[Levers] | None = None,
                cycle: CycleMode = "C-long", headroom: float = 0.0) -> MemoryPlan:
    """Predict every candidate (``levers``: default every combination the model was fitted for) and recommend one
    (see the module docstring): a candidate fits in ``budget_bytes`` less its ``headroom`` share;
    :class:`NothingFitsError` when nothing fits."""
    usable = usable_bytes(budget_bytes, headroom)
    levers = list(memory.encoder_fits) if levers is None else list(levers)
    fidelities = lofi_fidelities(num_snippets=num_snippets, frame_size_px=frame_size_px)
    memory.probe_heads([f.num_snippets for f in fidelities.values()])
    predictions = {(name, lv): memory.predict(fidelity=f, batch_size=batch_size, levers=lv, optimizer=optimizer)
                   for name, f in fidelities.items() for lv in levers}
    reference = memory.predict(fidelity=fidelities["full"], batch_size=batch_size, levers=Levers(),
                               optimizer=optimizer).seconds if Levers() in memory.encoder_fits else None
    reference = reference or next(iter(predictions.values())).seconds
    candidates = tuple(Candidate(fidelity=fidelities[name], levers=lv, prediction=p,
                                 relative_seconds=p.seconds / reference, fits=p.peak_bytes <= usable)
                       for (name, lv), p in predictions.items())
    try:
        recommendation = recommend(candidates, cycle=cycle, budget_bytes=usable)
    except NothingFitsError as error:
        if not headroom:
            raise
        raise NothingFitsError(f"{error} (the budget is {format_bytes(budget_bytes)} less {100 * headroom:.0f}% "
                               f"kept free)") from None
    return MemoryPlan(budget_bytes=budget_bytes, batch_size=batch_size, frames_per_snippet=memory.frames_per_snippet,
                      optimizer=optimizer, encoder=memory.encoder, head=memory.head, candidates=candidates,
                      recommendation=recommendation, headroom=headroom)


def lever_rank(levers: Levers) -> int:
    """0: exact (none, checkpointing); 1: bf16 autocast; 2: partial back-prop; 3: both."""
    return (levers.autocast is not None) + 2 * (levers.partial_share is not None)


def num_levers(levers: Levers) -> int:
    return int(levers.checkpoint) + (levers.autocast is not None) + (levers.partial_share is not None)


def _best(candidates: Sequence[Candidate]) -> Candidate:
    rank = min(lever_rank(c.levers) for c in candidates)
    same = [c for c in candidates if lever_rank(c.levers) == rank]
    return min(same, key=lambda c: (num_levers(c.levers), c.relative_seconds, c.peak_bytes))


def recommend(candidates: Sequence[Candidate], *, cycle: CycleMode = "C-long", budget_bytes: int) -> Recommendation:
    """The recommendation among ``candidates`` (see the module docstring)."""
    full = [c for c in candidates if c.fidelity.name == "full" and c.fits]
    if full:
        best = _best(full)
        return Recommendation(mode="full", levers=best.levers, members=(best,))
    by_levers: dict[Levers, dict[str, Candidate]] = {}
    for c in candidates:
        by_levers.setdefault(c.levers, {})[c.fidelity.name] = c
    fitting = [lv for lv, m in by_levers.items() if all(n in m and m[n].fits for n in CYCLE)]
    if fitting:  # the cycle's members ranked as one candidate: its largest peak, its mean time
        def largest(lv: Levers) -> Candidate:
            return max((by_levers[lv][n] for n in CYCLE), key=lambda c: c.peak_bytes)

        members = [Candidate(fidelity=largest(lv).fidelity, levers=lv, prediction=largest(lv).prediction,
                             relative_seconds=sum(by_levers[lv][n].relative_seconds for n in CYCLE) / len(CYCLE),
                             fits=True) for lv in fitting]
        lv = _best(members).levers
        return Recommendation(mode=cycle, levers=lv, members=tuple(by_levers[lv][n] for n in CYCLE))
    reduced = [c for c in candidates if c.fidelity.name in CYCLE and c.fits]
    if reduced:
        best = _best(reduced)
        return Recommendation(mode=best.fidelity.name, levers=best.levers, members=(best,))
    smallest = min(candidates, key=lambda c: c.peak_bytes)
    raise NothingFitsError(f"nothing fits in {format_bytes(budget_bytes)}: the smallest predicted peak is "
                           f"{format_bytes(smallest.peak_bytes)} ({smallest.fidelity.name} "
                           f"{smallest.fidelity.num_snippets} x {smallest.fidelity.frame_size_px}px, levers "
                           f"{smallest.levers.name}); lower the batch per process, the full fidelity "
                           f"(fidelity.num_snippets, fidelity.frame_size_px) or frames per snippet, or use a "
                           f"larger device")
