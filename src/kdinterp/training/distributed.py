"""Multi-process training with ``torchrun`` (DistributedDataParallel), and its single-process default.

Under ``torchrun --nproc_per_node=N kdinterp train-student ...`` the environment holds
``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; :func:`context` then joins the process group (NCCL on
CUDA, gloo on the CPU) and every training stage runs the same code on its share of each batch.
Without those variables everything runs in one process and the functions here are no-ops.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["Context", "all_reduce_sum", "barrier", "context"]


@dataclass(frozen=True)
class Context:
    """Where this process stands in a (possibly single-process) run.

    Attributes:
        rank: global rank, 0 in a single process.
        world_size: number of processes.
        device: this process's device (``cuda:<local_rank>`` on GPUs).
    """

    rank: int
    world_size: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        """True under torchrun with more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True for the process that writes files and logs (rank 0)."""
        return self.rank == 0


def context(device: torch.device) -> Context:
    """Join the torchrun process group if there is one (idempotent).

    Args:
        device: the device a single-process run would use (``resolve_device``); under torchrun
            on CUDA the process uses ``cuda:<LOCAL_RANK>`` instead.

    Returns:
        This process's :class:`Context`.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Context(0, 1, device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Context(dist.get_rank(), dist.get_world_size(), device)


def all_reduce_sum(values: dict[str, float], ctx: Context) -> dict[str, float]:
    """Sum each value over all processes (identity in a single process)."""
    if not ctx.distributed:
        return values
    keys = sorted(values)
    stacked = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(stacked)
    return dict(zip(keys, stacked.tolist(), strict=True))


def barrier(ctx: Context) -> None:
    """Wait for every process (no-op in a single process)."""
    if ctx.distributed:
        dist.barrier()
