"""Memory levers shared by lofi's ResNet encoders: per-stage activation checkpointing, channels-last, autocast,
frozen BatchNorm and frozen stages.

:class:`LeveredEncoder` owns them so each encoder only describes its layers: it lists its five stages (stem,
layer1..layer4) in ``_stages()``, calls ``_setup_levers()`` once its modules exist, and runs each stage through
``_run_stage`` inside ``_autocast``.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Literal, Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

from lofi.models.encoders.base import VideoEncoder

#: ``autocast`` values: bfloat16 (CPU or CUDA) or float16 (CUDA only).
AutocastMode = Literal["bf16", "fp16"]
_AUTOCAST_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}

#: stem, layer1, layer2, layer3, layer4; ``frozen_stages`` counts from the stem.
NUM_STAGES = 5


class LeveredEncoder(VideoEncoder):
    """A :class:`VideoEncoder` made of five stages (stem, layer1..layer4), with the memory levers as options.

    - ``checkpoint_stages``: recompute each stage's activations in backward (``torch.utils.checkpoint``,
      non-reentrant). BatchNorm running statistics are updated once per step, as without checkpointing.
    - ``channels_last``: weights and activations in channels-last memory format (faster convs on recent GPUs).
    - ``autocast``: ``None``, ``"bf16"`` or ``"fp16"`` (CUDA only): mixed precision inside ``forward``; the
      output is float32 either way.
    - ``frozen_bn``: every BatchNorm stays in eval mode (running statistics frozen) and its affine gets no grad.
    - ``frozen_stages``: the first ``k`` stages (0 = none, 1 = stem, 2 = stem + layer1, ..., 5 = all) get no
      grad and stay in eval mode, even after ``.train()``.
    """

    def __init__(self, *, checkpoint_stages: bool = False, channels_last: bool = False,
                 autocast: AutocastMode | None = None, frozen_bn: bool = False, frozen_stages: int = 0) -> None:
        super().__init__()
        if autocast is not None and autocast not in _AUTOCAST_DTYPES:
            raise ValueError(f"autocast must be None, 'bf16' or 'fp16', got {autocast!r}")
        valid_int = isinstance(frozen_stages, int) and not isinstance(frozen_stages, bool)
        if not valid_int or not 0 <= frozen_stages <= NUM_STAGES:
            raise ValueError(f"frozen_stages must be an int in 0..{NUM_STAGES} (0 = none, 1 = stem, 2 = stem + "
                             f"layer1, ..., {NUM_STAGES} = all), got {frozen_stages!r}")
        self.checkpoint_stages = bool(checkpoint_stages)
        self.channels_last = bool(channels_last)
        self.autocast = autocast
        self.frozen_bn = bool(frozen_bn)
        self.frozen_stages = frozen_stages

    # -- what subclasses provide -------------------------------------------------------------------------------
    #: ``torch.channels_last`` for 2-D encoders, ``torch.channels_last_3d`` for 3-D ones.
    _memory_format: torch.memory_format = torch.channels_last

    def _stages(self) -> list[list[nn.Module]]:  # pragma: no cover - abstract
        """The modules of each of the five stages, stem first."""
        raise NotImplementedError

    # -- used by subclasses ------------------------------------------------------------------------------------
    def _setup_levers(self) -> None:
        """Apply freezing and memory format; call at the end of the subclass constructor."""
        stages = self._stages()
        if len(stages) != NUM_STAGES:
            raise RuntimeError(f"{type(self).__name__}._stages() must list {NUM_STAGES} stages, got {len(stages)}")
        for group in stages[: self.frozen_stages]:
            for module in group:
                module.requires_grad_(False)
        if self.frozen_bn:
            for module in self.modules():
                if isinstance(module, _BatchNorm):
                    module.requires_grad_(False)
        if self.channels_last:
            self.to(memory_format=self._memory_format)
        self.train(self.training)

    def _to_memory_format(self, x: torch.Tensor) -> torch.Tensor:
        """Activations in the weights' memory format: channels-last with the lever, else standard. Frames arrive
        channels-last from the decoder; left so, their weight gradients would come out channels-last too and
        DistributedDataParallel would copy them into its buckets at every step."""
        return x.contiguous(memory_format=self._memory_format if self.channels_last else torch.contiguous_format)

    def _autocast(self, device_type: str) -> contextlib.AbstractContextManager:
        """The autocast context for inputs on ``device_type`` (a no-op when ``autocast`` is None)."""
        if self.autocast is None:
            return contextlib.nullcontext()
        if self.autocast == "fp16" and device_type != "cuda":
            raise ValueError(f"{type(self).__name__}: autocast='fp16' needs CUDA inputs, got {device_type!r} "
                             f"tensors; use autocast='bf16' (or None) on {device_type}")
        return torch.autocast(device_type=device_type, dtype=_AUTOCAST_DTYPES[self.autocast])

    def _run_stage(self, index: int, fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """``fn(x)`` for stage ``index`` (0 = stem), checkpointed when asked and when it has something to train."""
        group = self._stages()[index]
        trains = x.requires_grad or any(p.requires_grad for m in group for p in m.parameters())
        if not (self.checkpoint_stages and torch.is_grad_enabled() and trains):
            return fn(x)
        return checkpoint(fn, x, use_reentrant=False,
                          context_fn=lambda: (contextlib.nullcontext(), bn_stats_restored(group)))

    @staticmethod
    def _check_frames(frames: torch.Tensor) -> None:
        if frames.dim() != 6 or frames.shape[3] != 3:
            raise ValueError(f"expected frames [B, T, F, 3, H, W], got {tuple(frames.shape)}")
        if not frames.is_floating_point():
            raise ValueError(f"expected normalised float frames, got {frames.dtype}; convert uint8 frames with "
                             f"lofi.models.encoders.base.normalize_frames")

    # -- nn.Module ---------------------------------------------------------------------------------------------
    def train(self, mode: bool = True) -> "LeveredEncoder":
        """Like ``nn.Module.train``, but frozen stages and (with ``frozen_bn``) every BatchNorm stay in eval."""
        super().train(mode)
        if mode:
            for group in self._stages()[: self.frozen_stages]:
                for module in group:
                    module.eval()
            if self.frozen_bn:
                for module in self.modules():
                    if isinstance(module, _BatchNorm):
                        module.eval()
        return self


@contextlib.contextmanager
def bn_stats_restored(modules: Sequence[nn.Module]) -> Iterator[None]:
    """Put back the running statistics of training BatchNorms after the block: the recomputation of a
    checkpointed stage (or the no-grad pass of :mod:`lofi.models.partial_backprop`) must not update them a second
    time."""
    saved = []
    for root in modules:
        for module in root.modules():
            if isinstance(module, _BatchNorm) and module.training and module.track_running_stats:
                saved.append((module, [b.clone() for b in _bn_buffers(module)]))
    try:
        yield
    finally:
        with torch.no_grad():
            for module, buffers in saved:
                for live, old in zip(_bn_buffers(module), buffers):
                    live.copy_(old)


def _bn_buffers(module: _BatchNorm) -> list[torch.Tensor]:
    return [b for b in (module.running_mean, module.running_var, module.num_batches_tracked) if b is not None]
