"""The fine-tuning loop shared by the XNLI and MLQA transfer tasks.

English-only fine-tuning is where zero-shot numbers are won or lost, so both tasks use the
same, standard recipe: AdamW, linear warmup (10%) and decay, gradient clipping, seeded shuffling,
bf16 autocast where the device has it, and a JSONL line per logged step.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers.trainer_pt_utils import get_length_grouped_indices

from mminilm.training.precision import autocast_context
from mminilm.training.schedule import adamw_without_decay_on_norms, linear_warmup_decay

from .config import FinetuneSettings


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def finetune(model: torch.nn.Module, features: Mapping[str, torch.Tensor], settings: FinetuneSettings,
             device: torch.device, log_path: Path, description: str,
             select_on: Callable[[torch.nn.Module], float] | None = None) -> list[float]:
    """Train `model` on the rows of `features` (all tensors share dim 0); returns the step losses.

    With `select_on` (a dev-set score, higher is better), it is called after every epoch and the
    best epoch's weights are kept: model selection on English dev, as in XTREME.
    """
    seed_everything(settings.seed)
    if settings.freeze_word_embeddings:
        model.get_input_embeddings().requires_grad_(False)
    size = len(next(iter(features.values())))
    if size == 0:
        raise ValueError("no training examples")
    steps_per_epoch = math.ceil(size / settings.batch_size)
    total_steps = max(1, math.ceil(steps_per_epoch * settings.epochs))
    model.to(device).train()
    optimizer = adamw_without_decay_on_norms(model, settings.lr, settings.weight_decay)
    scheduler = linear_warmup_decay(optimizer, int(settings.warmup_ratio * total_steps), total_steps)
    generator = torch.Generator().manual_seed(settings.seed)
    losses: list[float] = []
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    order = torch.empty(0, dtype=torch.long)
    best_score, best_state = -math.inf, None
    with open(log_path, "w") as log, tqdm(total=total_steps, desc=description, dynamic_ncols=True,
                                          mininterval=1.0 if sys.stderr.isatty() else 30.0) as progress:
        for step in range(total_steps):
            position = (step % steps_per_epoch) * settings.batch_size
            if step % steps_per_epoch == 0:
                order = epoch_order(features, settings, generator)
            rows = order[position: position + settings.batch_size]
            batch = {name: tensor.to(device) for name, tensor in trim_padding(features, rows).items()}
            with autocast_context(device, settings.precision):
                loss = model(**batch).loss
            loss.backward()
            if settings.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), settings.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            progress.update(1)
            progress.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
            if (step + 1) % settings.log_every == 0 or step + 1 == total_steps:
                log.write(json.dumps({"step": step + 1, "loss": losses[-1], "lr": scheduler.get_last_lr()[0],
                                      "epoch": (step + 1) / steps_per_epoch, "elapsed_s": time.time() - started}) + "\n")
                log.flush()
            if select_on is not None and ((step + 1) % steps_per_epoch == 0 or step + 1 == total_steps):
                score = select_on(model)
                model.train()
                log.write(json.dumps({"step": step + 1, "dev_score": score}) + "\n")
                if score > best_score:
                    best_score = score
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return losses


def epoch_order(features: Mapping[str, torch.Tensor], settings: FinetuneSettings,
                generator: torch.Generator) -> torch.Tensor:
    """The rows of one epoch in training order: a seeded shuffle or, with `group_by_length`,
    transformers' length-grouped order (shuffled, then sorted by real length within mega-batches of
    up to 50 batches, the longest batch first), so that `trim_padding` cuts each batch short."""
    size = len(next(iter(features.values())))
    if not settings.group_by_length or "attention_mask" not in features:
        return torch.randperm(size, generator=generator)
    lengths = features["attention_mask"].sum(dim=1).tolist()
    return torch.tensor(get_length_grouped_indices(lengths, settings.batch_size, generator=generator))


def trim_padding(features: Mapping[str, torch.Tensor], rows: torch.Tensor | slice) -> dict[str, torch.Tensor]:
    """`rows` of `features`, token columns cut after the longest real sequence among them.

    Features are padded to --max-length once; cutting per batch halves the cost of typical XNLI
    pairs (~60 of 128 tokens) and changes no result (padded keys are masked out).
    """
    picked = {name: tensor[rows] for name, tensor in features.items()}
    mask = picked.get("attention_mask")
    if mask is None or mask.numel() == 0:
        return picked
    longest = int(mask.sum(dim=1).max())
    width = mask.shape[1]
    return {name: (t[:, :longest] if t.dim() == 2 and t.shape[1] == width else t) for name, t in picked.items()}


@torch.no_grad()
def batched_forward(model: torch.nn.Module, features: Mapping[str, torch.Tensor], batch_size: int,
                    device: torch.device, precision: str, description: str) -> list[torch.Tensor]:
    """Model outputs (logits, or start/end logits for QA) for all rows, in order, on CPU in fp32.

    Rows are run longest first, each batch cut to its longest real sequence (a batch of short
    pairs costs what short pairs cost), then put back in the original order; per-token outputs
    are padded back to the full width with -1e4 (a padded position is never an answer).
    """
    model.to(device).eval()
    size = len(next(iter(features.values())))
    width = features["input_ids"].shape[1]
    order = torch.argsort(features["attention_mask"].sum(dim=1), descending=True, stable=True)
    outputs: list[list[torch.Tensor]] = []
    for start in tqdm(range(0, size, batch_size), desc=description, dynamic_ncols=True,
                      mininterval=1.0 if sys.stderr.isatty() else 30.0):
        rows = order[start: start + batch_size]
        batch = {name: t.to(device) for name, t in trim_padding(features, rows).items()}
        with autocast_context(device, precision):
            result = model(**batch)
        parts = [result.start_logits, result.end_logits] if hasattr(result, "start_logits") else [result.logits]
        outputs.append([_pad_tokens(part.float().cpu(), width) if hasattr(result, "start_logits") else part.float().cpu()
                        for part in parts])
    restored = []
    for parts in zip(*outputs):
        stacked = torch.cat(parts)
        unsorted = torch.empty_like(stacked)
        unsorted[order] = stacked
        restored.append(unsorted)
    return restored


def _pad_tokens(logits: torch.Tensor, width: int) -> torch.Tensor:
    missing = width - logits.shape[1]
    return torch.nn.functional.pad(logits, (0, missing), value=-1e4) if missing > 0 else logits
