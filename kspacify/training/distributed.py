"""Where training runs: the device, and DistributedDataParallel when started by `torchrun`.

`torchrun --nproc_per_node N ...` sets RANK, LOCAL_RANK and WORLD_SIZE (and MASTER_ADDR/PORT) in each
process; `World.from_env` reads them, so the same command runs alone or distributed with no flag.
The backend follows the device: NCCL on CUDA (one GPU per process, `cuda:LOCAL_RANK`), gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.distributed as dist

__all__ = ["World", "pick_device"]


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (rank 0 of 1 when not distributed)."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> World:
        size = int(env.get("WORLD_SIZE", "1"))
        if size < 1:
            raise ValueError(f"WORLD_SIZE must be >= 1, got {size}")
        rank = int(env.get("RANK", "0"))
        return cls(rank=rank, local_rank=int(env.get("LOCAL_RANK", str(rank))), size=size)

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that logs, validates and writes files."""
        return self.rank == 0

    def start(self, device: torch.device) -> bool:
        """Join the process group if distributed and not joined yet; True if this call joined it."""
        if not self.distributed or dist.is_initialized():
            return False
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, init_method="env://", rank=self.rank, world_size=self.size)
        return True


def pick_device(requested: str = "auto", world: World = World()) -> torch.device:
    """`kspacify.device.resolve_device` (auto: CUDA, then Apple MPS, then CPU; a named device that is
    not here is a ValueError), with an explicit GPU index: cuda:LOCAL_RANK under torchrun, so each
    process drives its own GPU."""
    from kspacify.device import resolve_device

    device = resolve_device(requested)
    if device.type == "cuda" and device.index is None:
        index = world.local_rank if world.distributed else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise ValueError(f"process {world.rank} needs cuda:{index}, but only {torch.cuda.device_count()} GPU(s) are here")
        device = torch.device("cuda", index)
    return device
