"""Measuring one stage-2 training step: its peak memory (tensor bytes) and its time, for the memory model's probes,
its direct checks and the benchmarks.

On CPU a peak is read from the PyTorch profiler's allocation records (every allocation and free, in time order:
tensors only, not the allocator's cache); on CUDA it is ``torch.cuda.max_memory_allocated``. A step runs on seeded
random uint8 frames with one ground-truth segment per video, with the memory levers of :class:`Levers`
(per-stage checkpointing, bf16/fp16 autocast, partial back-prop's share).
"""

from __future__ import annotations

import contextlib
import re
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from torch import nn

from lofi.core.fidelity import Fidelity
from lofi.core.targets import SegmentTargets
from lofi.models.detector import Detector, create_model
from lofi.models.encoders.levers import AutocastMode
from lofi.models.partial_backprop import draw_grad_mask

#: Optimizer state per trainable parameter, in fp32 copies: SGD with momentum keeps one, AdamW two.
OPTIMIZER_STATE_COPIES: dict[str, int] = {"sgd": 1, "adamw": 2}
_NUM_CLASSES = 4


@dataclass(frozen=True)
class Levers:
    """One combination of memory levers: per-stage checkpointing, bf16/fp16 autocast, partial back-prop share."""

    checkpoint: bool = False
    autocast: AutocastMode | None = None
    partial_share: float | None = None

    @property
    def name(self) -> str:
        """``none``, ``checkpoint``, ``bf16``, ``checkpoint+bf16+partial30``, ..."""
        parts = (["checkpoint"] if self.checkpoint else []) + ([self.autocast] if self.autocast else [])
        if self.partial_share is not None:
            parts.append(f"partial{round(100 * self.partial_share)}")
        return "+".join(parts) or "none"

    @staticmethod
    def parse(spec: str) -> "Levers":
        """The inverse of :attr:`name`: ``"checkpoint+bf16+partial30"`` -> ``Levers(True, "bf16", 0.3)``;
        ``ValueError`` naming the part it does not know."""
        checkpoint, autocast, share = False, None, None
        for part in spec.split("+"):
            match = re.fullmatch(r"partial(\d+)", part)
            if part == "checkpoint" and not checkpoint:
                checkpoint = True
            elif part in ("bf16", "fp16") and autocast is None:
                autocast = part
            elif match is not None and 0 < int(match.group(1)) <= 100 and share is None:
                share = int(match.group(1)) / 100
            elif part != "none" or spec != "none":
                raise ValueError(f"unknown or repeated lever {part!r} in {spec!r}; known: none, checkpoint, bf16, "
                                 f"fp16, partialNN (NN = 1..100 % of the snippets), joined with '+'")
        return Levers(checkpoint=checkpoint, autocast=autocast, partial_share=share)

    def encoder_options(self) -> dict[str, Any]:
        """The encoder options these levers set (partial back-prop is not one: it is ``train.partial_backprop``)."""
        options: dict[str, Any] = {}
        if self.checkpoint:
            options["checkpoint_stages"] = True
        if self.autocast is not None:
            options["autocast"] = self.autocast
        return options


def lever_combinations(*, autocast: AutocastMode = "bf16", partial_share: float = 0.3) -> list[Levers]:
    """Every subset of checkpointing, ``autocast`` and partial back-prop at ``partial_share``, ``none`` first."""
    return [Levers(checkpoint=c, autocast=a, partial_share=p)
            for p in (None, partial_share) for a in (None, autocast) for c in (False, True)]


def tensor_bytes(tensors: Sequence[torch.Tensor]) -> int:
    """Bytes held by ``tensors`` (each counted once)."""
    seen: dict[int, int] = {}
    for t in tensors:
        seen[id(t)] = t.numel() * t.element_size()
    return sum(seen.values())


def optimizer_state_bytes(optimizer: torch.optim.Optimizer | None) -> int:
    """Bytes of the optimizer's state tensors (momentum buffers, Adam moments; step counters included)."""
    if optimizer is None:
        return 0
    return tensor_bytes([v for state in optimizer.state.values() for v in state.values() if torch.is_tensor(v)])


