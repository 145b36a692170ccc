"""The peak memory of one stage-2 training step, measured at small probe sizes and predicted at any size.

One step (forward, loss, backward, optimizer step) of ``B`` videos at fidelity ``T x F x S x S`` holds::

    peak = parameters + gradients (trainable) + optimizer state (trainable, fp32)     # static, counted exactly
         + input frames (uint8, B * T * F * 3 * S^2 bytes)                           # static, counted exactly
         + max(encoder saved + head peak,                                            # fitted from probes
               encoder peak + head retained,
               optimizer step's transient)

* The **encoder** terms are linear in the pixels that carry gradients, ``px = B * K * F * S^2`` (``K`` snippets of
  each video back-propagate: all ``T``, or partial back-prop's chosen share). Probes of the encoder alone (features
  into a squared-mean loss) at a few sizes of ``K`` and ``S`` (batch 1, the run's ``F``; partial back-prop's probes
  run as many snippets as give that ``K``) give, for each lever combination (checkpointing, bf16 autocast, partial
  share), three terms:

  - ``saved``: the bytes still alive after the forward (what backward keeps, the features included), ``a + b * px``;
  - ``forward peak``: the forward's own peak, ``a + b * px``;
  - ``backward``: the backward's peak on top of ``saved``, ``max(floor, a + b * px)``. Backward holds a weight's
    gradient (and, under autocast with checkpointing, the recomputed stages' bf16 weight copies) whatever the
    input's size: a floor of a few weights' bytes, which the recomputed activations of a checkpointed stage pass
    once ``px`` is large. A straight line through probes on the floor would miss that slope (it under-predicted
    checkpointing + bf16 + partial back-prop at the paper's 100 x 8 x 224^2 by 47%), so the line is fitted through
    the probes clearly above the floor only, and the probes grow (``K`` doubled) until two are, or until the floor
    is a small part of the probe's peak.

  The encoder's peak is ``max(forward peak, saved + backward)``.
* The **head** sees features ``[B, D, T]``: G-TAD's proposal maps grow with ``T^2``, so it is probed on its own at
  the target ``T`` (batch 1, scaled by ``B``): forward, loss and backward.
* While the head runs, the encoder's saved activations are alive; while the encoder back-propagates only the head's
  outputs and losses are (``head retained``); the optimizer steps after both: hence the ``max``.

Peaks are measured by :mod:`lofi.models.memory_measure` (the profiler's allocation records on CPU,
``torch.cuda.max_memory_allocated`` on CUDA). Step time is
also measured at the probes, fitted per lever combination in the pixels the encoder runs (all ``T`` snippets) plus
the head's time: a **relative** figure (the probes are small, their overheads are not those of a full step).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch

from lofi.core.fidelity import Fidelity
from lofi.models.detector import Detector
from lofi.models.memory_measure import (OPTIMIZER_STATE_COPIES, Levers, MemoryTrace, StepMeasurement,
                                        build_probe_model, build_training_step, lever_combinations, make_optimizer,
                                        measure_step, module_bytes, probe_frames, probe_grad_mask, probe_targets,
                                        tensor_bytes, wall_seconds)

__all__ = ["OPTIMIZER_STATE_COPIES", "EncoderFit", "EncoderProbe", "FlooredLinearFit", "HeadProbe", "Levers",
           "LinearFit", "MemoryModel", "MemoryPrediction", "MemoryTrace", "StepMeasurement", "fit_memory_model",
           "grad_snippets", "lever_combinations", "measure_step", "measure_training_step", "snippets_for_grad"]


#: The probes' (snippets with gradients, frame_size_px), batch 1: a few snippets, multiples of 32 px, spread over
#: 7x in pixels so that the slopes are well determined; partial back-prop's probes run more snippets for the same
#: number with gradients (:func:`snippets_for_grad`).
PROBE_SIZES: tuple[tuple[int, int], ...] = ((2, 96), (4, 128), (8, 128))
#: A probe's backward counts as "on the floor" below this multiple of the smallest probe's.
_ABOVE_FLOOR = 1.3
#: Probes grow while the backward's floor is more than this share of the largest probe's peak ...
_FLOOR_SHARE = 0.1
#: ... at most this many times (``K`` doubled each time).
_MAX_GROWTH = 6


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
class FlooredLinearFit:
    """``max(floor, offset + slope * x)``: a term that stays at ``floor`` until the line passes it."""

    floor: float
    line: LinearFit
    rising: bool = True  # whether the line was fitted through two or more points above the floor

    def __call__(self, x: float) -> float:
        return max(self.floor, self.line(x))

    @staticmethod
    def fit(xs: Sequence[float], ys: Sequence[float], *, above: float = _ABOVE_FLOOR) -> "FlooredLinearFit":
        """The floor is the smallest ``y``; the line is fitted through the points above ``above`` times it (all
        points when fewer than two are: the term is flat over the probes)."""
        floor = min(ys)
        rising = [(x, y) for x, y in zip(xs, ys) if y > above * floor]
        points = rising if len(rising) >= 2 else list(zip(xs, ys))
        return FlooredLinearFit(floor=floor, line=LinearFit.fit([x for x, _ in points], [y for _, y in points]),
                                rising=len(rising) >= 2)


@dataclass(frozen=True)
class EncoderProbe:
    """One probe of the encoder alone: ``grad_px`` pixels with gradients (``all_px`` in all), what its forward left
    alive (``saved_bytes``), the forward's peak, the backward's peak on top of ``saved_bytes``, and its seconds."""

    grad_px: int
    all_px: int
    saved_bytes: int
    forward_peak_bytes: int
    backward_bytes: int
    seconds: float

    @property
    def peak_bytes(self) -> int:
        """The probe's peak: its forward's, or what the forward saved plus the backward on top."""
        return max(self.forward_peak_bytes, self.saved_bytes + self.backward_bytes)


@dataclass(frozen=True)
class EncoderFit:
    """One lever combination's encoder terms against gradient pixels (seconds against all pixels), and the probes
    they were fitted to."""

    saved_bytes: LinearFit
    forward_peak_bytes: LinearFit
    backward_bytes: FlooredLinearFit
    seconds: LinearFit
    probes: tuple[EncoderProbe, ...] = ()

    def peak_bytes(self, grad_px: float) -> float:
        """The encoder's peak: its forward's, or what the forward saved plus the backward on top."""
        return max(self.forward_peak_bytes(grad_px), self.saved_bytes(grad_px) + self.backward_bytes(grad_px))

    @staticmethod
    def fit(probes: Sequence[EncoderProbe]) -> "EncoderFit":
        grad_px = [p.grad_px for p in probes]
        return EncoderFit(saved_bytes=LinearFit.fit(grad_px, [p.saved_bytes for p in probes]),
                          forward_peak_bytes=LinearFit.fit(grad_px, [p.forward_peak_bytes for p in probes]),
                          backward_bytes=FlooredLinearFit.fit(grad_px, [p.backward_bytes for p in probes]),
                          seconds=LinearFit.fit([p.all_px for p in probes], [p.seconds for p in probes]),
                          probes=tuple(probes))

    def settled(self) -> bool:
        """Whether the probes determine the backward's slope: two of them clearly above the floor, or the floor a
        small part of the largest probe's peak (its slope then matters little)."""
        largest = max(self.probes, key=lambda p: p.grad_px)
        return self.backward_bytes.rising or self.backward_bytes.floor <= _FLOOR_SHARE * largest.peak_bytes


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


