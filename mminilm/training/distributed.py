"""torchrun integration: process group set-up and gradient averaging.

Gradients are averaged with coalesced all-reduces after backward instead of wrapping the
student in DistributedDataParallel: the distillation forward deliberately stops inside the
student (after the distilled layer's V projection) and calls the base model directly, which
DDP's forward bookkeeping does not allow for. Parameters that got no gradient on this step
(layers above the distilled one, the LM head) are skipped on every rank alike.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> DistributedContext:
    """Join the torchrun process group when WORLD_SIZE > 1 (nccl on CUDA, gloo otherwise)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext(device=device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(rank=dist.get_rank(), world_size=dist.get_world_size(), device=device)


def average_gradients(model: nn.Module, context: DistributedContext) -> None:
    if not context.enabled:
        return
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= context.world_size
    offset = 0
    for grad in grads:
        grad.copy_(flat[offset: offset + grad.numel()].view_as(grad))
        offset += grad.numel()


def broadcast_parameters(model: nn.Module, context: DistributedContext) -> None:
    """Every rank starts from rank 0's weights, whatever its local initialisation did."""
    if context.enabled:
        for tensor in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(tensor.data, src=0)


def mean_across_ranks(value: float, context: DistributedContext, device: torch.device | None = None) -> float:
    if not context.enabled:
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor.item() / context.world_size)


def barrier(context: DistributedContext) -> None:
    if context.enabled:
        dist.barrier()


def parameter_checksum(model: nn.Module) -> float:
    """A cheap fingerprint of the weights (float64 sum of sums), to check that ranks stay in sync."""
    with torch.no_grad():
        return float(sum(p.detach().double().sum().item() for p in model.parameters()))


def ranks_agree(value: float, context: DistributedContext, device: torch.device | None = None) -> bool:
    if not context.enabled:
        return True
    tensor = torch.tensor([value, -value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return float(tensor[0]) == value and float(-tensor[1]) == value
