"""Device choice and the torch.distributed process group (launched by ``torchrun``; never spawned here)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch

from edgepose.errors import ConfigError

from .config import DEVICES

log = logging.getLogger(__name__)


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto``: CUDA, then Apple MPS, then CPU. An explicit device that is absent is a ConfigError."""
    if name not in DEVICES:
        raise ConfigError(f"device {name!r} is not one of {', '.join(DEVICES)}")
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        name = "cuda" if cuda else "mps" if mps else "cpu"
    if name == "cuda":
        if not cuda:
            raise ConfigError("device 'cuda' was asked for but torch sees no CUDA GPU (use auto or cpu)")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if name == "mps" and not mps:
        raise ConfigError("device 'mps' was asked for but this torch build has no MPS (use auto or cpu)")
    return torch.device(name)


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job (world 1 outside torchrun)."""

    rank: int = 0
    local_rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def env_world() -> int:
    """WORLD_SIZE set by torchrun (1 otherwise)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(device: torch.device) -> DistInfo:
    """Join the torchrun job if there is one (NCCL on CUDA, gloo otherwise); idempotent."""
    world = env_world()
    if world <= 1:
        return DistInfo()
    import torch.distributed as dist

    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        log.info("rank %d/%d joined (%s)", dist.get_rank(), world, backend)
    return DistInfo(rank=dist.get_rank(), local_rank=int(os.environ.get("LOCAL_RANK", "0")),
                    world=dist.get_world_size())


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


__all__ = ["DEVICES", "DistInfo", "pick_device", "init_distributed", "env_world", "local_rank"]