def snippets_for_grad(num_grad_snippets: int, share: float | None) -> int:
    """The fewest snippets of which :func:`grad_snippets` back-propagates ``num_grad_snippets`` (or more)."""
    num_snippets = num_grad_snippets
    while grad_snippets(num_snippets, share) < num_grad_snippets:
        num_snippets += 1
    return num_snippets


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

    def _encoder_fit(self, levers: Levers, optimizer: str) -> EncoderFit:
        """The encoder fit of ``levers``; a clear error for levers not probed or an unknown optimizer."""
        if levers not in self.encoder_fits:
            raise KeyError(f"levers {levers.name!r} were not probed; fit the model with them "
                           f"(probed: {', '.join(lv.name for lv in self.encoder_fits)})")
        if optimizer not in OPTIMIZER_STATE_COPIES:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZER_STATE_COPIES)}, got {optimizer!r}")
        return self.encoder_fits[levers]

    def predict(self, *, fidelity: Fidelity, batch_size: int, levers: Levers = Levers(),
                optimizer: str = "sgd") -> MemoryPrediction:
        """The predicted peak of one step of ``batch_size`` videos at ``fidelity`` with ``levers``."""
        fit = self._encoder_fit(levers, optimizer)
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

    def predict_encoder(self, *, fidelity: Fidelity, batch_size: int, levers: Levers = Levers(),
                        optimizer: str = "sgd") -> MemoryPrediction:
        """The predicted peak of one step of the encoder alone (stage 1's clip classifier, whose linear layer's few
        weights are left out) on ``batch_size`` clips of ``fidelity`` snippets: :meth:`predict` without the head's
        terms. Stage 1 has no partial back-prop."""
        if levers.partial_share is not None:
            raise ValueError(f"levers {levers.name!r}: stage 1 back-propagates every snippet (no partial back-prop)")
        fit = self._encoder_fit(levers, optimizer)
        px = batch_size * fidelity.num_snippets * self.frames_per_snippet * fidelity.frame_size_px ** 2
        trainable = self.trainable_encoder_bytes
        return MemoryPrediction(
            param_bytes=self.encoder_param_bytes, grad_bytes=trainable,
            optimizer_bytes=OPTIMIZER_STATE_COPIES[optimizer] * trainable, frames_bytes=3 * px,
            encoder_saved_bytes=int(fit.saved_bytes(px)), encoder_peak_bytes=int(fit.peak_bytes(px)), head_bytes=0,
            head_retained_bytes=0, optimizer_step_bytes=int(self.optimizer_step_ratio.get(optimizer, 0.0) * trainable),
            seconds=fit.seconds(px))


