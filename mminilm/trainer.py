"""The training loop shared by distillation (MiniLM, MiniLMv2), the baselines and teacher pretraining.

One loop for every objective, so comparisons between them differ only in the objective: same
data stream, optimizer, schedule, precision and number of tokens.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import AutoModelForMaskedLM, AutoTokenizer, PreTrainedModel

from corpora import CorpusDataset, collate_blocks

from .checkpoint import latest_checkpoint, load_checkpoint, restore_rng_state, rng_state, save_checkpoint
from .config import TrainConfig, save_config
from .device import autocast_context, resolve_device
from .distillation import SelfAttentionDistillation
from .distributed import (DistributedContext, average_gradients, broadcast_parameters, init_distributed,
                          mean_across_ranks, parameter_checksum, ranks_agree)
from .mlm import logit_kd_loss, mask_tokens, mlm_loss
from .models import load_teacher
from .run_logging import JsonlLog, setup_text_logger, tensorboard_writer
from .schedule import adamw_without_decay_on_norms, linear_warmup_decay
from .student import StudentConfig, build_student, save_student


def _build_models(config: TrainConfig, logger) -> tuple[PreTrainedModel | None, PreTrainedModel, Any]:
    teacher = tokenizer = None
    if config.teacher and (config.objective != "mlm" or not config.student_init):
        teacher, tokenizer = load_teacher(config.teacher, masked_lm=True, cache_dir=config.cache_dir or None)
        logger.info("teacher %s: %d layers, hidden %d, %d heads, vocab %d", config.teacher,
                    teacher.config.num_hidden_layers, teacher.config.hidden_size,
                    teacher.config.num_attention_heads, teacher.config.vocab_size)
    if config.student_init:
        student = AutoModelForMaskedLM.from_pretrained(config.student_init)
        tokenizer = tokenizer or AutoTokenizer.from_pretrained(config.student_init)
    else:
        shape = StudentConfig(num_layers=config.student_layers, hidden_size=config.student_hidden,
                              num_heads=config.student_heads, intermediate_size=config.student_intermediate or None,
                              init_from_teacher=config.init_from_teacher)
        student = build_student(teacher, shape, seed=config.seed)
    if config.objective == "mlm":
        teacher = None  # the baseline never looks at a teacher; free its memory
    return teacher, student, tokenizer


def _batches(dataset: CorpusDataset, config: TrainConfig):
    if config.num_workers > 0:
        loader = torch.utils.data.DataLoader(dataset, batch_size=config.batch_size, num_workers=config.num_workers,
                                             collate_fn=collate_blocks)
        yield from loader
        return
    stream = iter(dataset)
    while True:
        yield collate_blocks([next(stream) for _ in range(config.batch_size)])


def train(config: TrainConfig) -> Path:
    """Run (or resume) a training run; returns the final model dir `OUT/model`."""
    config.validate()
    output = Path(config.output_dir)
    device = resolve_device(config.device)
    context = init_distributed(device)
    logger = setup_text_logger(output, context.is_main)
    checkpoints = output / "checkpoints"
    resume_from = latest_checkpoint(checkpoints) if config.resume else None
    if not config.resume and latest_checkpoint(checkpoints) is not None:
        raise FileExistsError(f"{output} already holds checkpoints: pass --resume to continue it, or choose another --output-dir")
    if config.resume and resume_from is None:
        logger.info("--resume: no checkpoint in %s yet, starting from scratch", checkpoints)
    torch.manual_seed(config.seed)
    teacher, student, tokenizer = _build_models(config, logger)
    if teacher is not None:
        teacher.to(device)
    student.to(device)
    broadcast_parameters(student, context)
    distiller = None
    if config.objective in ("minilm", "minilmv2"):
        distiller = SelfAttentionDistillation(
            teacher, student, method=config.objective, teacher_layer=config.teacher_layer,
            student_layer=config.student_layer, num_relation_heads=config.relation_heads or None,
            relations=tuple(r for r in config.relations.split(",") if r),
        )
    optimizer = adamw_without_decay_on_norms(student, config.lr, config.weight_decay, config.adam_beta2)
    scheduler = linear_warmup_decay(optimizer, config.warmup_steps, config.steps)
    dataset = CorpusDataset(config.corpus, tokenizer, config.languages, alpha=config.alpha, max_length=config.max_length,
                            seed=config.seed, rank=context.rank, world_size=context.world_size,
                            cache_dir=config.cache_dir or None, packing=config.packing,
                            binarized_dir=config.binarized_dir or None)
    mask_generator = torch.Generator().manual_seed(config.seed * 1000 + context.rank)
    log = JsonlLog(output / "train_log.jsonl", context.is_main)
    step, tokens_seen = 0, Counter()
    if resume_from is not None:
        trainer_state, rank_state = load_checkpoint(resume_from, context)
        student.load_state_dict(trainer_state["student"])
        optimizer.load_state_dict(trainer_state["optimizer"])
        scheduler.load_state_dict(trainer_state["scheduler"])
        step = trainer_state["step"]
        restore_rng_state(rank_state["rng"])
        mask_generator.set_state(rank_state["mask_generator"])
        if rank_state["data"] is not None:
            dataset.load_state_dict(rank_state["data"])
        tokens_seen = Counter(rank_state["tokens_seen"])
        log.truncate_after(step)
        logger.info("resumed from %s at step %d", resume_from, step)
    else:
        log.truncate_after(0)
    if context.is_main:
        save_config(config, output)
    logger.info("objective %s, student %d layers / hidden %d / %d heads (%.1fM parameters), %d process(es) on %s",
                config.objective, student.config.num_hidden_layers, student.config.hidden_size,
                student.config.num_attention_heads, sum(p.numel() for p in student.parameters()) / 1e6,
                context.world_size, device)
    writer = tensorboard_writer(output, config.tensorboard and context.is_main)
    batches = _batches(dataset, config)
    progress = tqdm(total=config.steps, initial=step, desc=config.objective, disable=not context.is_main,
                    dynamic_ncols=True, mininterval=1.0 if sys.stderr.isatty() else 30.0)
    student.train()
    if distiller is not None:
        distiller.train()
    started = time.time()
    while step < config.steps:
        step_start = time.perf_counter()
        step_loss, step_tokens, step_languages = 0.0, 0, Counter()
        components: Counter = Counter()
        for _ in range(config.grad_accum):
            batch = next(batches)
            input_ids = batch["input_ids"].to(device)
            attention_mask = batch["attention_mask"].to(device)
            with autocast_context(device, config.precision):
                if distiller is not None:
                    loss = distiller(input_ids, attention_mask)
                    components.update({k: v / config.grad_accum for k, v in distiller.last_components.items()})
                else:
                    masked, labels = mask_tokens(input_ids, attention_mask, tokenizer, config.mlm_probability, mask_generator)
                    if config.objective == "mlm":
                        loss = mlm_loss(student, masked, attention_mask, labels)
                    else:
                        loss = logit_kd_loss(teacher, student, masked, attention_mask, labels, config.kd_temperature)
            (loss / config.grad_accum).backward()
            step_loss += loss.item() / config.grad_accum
            real = batch["attention_mask"].sum(dim=1).tolist()
            step_tokens += sum(real)
            for language, count in zip(batch["languages"], real):
                step_languages[language] += count
        if not math.isfinite(step_loss):
            raise FloatingPointError(f"loss is {step_loss} at step {step + 1}: lower --lr or use --precision fp32")
        average_gradients(student, context)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(student.parameters(), config.max_grad_norm or float("inf")))
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        tokens_seen.update(step_languages)
        elapsed = time.perf_counter() - step_start
        step_loss = mean_across_ranks(step_loss, context, device)
        tokens_per_s = step_tokens * context.world_size / max(elapsed, 1e-9)
        progress.update(1)
        progress.set_postfix(loss=f"{step_loss:.4f}", tok_s=f"{tokens_per_s:,.0f}", refresh=False)
        if step % config.log_every == 0 or step == config.steps:
            record = {"step": step, "loss": step_loss, "lr": scheduler.get_last_lr()[0], "grad_norm": grad_norm,
                      "tokens_per_s": tokens_per_s, "tokens": dict(step_languages),
                      "components": dict(components), "elapsed_s": time.time() - started}
            log.write(record)
            if writer is not None:
                writer.add_scalar("train/loss", step_loss, step)
                writer.add_scalar("train/lr", record["lr"], step)
                writer.add_scalar("train/tokens_per_s", tokens_per_s, step)
        if step % config.save_every == 0 or step == config.steps:
            trainer_state = {"step": step, "student": student.state_dict(), "optimizer": optimizer.state_dict(),
                             "scheduler": scheduler.state_dict(), "config": asdict(config)}
            checksum = parameter_checksum(student)
            if context.enabled and not ranks_agree(checksum, context, device):
                raise RuntimeError(f"ranks hold different student weights at step {step}: gradient sync is broken")
            rank_state = {"rng": rng_state(), "mask_generator": mask_generator.get_state(), "param_checksum": checksum,
                          "data": dataset.state_dict() if config.num_workers == 0 else None,
                          "tokens_seen": dict(tokens_seen)}
            save_checkpoint(checkpoints, step, trainer_state, rank_state, context)
    progress.close()
    model_dir = output / "model"
    if context.is_main:
        save_student(student, tokenizer, model_dir)
        summary = {"steps": step, "tokens_per_language": dict(tokens_seen), "wall_time_s": time.time() - started,
                   "model_dir": str(model_dir), "parameters": sum(p.numel() for p in student.parameters())}
        (output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        logger.info("saved %s", model_dir)
    if writer is not None:
        writer.close()
    if context.enabled:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return model_dir
