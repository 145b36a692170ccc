"""Distributed set-up from torchrun's environment, and the few collectives the training engine needs.

Launch with ``torchrun`` (single node: ``torchrun --standalone --nproc_per_node=N ...``; several nodes:
``torchrun --nnodes=M --node_rank=i --master_addr=HOST --master_port=PORT --nproc_per_node=N ...``), which sets
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_distributed` joins
the group (NCCL on CUDA, Gloo otherwise). Every helper also works in a plain single process, where it is a
no-op (rank 0 of 1).
"""

from __future__ import annotations

import os
from datetime import timedelta

from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["init_distributed", "is_distributed", "is_main_process", "rank", "world_size", "local_rank",
           "default_device", "barrier", "cleanup", "all_reduce_mean", "unwrap_model"]

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def init_distributed(*, backend: str | None = None, timeout_sec: float = 1800.0) -> bool:
    """Join the process group torchrun describes in the environment; True when running distributed.

    Without ``WORLD_SIZE`` (a plain ``python`` launch) or with ``WORLD_SIZE=1`` nothing is initialised and the
    result is False. ``backend`` defaults to ``"nccl"`` when CUDA is available (each process then uses GPU
    ``LOCAL_RANK``) and ``"gloo"`` otherwise. Calling it again once initialised returns True.
    """
    if dist.is_available() and dist.is_initialized():
        return True
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed support")
    missing = [name for name in _TORCHRUN_VARS if name not in os.environ]
    if missing:
        raise ValueError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} but {', '.join(missing)} not set: launch with "
                         f"torchrun (e.g. `torchrun --standalone --nproc_per_node=2 ...`), which sets them")
    use_cuda = torch.cuda.is_available() and backend != "gloo"
    if backend is None:
        backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=backend, init_method="env://", rank=int(os.environ["RANK"]),
                            world_size=int(os.environ["WORLD_SIZE"]), timeout=timedelta(seconds=timeout_sec))
    return True


def is_distributed() -> bool:
    """True inside an initialised process group."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's global rank (0 when not distributed)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of processes (1 when not distributed)."""
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    """This process's rank on its node (torchrun's ``LOCAL_RANK``; 0 when unset)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    """True on global rank 0, the process that logs and writes checkpoints."""
    return rank() == 0


def default_device() -> torch.device:
    """``cuda:LOCAL_RANK`` when CUDA is available, else the CPU."""
    return torch.device("cuda", local_rank()) if torch.cuda.is_available() else torch.device("cpu")


def barrier() -> None:
    """Wait for every process (no-op when not distributed)."""
    if not is_distributed():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[torch.cuda.current_device()])
    else:
        dist.barrier()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every process (picklable; ``obj`` itself when not distributed)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def cleanup() -> None:
    """Leave the process group: a barrier first (torch on CPU may abort at exit without it), then destroy it."""
    if not is_distributed():
        return
    barrier()
    dist.destroy_process_group()


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of a floating-point ``tensor`` over all processes, as a new tensor (a copy when not distributed).

    Every process must call it with a tensor of the same shape, on its backend's device (CUDA for NCCL).
    """
    if not tensor.is_floating_point():
        raise TypeError(f"all_reduce_mean needs a floating-point tensor, got {tensor.dtype}")
    out = tensor.detach().clone()
    if is_distributed():
        dist.all_reduce(out, op=dist.ReduceOp.SUM)  # Gloo has no AVG
        out /= dist.get_world_size()
    return out


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel / DataParallel / ``torch.compile`` wrappers."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):
            model = model._orig_mod
        else:
            return model
