"""torchrun (DistributedDataParallel) helpers: the process group, and numbers or tensors shared
between the processes. In a single process every helper is the identity."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def distributed(device: torch.device) -> tuple[int, int, torch.device]:
    """``(rank, world size, device)``. Under torchrun (``WORLD_SIZE`` > 1) the process group is
    initialised once (NCCL for GPUs, gloo for CPUs) and each process takes GPU ``LOCAL_RANK``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


def _sum_over_processes(values, device) -> list:
    """Sum numbers over the torchrun processes (identity in a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return values
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def _mean_over_processes(tensors: list[torch.Tensor], world: int) -> list[torch.Tensor]:
    for t in tensors:
        dist.all_reduce(t)
        t.div_(world)
    return tensors


def _from_rank0(t: torch.Tensor, device) -> torch.Tensor:
    """Process 0's tensor on every process (RST's pseudo-labels)."""
    if not (dist.is_available() and dist.is_initialized()):
        return t
    t = t.to(device)
    dist.broadcast(t, 0)
    return t.cpu()