def _fastest(device: torch.device, fn: Callable[[], object], repeats: int = 3) -> float:
    """The fastest of ``repeats`` runs of ``fn`` (the least disturbed by other work on the machine)."""
    return min(wall_seconds(device, fn, repeats))


def _probe_encoder(model: Detector, frames: torch.Tensor, levers: Levers, trace: MemoryTrace,
                   key: str) -> tuple[int, int, float]:
    """The encoder alone, features into a squared-mean loss: windows ``key:fwd`` (what the forward leaves alive is
    what backward keeps) and ``key:bwd`` in ``trace``; returns the pixels with gradients, all pixels, and the
    seconds of one unmeasured step."""
    b, t = frames.shape[:2]
    mask = probe_grad_mask(levers, batch_size=b, num_snippets=t, device=frames.device)  # [B, T] or None

    def forward() -> torch.Tensor:
        return model.features(frames, grad_mask=mask).square().mean()  # [B, D, T] -> []

    def backward(loss: torch.Tensor) -> None:
        if loss.requires_grad:  # not when every stage is frozen
            loss.backward()

    model.zero_grad(set_to_none=False)
    backward(forward())  # warm-up: gradients allocated
    seconds = _fastest(frames.device, lambda: backward(forward()), repeats=2)
    with trace.window(f"{key}:fwd"):
        loss = forward()
    with trace.window(f"{key}:bwd"):
        backward(loss)
        del loss
    all_px = frames[0, 0, :, 0].numel() * b * t  # B * T * F * S^2
    grad_px = all_px if mask is None else all_px * int(mask.sum()) // (b * t)
    return grad_px, all_px, seconds