class MemoryTrace:
    """Live tensor bytes in named windows of a block, each relative to the window's start: its peak and what is
    left at its end. CPU: one profiler session (``profile_memory=True``) over the whole block, its allocation
    records split at the windows' ``record_function`` marks (one session, not one per window: starting the
    profiler costs more than a probe). CUDA: the caching allocator's statistics, window by window.

    ``with MemoryTrace(device) as trace:`` ... ``with trace.window("a"):`` ...; after the block,
    ``trace.peak_bytes("a")`` and ``trace.end_bytes("a")``."""

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self._results: dict[str, tuple[int, int]] = {}
        self._names: list[str] = []

    def __enter__(self) -> "MemoryTrace":
        if self.device.type != "cuda":
            from torch.profiler import ProfilerActivity, profile

            self._profile = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
            self._profile.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            return
        self._profile.__exit__(*exc)
        if exc[0] is not None:
            return
        events = self._profile.events()
        marks = {e.name: (e.time_range.start, e.time_range.end) for e in events if e.name.startswith("lofi_window:")}
        memory = sorted((e.time_range.start, e.self_cpu_memory_usage) for e in events if e.self_cpu_memory_usage)
        for name in self._names:
            first, last = marks[f"lofi_window:{name}"]
            live = peak = 0
            for at, delta in memory:
                if at < first:
                    continue
                if at > last:
                    break
                live += delta
                peak = max(peak, live)
            self._results[name] = (peak, live)

    @contextlib.contextmanager
    def window(self, name: str) -> Iterator[None]:
        """Measure the block inside as window ``name`` (a new name each time)."""
        if name in self._names:
            raise ValueError(f"window {name!r} measured twice")
        self._names.append(name)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            start = torch.cuda.memory_allocated(self.device)
            yield
            torch.cuda.synchronize(self.device)
            self._results[name] = (torch.cuda.max_memory_allocated(self.device) - start,
                                   torch.cuda.memory_allocated(self.device) - start)
            return
        with torch.profiler.record_function(f"lofi_window:{name}"):
            yield

    def peak_bytes(self, name: str) -> int:
        return self._results[name][0]

    def end_bytes(self, name: str) -> int:
        return self._results[name][1]


def sync_device(device: torch.device) -> None:
    """Wait for ``device``'s queued work (CUDA); nothing on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class StepMeasurement:
    """One measured training step: ``peak_bytes`` is everything alive at the step's peak (``static_bytes`` =
    parameters, gradients, optimizer state and input frames, alive throughout, plus the step's own peak)."""

    peak_bytes: int
    static_bytes: int
    seconds: float


@dataclass
class TrainingStep:
    """One stage-2 training step of ``model`` on ``frames`` ``[B, T, F, 3, S, S]``, callable: gradients zeroed but
    kept allocated (``zero_grad(set_to_none=False)``, so a peak counts them whole), forward (with ``grad_mask``
    ``[B, T]`` for partial back-prop), loss, backward, ``optimizer.step()``."""

    model: Detector
    frames: torch.Tensor
    targets: SegmentTargets
    optimizer: torch.optim.Optimizer | None = None
    grad_mask: torch.Tensor | None = None

    def __call__(self) -> None:
        self.model.zero_grad(set_to_none=False)
        self.model.loss(self.model(self.frames, grad_mask=self.grad_mask), self.targets)["loss"].backward()
        if self.optimizer is not None:
            self.optimizer.step()

    def seconds(self, repeats: int) -> list[float]:
        """The wall-clock seconds of ``repeats`` steps, each on its own (after the step before: no warm-up)."""
        return wall_seconds(self.frames.device, self, repeats)

    def static_bytes(self) -> int:
        """Parameters, gradients, optimizer state and input frames: alive through the whole step."""
        params = list(self.model.parameters())
        return (tensor_bytes(params) + tensor_bytes([p.grad for p in params if p.grad is not None])
                + optimizer_state_bytes(self.optimizer) + tensor_bytes([self.frames]))


