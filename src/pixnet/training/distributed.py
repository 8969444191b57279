"""Data-parallel training under ``torchrun``: each process takes its share of every global batch.

The loss needs the whole global batch (its PCC is per gene across all spots of the batch), so predictions and
targets are gathered from all processes with an autograd-aware all-gather before the loss; DDP then averages
the gradients, which makes them equal to the single-process gradient of the same global batch.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch.distributed.nn.functional import all_gather


class Distributed:
    """The process group described by torchrun's environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``)."""

    def __init__(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.active = self.world > 1 and dist.is_available()
        if self.active and not dist.is_initialized():
            dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")

    @property
    def is_main(self) -> bool:
        """Whether this process logs, shows progress and writes checkpoints."""
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """One GPU per process."""
        return torch.device("cuda", self.local_rank) if self.active and device.type == "cuda" else device

    def wrap(self, network: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """The network to train through (DDP when distributed)."""
        if not self.active:
            return network
        from torch.nn.parallel import DistributedDataParallel

        if device.type == "cuda":  # batch statistics over the global batch (SyncBatchNorm needs GPUs)
            network = torch.nn.SyncBatchNorm.convert_sync_batchnorm(network)
            return DistributedDataParallel(network, device_ids=[device.index])
        return DistributedDataParallel(network)

    def share(self, items):
        """The part of a global batch that this process takes."""
        return items[self.rank :: self.world] if self.active else items

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Concatenate a tensor of varying first dimension from all processes, keeping gradients."""
        if not self.active:
            return tensor
        size = torch.tensor([tensor.shape[0]], device=tensor.device)
        sizes = [torch.zeros_like(size) for _ in range(self.world)]
        dist.all_gather(sizes, size)
        longest = int(max(s.item() for s in sizes))
        padded = torch.zeros((longest, *tensor.shape[1:]), dtype=tensor.dtype, device=tensor.device)
        padded = torch.cat([tensor, padded[tensor.shape[0] :]]) if tensor.shape[0] < longest else tensor
        parts = all_gather(padded) if tensor.requires_grad else _gather_plain(padded, self.world)
        return torch.cat([p[: int(s.item())] for p, s in zip(parts, sizes, strict=True)])

    def barrier(self) -> None:
        """Wait for all processes."""
        if self.active:
            dist.barrier()


def _gather_plain(tensor: torch.Tensor, world: int) -> list[torch.Tensor]:
    parts = [torch.empty_like(tensor) for _ in range(world)]
    dist.all_gather(parts, tensor)
    return parts
