"""The peak memory of one stage-2 training step, measured at small probe sizes and predicted at any size.

One step (forward, loss, backward, optimizer step) of ``B`` videos at fidelity ``T x F x S x S`` holds::

    peak = parameters + gradients (trainable) + optimizer state (trainable, fp32)     # static, counted exactly
         + input frames (uint8, B * T * F * 3 * S^2 bytes)                           # static, counted exactly
         + max(encoder saved + head peak,  encoder peak)                             # fitted from probes

* The **encoder** terms are linear in the pixels that carry gradients, ``px = B * K * F * S^2`` (``K`` snippets of
  each video back-propagate: all ``T``, or partial back-prop's chosen share). Probes of the encoder alone (features
  into a squared-mean loss) at a few sizes of ``T`` and ``S`` (multiples of 32 px, batch 1, the run's ``F``) give, for
  each lever
  combination (checkpointing, bf16 autocast, partial share), the bytes still alive after the forward (``saved``:
  what backward keeps, the features included) and the step's peak; each is fitted ``a + b * px`` by least squares.
* The **head** sees features ``[B, D, T]``: G-TAD's proposal maps grow with ``T^2``, so it is probed on its own at
  the target ``T`` (batch 1, scaled by ``B``): forward, loss and backward.
* While the head runs, the encoder's saved activations are alive; while the encoder back-propagates the head's are
  gone: hence the ``max``.

On CPU a step's peak is read from the PyTorch profiler's allocation records (every allocation and free, in time
order: tensors only, not the allocator's cache); on CUDA it is ``torch.cuda.max_memory_allocated``. Step time is
also measured at the probes, fitted per lever combination in the pixels the encoder runs (all ``T`` snippets) plus
the head's time: a **relative** figure (the probes are small, their overheads are not those of a full step).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

import torch
from torch import nn

from lofi.core.fidelity import Fidelity
from lofi.core.targets import SegmentTargets
from lofi.models.detector import Detector, create_model
from lofi.models.encoders.levers import AutocastMode
from lofi.models.partial_backprop import draw_grad_mask
from lofi.models.registry import create_encoder

#: Optimizer state per trainable parameter, in fp32 copies: SGD with momentum keeps one, AdamW two.
OPTIMIZER_STATE_COPIES: dict[str, int] = {"sgd": 1, "adamw": 2}
#: The probes' (num_snippets, frame_size_px): multiples of 32 px, a few snippets, batch 1; large enough that
#: activations, not per-weight buffers (bf16 weight copies), set the peak.
PROBE_SIZES: tuple[tuple[int, int], ...] = ((4, 96), (8, 96), (4, 128))
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


# -- measuring ----------------------------------------------------------------------------------------------------
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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class StepMeasurement:
    """One measured training step: ``peak_bytes`` is everything alive at the step's peak (``static_bytes`` =
    parameters, gradients, optimizer state and input frames, alive throughout, plus the step's own peak)."""

    peak_bytes: int
    static_bytes: int
    seconds: float


def measure_step(model: Detector, frames: torch.Tensor, targets: SegmentTargets, *,
                 optimizer: torch.optim.Optimizer | None = None, grad_mask: torch.Tensor | None = None,
                 repeats: int = 1) -> StepMeasurement:
    """Measure one training step of ``model`` on ``frames`` ``[B, T, F, 3, S, S]``: a warm-up step (gradients and
    optimizer state allocated), ``repeats`` timed steps (median), then one measured step.

    Gradients are kept allocated between steps (``zero_grad(set_to_none=False)``), so the peak counts them whole."""
    device = frames.device

    def step() -> None:
        model.zero_grad(set_to_none=False)
        model.loss(model(frames, grad_mask=grad_mask), targets)["loss"].backward()
        if optimizer is not None:
            optimizer.step()

    step()
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
    params = list(model.parameters())
    static = (tensor_bytes(params) + tensor_bytes([p.grad for p in params if p.grad is not None])
              + optimizer_state_bytes(optimizer) + tensor_bytes([frames]))
    with MemoryTrace(device) as trace, trace.window("step"):
        step()
    return StepMeasurement(peak_bytes=static + trace.peak_bytes("step"), static_bytes=static,
                           seconds=statistics.median(times) if times else float("nan"))


