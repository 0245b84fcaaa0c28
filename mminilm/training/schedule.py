"""AdamW with linear warmup and linear decay, the schedule of BERT, MiniLM and MiniLMv2."""

from __future__ import annotations

import functools

import torch
from torch import nn


def linear_warmup_decay(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def adamw_without_decay_on_norms(model: nn.Module, lr: float, weight_decay: float, beta2: float = 0.999,
                                 fused: bool = True) -> torch.optim.AdamW:
    """Weight decay on matrices only: decaying LayerNorm gains and biases hurts and is not what BERT did.

    The fused kernel where torch has one for the weights' device (`fused=False`: torch's default,
    what every run before it used); build it after the model is on its device."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.dim() < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    device_types = {param.device.type for group in groups for param in group["params"]}
    fused = fused and all(adamw_kernel(device_type) == "fused" for device_type in device_types)
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, beta2), eps=1e-6, fused=fused or None)


@functools.cache
def adamw_kernel(device_type: str) -> str:
    """The AdamW kernel for weights on `device_type`: "fused" where torch has one, else "default"
    (torch's choice: foreach on CUDA, a loop over tensors on CPU).

    Why fused: it updates each tensor in one pass. On the 2-core CPU, the e5-small student's update
    (56M weights, 45M of them its trimmed embedding, which AdamW rewrites every step) took 0.046 s
    instead of the default's 0.29 s, its whole fine-tuning step 0.83x the time
    (benchmarks/optimizer_step.py). The algorithm is the same; the kernels round differently, so
    results differ from a default-kernel run as two thread counts do. A checkpoint keeps its kernel
    (load_state_dict restores the saved groups' flags), so a run started before fused was the
    default still resumes bit-identically."""
    try:
        torch.optim.AdamW([nn.Parameter(torch.zeros(1, device=device_type))], fused=True)
    except RuntimeError:
        return "default"
    return "fused"


def kernel_of(optimizer: torch.optim.Optimizer) -> str:
    """The kernel `optimizer` steps with, after a resume too (a restored checkpoint brings its own)."""
    return "fused" if all(group.get("fused") for group in optimizer.param_groups) else "default"
