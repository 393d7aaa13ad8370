"""Multi-process data parallelism under ``torchrun`` (gloo on CPU, NCCL on GPU).

Each rank reads its own shard of the batches; only rank 0 writes checkpoints and logs.
Without torchrun's environment variables everything here is a single-process no-op.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init(device_type: str) -> DistInfo:
    """Join the process group torchrun describes through RANK / WORLD_SIZE / LOCAL_RANK."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    if device_type == "cuda":
        torch.cuda.set_device(info.local_rank)
    return info


def sum_each(values: Sequence[float], info: DistInfo, device: torch.device) -> list[float]:
    """Sum each number over all ranks, all in one all-reduce (identity when running alone)."""
    if not info.enabled:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return [float(v) for v in tensor.tolist()]


def sum_all(value: float, info: DistInfo, device: torch.device) -> float:
    """Sum one number over all ranks."""
    return sum_each([value], info, device)[0]


def any_rank(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every rank when it is True on any rank (stop signals, early stopping)."""
    return sum_all(float(flag), info, device) > 0


def leave() -> None:
    """Leave the process group, if this process joined one (at the end of a run, or when it
    stops while starting)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