# -- the model ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LinearFit:
    """``offset + slope * x`` (bytes or seconds against pixels), least squares over the probes."""

    offset: float
    slope: float

    def __call__(self, x: float) -> float:
        return self.offset + self.slope * x

    @staticmethod
    def fit(xs: Sequence[float], ys: Sequence[float]) -> "LinearFit":
        mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
        var = sum((x - mean_x) ** 2 for x in xs)
        slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / var if var else 0.0
        slope = max(slope, 0.0)
        return LinearFit(offset=mean_y - slope * mean_x, slope=slope)


@dataclass(frozen=True)
class EncoderFit:
    """One lever combination's encoder terms: saved and peak bytes against gradient pixels, seconds against pixels."""

    saved_bytes: LinearFit
    peak_bytes: LinearFit
    seconds: LinearFit


@dataclass(frozen=True)
class HeadProbe:
    """The head alone at ``num_snippets`` and batch 1: its step's peak bytes and seconds (scaled by the batch), and
    its parameters' bytes (all, and trainable)."""

    num_snippets: int
    peak_bytes: int
    seconds: float
    param_bytes: int
    trainable_bytes: int
    retained_bytes: int = 0  # the head's outputs and losses, alive until the step's backward ends


@dataclass(frozen=True)
class MemoryPrediction:
    """A predicted step: the static parts (exact) and the fitted activation part, in bytes; ``seconds`` relative."""

    param_bytes: int
    grad_bytes: int
    optimizer_bytes: int
    frames_bytes: int
    encoder_saved_bytes: int
    encoder_peak_bytes: int
    head_bytes: int
    head_retained_bytes: int  # the head's outputs and losses, alive through the encoder's backward
    optimizer_step_bytes: int  # transient of ``optimizer.step()``, after backward
    seconds: float

    @property
    def activation_bytes(self) -> int:
        return max(self.encoder_saved_bytes + self.head_bytes, self.encoder_peak_bytes + self.head_retained_bytes,
                   self.optimizer_step_bytes)

    @property
    def peak_bytes(self) -> int:
        return self.param_bytes + self.grad_bytes + self.optimizer_bytes + self.frames_bytes + self.activation_bytes


def grad_snippets(num_snippets: int, share: float | None) -> int:
    """Snippets of each video that back-propagate (``draw_grad_mask``'s ``random`` mode count)."""
    if share is None:
        return num_snippets
    return min(num_snippets, max(1, int(share * num_snippets + 0.5)))


@dataclass
class MemoryModel:
    """Predicts a stage-2 step's peak for one encoder + head (and base encoder options, e.g. ``frozen_stages``)
    from probes; build it with :func:`fit_memory_model`. Head probes are taken on first use at each ``T``."""

    encoder: str
    head: str
    frames_per_snippet: int
    encoder_options: Mapping[str, Any]
    head_options: Mapping[str, Any]
    device: torch.device
    encoder_param_bytes: int
    trainable_encoder_bytes: int
    encoder_fits: dict[Levers, EncoderFit] = field(default_factory=dict)
    optimizer_step_ratio: dict[str, float] = field(default_factory=dict)  # the step's transient / trainable bytes
    head_probes: dict[int, HeadProbe] = field(default_factory=dict)

    def probe_heads(self, snippet_counts: Sequence[int]) -> None:
        """Probe the head at each ``T`` not probed yet (one trace for all)."""
        missing = sorted({t for t in snippet_counts if t not in self.head_probes})
        if missing:
            self.head_probes.update(_probe_heads(self, missing))

    def head_probe(self, num_snippets: int) -> HeadProbe:
        self.probe_heads([num_snippets])
        return self.head_probes[num_snippets]

    def predict(self, *, fidelity: Fidelity, batch_size: int, levers: Levers = Levers(),
                optimizer: str = "sgd") -> MemoryPrediction:
        """The predicted peak of one step of ``batch_size`` videos at ``fidelity`` with ``levers``."""
        if levers not in self.encoder_fits:
            raise KeyError(f"levers {levers.name!r} were not probed; fit the model with them "
                           f"(probed: {', '.join(lv.name for lv in self.encoder_fits)})")
        if optimizer not in OPTIMIZER_STATE_COPIES:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZER_STATE_COPIES)}, got {optimizer!r}")
        fit = self.encoder_fits[levers]
        size, t, f = fidelity.frame_size_px, fidelity.num_snippets, self.frames_per_snippet
        grad_px = batch_size * grad_snippets(t, levers.partial_share) * f * size ** 2
        all_px = batch_size * t * f * size ** 2
        head = self.head_probe(t)
        trainable = self.trainable_encoder_bytes + head.trainable_bytes
        return MemoryPrediction(
            param_bytes=self.encoder_param_bytes + head.param_bytes, grad_bytes=trainable,
            optimizer_bytes=OPTIMIZER_STATE_COPIES[optimizer] * trainable,
            frames_bytes=batch_size * t * f * 3 * size ** 2,
            encoder_saved_bytes=int(fit.saved_bytes(grad_px)), encoder_peak_bytes=int(fit.peak_bytes(grad_px)),
            head_bytes=batch_size * head.peak_bytes, head_retained_bytes=batch_size * head.retained_bytes,
            optimizer_step_bytes=int(self.optimizer_step_ratio.get(optimizer, 0.0) * trainable),
            seconds=fit.seconds(all_px) + batch_size * head.seconds)


