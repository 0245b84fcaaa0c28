"""AdamW with linear warmup and linear decay, the schedule of BERT, MiniLM and MiniLMv2."""

from __future__ import annotations

import torch
from torch import nn


def linear_warmup_decay(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def adamw_without_decay_on_norms(model: nn.Module, lr: float, weight_decay: float, beta2: float = 0.999) -> torch.optim.AdamW:
    """Weight decay on matrices only: decaying LayerNorm gains and biases hurts and is not what BERT did."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.dim() < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, beta2), eps=1e-6)