def build_training_step(*, encoder: str, head: str, fidelity: Fidelity, batch_size: int, frames_per_snippet: int,
                        levers: Levers = Levers(), optimizer: str = "sgd", encoder_options: Mapping[str, Any] = {},
                        head_options: Mapping[str, Any] = {}, device: torch.device | str = "cpu") -> TrainingStep:
    """The step a probe, a measurement or a benchmark runs: the detector (:func:`build_probe_model`), its optimizer
    (:func:`make_optimizer`), seeded random frames and one ground-truth segment per video, and partial back-prop's
    mask (seed 0) when ``levers`` ask for it."""
    model = build_probe_model(encoder=encoder, head=head, num_snippets=fidelity.num_snippets,
                              encoder_options=encoder_options, head_options=head_options, levers=levers,
                              device=device)
    mask = probe_grad_mask(levers, batch_size=batch_size, num_snippets=fidelity.num_snippets, device=device)
    return TrainingStep(model=model, frames=probe_frames(batch_size=batch_size, fidelity=fidelity,
                                                         frames_per_snippet=frames_per_snippet, device=device),
                        targets=probe_targets(batch_size, torch.device(device)),
                        optimizer=make_optimizer(optimizer, [p for p in model.parameters() if p.requires_grad]),
                        grad_mask=mask)


def wall_seconds(device: torch.device, fn: Callable[[], object], repeats: int) -> list[float]:
    """The wall-clock seconds of ``repeats`` calls of ``fn``, each timed on its own, ``device``'s queued work
    included."""
    times = []
    for _ in range(repeats):
        sync_device(device)
        start = time.perf_counter()
        fn()
        sync_device(device)
        times.append(time.perf_counter() - start)
    return times


def probe_grad_mask(levers: Levers, *, batch_size: int, num_snippets: int,
                    device: torch.device | str) -> torch.Tensor | None:
    """Partial back-prop's mask ``[B, T]`` (seed 0) when ``levers`` ask for it, else None."""
    if levers.partial_share is None:
        return None
    return draw_grad_mask(batch_size=batch_size, num_snippets=num_snippets, share=levers.partial_share,
                          seed=0).to(device)  # [B, T]


def measure_step(step: TrainingStep, *, repeats: int = 1) -> StepMeasurement:
    """Measure ``step``: a warm-up step (gradients and optimizer state allocated), ``repeats`` timed steps (their
    median), then one step whose peak is traced."""
    step()
    times = step.seconds(repeats)
    static = step.static_bytes()
    with MemoryTrace(step.frames.device) as trace, trace.window("step"):
        step()
    return StepMeasurement(peak_bytes=static + trace.peak_bytes("step"), static_bytes=static,
                           seconds=statistics.median(times) if times else float("nan"))


def probe_targets(batch_size: int, device: torch.device) -> SegmentTargets:
    """One ground-truth segment (0.2-0.6 of the video, class 1) per video."""
    return SegmentTargets(segments=[torch.tensor([[0.2, 0.6]], device=device)] * batch_size,
                          labels=[torch.tensor([1], device=device)] * batch_size)


def build_probe_model(*, encoder: str, head: str, num_snippets: int, encoder_options: Mapping[str, Any] = {},
                      head_options: Mapping[str, Any] = {}, levers: Levers = Levers(),
                      device: torch.device | str = "cpu") -> Detector:
    """The detector a probe (or a direct measurement) runs: fixed seed, train mode, on ``device``."""
    torch.manual_seed(0)
    return create_model(encoder=encoder, head=head, num_classes=_NUM_CLASSES, num_snippets=num_snippets,
                        encoder_options={**encoder_options, **levers.encoder_options()},
                        head_options=head_options).to(device).train()


def probe_frames(*, batch_size: int, fidelity: Fidelity, frames_per_snippet: int,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """Random uint8 frames ``[B, T, F, 3, S, S]`` (seeded)."""
    generator = torch.Generator().manual_seed(1)
    size = fidelity.frame_size_px
    return torch.randint(0, 256, (batch_size, fidelity.num_snippets, frames_per_snippet, 3, size, size),
                         dtype=torch.uint8, generator=generator).to(device)


def make_optimizer(name: str, parameters: Sequence[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The optimizers stage 2 builds (:func:`lofi.train.builders.build_optimizer`), for probes: SGD with momentum
    or AdamW, weight decay on."""
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=1e-6, momentum=0.9, weight_decay=1e-4)
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=1e-6, weight_decay=1e-4)
    raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZER_STATE_COPIES)}, got {name!r}")


def module_bytes(module: nn.Module, *, trainable_only: bool = False) -> int:
    """Bytes of ``module``'s parameters (optionally only the trainable ones)."""
    return tensor_bytes([p for p in module.parameters() if p.requires_grad or not trainable_only])