def _targets(batch_size: int, device: torch.device) -> SegmentTargets:
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


def _timed(device: torch.device, fn: Any, repeats: int = 3) -> float:
    """The fastest of ``repeats`` runs of ``fn`` (the least disturbed by other work on the machine)."""
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return min(times)


def _probe_encoder(model: Detector, frames: torch.Tensor, levers: Levers, trace: MemoryTrace, key: str) -> float:
    """The encoder alone, features into a squared-mean loss: windows ``key:fwd`` (what the forward leaves alive is
    what backward keeps) and ``key:bwd`` in ``trace``; returns the seconds of one unmeasured step."""
    b, t = frames.shape[:2]
    mask = None if levers.partial_share is None else draw_grad_mask(
        batch_size=b, num_snippets=t, share=levers.partial_share, seed=0).to(frames.device)  # [B, T]

    def forward() -> torch.Tensor:
        return model.features(frames, grad_mask=mask).square().mean()  # [B, D, T] -> []

    def backward(loss: torch.Tensor) -> None:
        if loss.requires_grad:  # not when every stage is frozen
            loss.backward()

    model.zero_grad(set_to_none=False)
    backward(forward())  # warm-up: gradients allocated
    seconds = _timed(frames.device, lambda: backward(forward()))
    with trace.window(f"{key}:fwd"):
        loss = forward()
    with trace.window(f"{key}:bwd"):
        backward(loss)
        del loss
    return seconds


def _probe_heads(memory: MemoryModel, snippet_counts: Sequence[int]) -> dict[int, HeadProbe]:
    """The head alone at each ``T`` of ``snippet_counts``, batch 1: forward, loss and backward."""
    runs = []
    with MemoryTrace(memory.device) as trace:
        for num_snippets in snippet_counts:
            model = build_probe_model(encoder=memory.encoder, head=memory.head, num_snippets=num_snippets,
                                      encoder_options=memory.encoder_options, head_options=memory.head_options,
                                      device=memory.device)
            head = model.head
            features = torch.randn(1, model.encoder.feature_dim, num_snippets, device=memory.device,
                                   requires_grad=True)  # [1, D, T]
            targets = _targets(1, memory.device)

            def step() -> tuple[Any, dict[str, torch.Tensor]]:
                outputs = head(features)
                losses = head.loss(outputs, targets)
                losses["loss"].backward()
                return outputs, losses  # alive through the encoder's backward too, as in a training step

            head.zero_grad(set_to_none=False)
            step()  # warm-up
            seconds = _timed(memory.device, step)
            with trace.window(str(num_snippets)):
                kept = step()
                features.grad = None
            del kept
            runs.append((num_snippets, head, seconds))
    return {t: HeadProbe(num_snippets=t, peak_bytes=trace.peak_bytes(str(t)), seconds=seconds,
                         retained_bytes=trace.end_bytes(str(t)),
                         param_bytes=module_bytes(head), trainable_bytes=module_bytes(head, trainable_only=True))
            for t, head, seconds in runs}