def _probe_encoders(jobs: Sequence[tuple[Levers, Detector, int, int]], frames_per_snippet: int,
                    device: torch.device) -> list[EncoderProbe]:
    """Each job ``(levers, model, grad snippets, frame size)`` probed once, all in one trace."""
    runs = []
    with MemoryTrace(device) as trace:
        for j, (levers, model, num_grad, size) in enumerate(jobs):
            num_snippets = snippets_for_grad(num_grad, levers.partial_share)
            frames = probe_frames(batch_size=1, fidelity=Fidelity("probe", num_snippets, size),
                                  frames_per_snippet=frames_per_snippet, device=device)  # [1, T, F, 3, S, S]
            runs.append(_probe_encoder(model, frames, levers, trace, str(j)))
            del frames
    return [EncoderProbe(grad_px=grad_px, all_px=all_px, saved_bytes=trace.end_bytes(f"{j}:fwd"),
                         forward_peak_bytes=trace.peak_bytes(f"{j}:fwd"), backward_bytes=trace.peak_bytes(f"{j}:bwd"),
                         seconds=seconds) for j, (grad_px, all_px, seconds) in enumerate(runs)]


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
            targets = probe_targets(1, memory.device)

            def step() -> tuple[Any, dict[str, torch.Tensor]]:
                outputs = head(features)
                losses = head.loss(outputs, targets)
                losses["loss"].backward()
                return outputs, losses  # alive through the encoder's backward too, as in a training step

            head.zero_grad(set_to_none=False)
            step()  # warm-up
            seconds = _fastest(memory.device, step)
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
    """Probe the encoder at ``probe_sizes`` (``(snippets with gradients, frame_size_px)``, batch 1) for each lever
    combination and fit its terms, growing the probes where the backward's slope is not determined yet (see the
    module docstring); ``encoder_options`` are the run's own (``frozen_stages``, ``frozen_bn``, ``width``, ...)."""
    device = torch.device(device)
    encoder_options, head_options = dict(encoder_options or {}), dict(head_options or {})
    probe_snippets = 8  # the head is built (with its default neighbours) but unused by the encoder's probes
    models = {lever: build_probe_model(encoder=encoder, head=head, num_snippets=probe_snippets,
                                       encoder_options=encoder_options, head_options=head_options, levers=lever,
                                       device=device) for lever in levers}
    base = models[levers[0]].encoder  # the levers change no parameter
    memory = MemoryModel(
        encoder=encoder, head=head, frames_per_snippet=frames_per_snippet, encoder_options=encoder_options,
        head_options=head_options, device=device, encoder_param_bytes=module_bytes(base),
        trainable_encoder_bytes=module_bytes(base, trainable_only=True))
    jobs = [(lever, models[lever], k, size) for lever in levers for k, size in probe_sizes]
    probes: dict[Levers, list[EncoderProbe]] = {lever: [] for lever in levers}
    grown_size = max(size for _, size in probe_sizes)
    for _ in range(_MAX_GROWTH + 1):  # the probes, then larger ones for the lever combinations still unsettled
        largest: dict[Levers, int] = {}  # each probed lever combination's most snippets with gradients
        for (lever, _, num_grad, _), probe in zip(jobs, _probe_encoders(jobs, frames_per_snippet, device)):
            probes[lever].append(probe)
            largest[lever] = max(num_grad, largest.get(lever, 0))
        for lever in largest:
            memory.encoder_fits[lever] = EncoderFit.fit(probes[lever])
        jobs = [(lever, models[lever], 2 * num_grad, grown_size) for lever, num_grad in largest.items()
                if not memory.encoder_fits[lever].settled()]
        if not jobs:
            break
    model = models[levers[-1]]
    with MemoryTrace(device) as trace:
        trainable = [p for p in model.parameters() if p.requires_grad]
        for p in trainable:
            p.grad = torch.zeros_like(p) if p.grad is None else p.grad
        for name in OPTIMIZER_STATE_COPIES:
            optimizer = make_optimizer(name, trainable)
            for _ in range(2):  # state allocated
                optimizer.step()
            with trace.window(f"optimizer:{name}"):
                optimizer.step()
    memory.optimizer_step_ratio = {name: trace.peak_bytes(f"optimizer:{name}") / max(1, tensor_bytes(trainable))
                                   for name in OPTIMIZER_STATE_COPIES}
    return memory


def measure_training_step(memory: MemoryModel, *, fidelity: Fidelity, batch_size: int, levers: Levers = Levers(),
                          optimizer: str = "sgd", repeats: int = 1) -> StepMeasurement:
    """A direct measurement of what :meth:`MemoryModel.predict` predicts: one full step (with the optimizer) of the
    same encoder and head at ``fidelity``, ``batch_size`` and ``levers``."""
    return measure_step(build_training_step(
        encoder=memory.encoder, head=memory.head, fidelity=fidelity, batch_size=batch_size,
        frames_per_snippet=memory.frames_per_snippet, levers=levers, optimizer=optimizer,
        encoder_options=memory.encoder_options, head_options=memory.head_options, device=memory.device),
        repeats=repeats)