def fit_memory_model(*, encoder: str, head: str, frames_per_snippet: int, levers: Sequence[Levers] = (Levers(),),
                     encoder_options: Mapping[str, Any] | None = None, head_options: Mapping[str, Any] | None = None,
                     device: torch.device | str = "cpu",
                     probe_sizes: Sequence[tuple[int, int]] = PROBE_SIZES) -> MemoryModel:
    """Probe the encoder at ``probe_sizes`` (``(num_snippets, frame_size_px)``, batch 1) for each lever combination
    and fit its terms; ``encoder_options`` are the run's own (``frozen_stages``, ``frozen_bn``, ``width``, ...)."""
    device = torch.device(device)
    encoder_options, head_options = dict(encoder_options or {}), dict(head_options or {})
    probe_snippets = max(t for t, _ in probe_sizes)  # the head is built but unused by the encoder's probes
    base = create_encoder(encoder, **encoder_options)
    memory = MemoryModel(
        encoder=encoder, head=head, frames_per_snippet=frames_per_snippet, encoder_options=encoder_options,
        head_options=head_options, device=device, encoder_param_bytes=module_bytes(base),
        trainable_encoder_bytes=module_bytes(base, trainable_only=True))
    seconds: dict[tuple[int, int], float] = {}
    probe_f = frames_per_snippet
    with MemoryTrace(device) as trace:
        for i, lever in enumerate(levers):
            model = build_probe_model(encoder=encoder, head=head, num_snippets=probe_snippets,
                                      encoder_options=encoder_options, head_options=head_options, levers=lever,
                                      device=device)
            for j, (num_snippets, size) in enumerate(probe_sizes):
                frames = probe_frames(batch_size=1, fidelity=Fidelity("probe", num_snippets, size),
                                      frames_per_snippet=probe_f, device=device)
                seconds[i, j] = _probe_encoder(model, frames, lever, trace, f"{i}:{j}")
        trainable = [p for p in model.parameters() if p.requires_grad]
        for p in trainable:
            p.grad = torch.zeros_like(p) if p.grad is None else p.grad
        for name in OPTIMIZER_STATE_COPIES:
            optimizer = make_optimizer(name, trainable)
            for _ in range(2):  # state allocated
                optimizer.step()
            with trace.window(f"optimizer:{name}"):
                optimizer.step()
    for i, lever in enumerate(levers):
        grad_px = [grad_snippets(t, lever.partial_share) * probe_f * size ** 2 for t, size in probe_sizes]
        all_px = [t * probe_f * size ** 2 for t, size in probe_sizes]
        saved = [trace.end_bytes(f"{i}:{j}:fwd") for j in range(len(probe_sizes))]
        peak = [max(trace.peak_bytes(f"{i}:{j}:fwd"),
                    trace.end_bytes(f"{i}:{j}:fwd") + trace.peak_bytes(f"{i}:{j}:bwd"))  # backward on top of saved
                for j in range(len(probe_sizes))]
        memory.encoder_fits[lever] = EncoderFit(saved_bytes=LinearFit.fit(grad_px, saved),
                                                peak_bytes=LinearFit.fit(grad_px, peak),
                                                seconds=LinearFit.fit(all_px, [seconds[i, j]
                                                                               for j in range(len(probe_sizes))]))
    memory.optimizer_step_ratio = {name: trace.peak_bytes(f"optimizer:{name}") / max(1, tensor_bytes(trainable))
                                   for name in OPTIMIZER_STATE_COPIES}
    return memory


def make_optimizer(name: str, parameters: Sequence[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """The optimizers stage 2 builds (:func:`lofi.train.builders.build_optimizer`), for probes: SGD with momentum
    or AdamW, weight decay on."""
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=1e-6, momentum=0.9, weight_decay=1e-4)
    if name == "adamw":
        return torch.optim.AdamW(parameters, lr=1e-6, weight_decay=1e-4)
    raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZER_STATE_COPIES)}, got {name!r}")


def measure_training_step(memory: MemoryModel, *, fidelity: Fidelity, batch_size: int, levers: Levers = Levers(),
                          optimizer: str = "sgd", repeats: int = 1) -> StepMeasurement:
    """A direct measurement of what :meth:`MemoryModel.predict` predicts: one full step (with the optimizer) of the
    same encoder and head at ``fidelity``, ``batch_size`` and ``levers``."""
    model = build_probe_model(encoder=memory.encoder, head=memory.head, num_snippets=fidelity.num_snippets,
                              encoder_options=memory.encoder_options, head_options=memory.head_options,
                              levers=levers, device=memory.device)
    opt = make_optimizer(optimizer, [p for p in model.parameters() if p.requires_grad])
    frames = probe_frames(batch_size=batch_size, fidelity=fidelity, frames_per_snippet=memory.frames_per_snippet,
                          device=memory.device)
    mask = None if levers.partial_share is None else draw_grad_mask(
        batch_size=batch_size, num_snippets=fidelity.num_snippets, share=levers.partial_share,
        seed=0).to(memory.device)
    return measure_step(model, frames, _targets(batch_size, memory.device), optimizer=opt, grad_mask=mask,
                        repeats=repeats)


def module_bytes(module: nn.Module, *, trainable_only: bool = False) -> int:
    """Bytes of ``module``'s parameters (optionally only the trainable ones)."""
    return tensor_bytes([p for p in module.parameters() if p.requires_grad or not trainable_only])
