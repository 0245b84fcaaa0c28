"""The training loop shared by distillation (MiniLM, MiniLMv2), the baselines and teacher pretraining.

One loop for every objective, so comparisons between them differ only in the objective: same
data stream, optimizer, schedule, precision and number of tokens.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import AutoModelForMaskedLM, AutoTokenizer, PreTrainedModel

from corpora import CorpusDataset, collate_blocks
from corpora.index import corpus_scan

from mminilm.training.checkpoint import latest_checkpoint, load_checkpoint, restore_rng_state, rng_state, save_checkpoint
from mminilm.training.config import TrainConfig, save_config
from mminilm.training.precision import autocast_context, autocast_dtype, precision_used, resolve_device
from mminilm.training.distributed import (DistributedContext, average_gradients, barrier, broadcast_parameters, init_distributed,
                          mean_across_ranks, parameter_checksum, ranks_agree)
from mminilm.models.teacher import check_compatible, load_pretrained, load_teacher
from mminilm.objectives import NEEDS_TEACHER_MLM_HEAD
from mminilm.objectives.registry import Objective, build_objective
from mminilm.training.run_dir import RunLock, prepare_run_dir
from mminilm.training.run_logging import JsonlLog, setup_text_logger, tensorboard_writer
from mminilm.training.schedule import adamw_without_decay_on_norms, kernel_of, linear_warmup_decay
from mminilm.models.student import StudentConfig, build_student, save_student


def _build_models(config: TrainConfig, logger) -> tuple[PreTrainedModel | None, PreTrainedModel, Any]:
    teacher = tokenizer = None
    if config.teacher and (config.objective != "mlm" or not config.student_from):
        teacher, tokenizer = load_teacher(config.teacher, masked_lm=config.objective in NEEDS_TEACHER_MLM_HEAD,
                                          cache_dir=config.cache_dir or None)
        logger.info("teacher %s: %s, %d layers, hidden %d, %d heads, vocab %d", config.teacher, teacher.config.model_type,
                    teacher.config.num_hidden_layers, teacher.config.hidden_size,
                    teacher.config.num_attention_heads, teacher.config.vocab_size)
    if config.student_from:
        student = load_pretrained(AutoModelForMaskedLM, config.student_from, "student")
        tokenizer = tokenizer or AutoTokenizer.from_pretrained(config.student_from)
    else:
        shape = StudentConfig(num_layers=config.student_layers, hidden_size=config.student_hidden,
                              num_heads=config.student_heads, intermediate_size=config.student_intermediate or None,
                              init=config.student_init)
        student = build_student(teacher, shape, seed=config.seed)
    for role, model in (("teacher", teacher), ("student", student)):
        if model is not None:
            check_compatible(model, tokenizer, config.max_length, role)
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


@dataclass
class TrainingRun:
    """Everything the loop touches, built once by `setup` (and restored from a checkpoint)."""

    config: TrainConfig
    output: Path
    context: DistributedContext  # rank, world size and the device
    logger: Any
    student: PreTrainedModel
    tokenizer: Any
    objective: Objective
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler  # active for fp16 only: bf16 and fp32 need no loss scaling
    dataset: CorpusDataset
    mask_generator: torch.Generator
    log: JsonlLog
    step: int = 0
    tokens_seen: Counter = field(default_factory=Counter)


def claim_run_dir(config: TrainConfig, context: DistributedContext) -> RunLock | None:
    """Lock OUT (main process) and check it may take this run: see mminilm/training/run_dir.py."""
    lock = None
    if context.is_main:
        output = Path(config.output_dir)
        lock = RunLock(output)
        try:
            prepare_run_dir(output, asdict(config), config.resume, config.overwrite, set(config.allow_config_change),
                            defaults=asdict(type(config)()))
        except BaseException:
            lock.release()
            raise
    barrier(context)
    return lock


def finished_model(config: TrainConfig) -> Path | None:
    """OUT/model when this exact run (same configuration, checked by claim_run_dir) already finished."""
    output = Path(config.output_dir)
    summary = output / "summary.json"
    if config.resume and (output / "model" / "config.json").is_file() and summary.is_file():
        if json.loads(summary.read_text()).get("steps") == config.steps:
            return output / "model"
    return None


def setup(config: TrainConfig, context: DistributedContext) -> TrainingRun:
    """Models, objective, optimizer, data and logs; resumes the newest checkpoint when asked."""
    output = Path(config.output_dir)
    device = context.device
    logger = setup_text_logger(output, context.is_main)
    checkpoints = output / "checkpoints"
    resume_from = latest_checkpoint(checkpoints) if config.resume else None
    if config.resume and resume_from is None:
        logger.info("--resume: no checkpoint in %s yet, starting from scratch", checkpoints)
    torch.manual_seed(config.seed)
    teacher, student, tokenizer = _build_models(config, logger)
    if teacher is not None:
        teacher.to(device)
    student.to(device)
    broadcast_parameters(student, context)
    mask_generator = torch.Generator().manual_seed(config.seed * 1000 + context.rank)
    objective = build_objective(
        config.objective, student, teacher, tokenizer, mask_generator, teacher_layer=config.teacher_layer,
        student_layer=config.student_layer, relation_heads=config.relation_heads or None,
        relations=tuple(r for r in config.relations.split(",") if r), mlm_probability=config.mlm_probability,
        kd_temperature=config.kd_temperature, relation_kl=config.relation_kl, layer_map=config.distil_layers,
        hidden_weight=config.hidden_weight).to(device)
    optimizer = adamw_without_decay_on_norms(objective, config.lr, config.weight_decay, config.adam_beta2)
    scheduler = linear_warmup_decay(optimizer, config.warmup_steps, config.steps)
    dataset = CorpusDataset(config.corpus, tokenizer, config.languages, alpha=config.alpha, max_length=config.max_length,
                            seed=config.seed, rank=context.rank, world_size=context.world_size,
                            cache_dir=config.cache_dir or None, packing=config.packing,
                            binarized_dir=config.binarized_dir or None)
    scaler = torch.amp.GradScaler(device.type, enabled=autocast_dtype(device, config.precision) == torch.float16)
    run = TrainingRun(config, output, context, logger, student, tokenizer, objective, optimizer, scheduler,
                      scaler, dataset, mask_generator, JsonlLog(output / "train_log.jsonl", context.is_main))
    if resume_from is not None:
        _restore(run, resume_from)
    else:
        run.log.truncate_after(0)
    if context.is_main:
        save_config(config, output)
    if not config.binarized_dir:
        for lang, scan in corpus_scan(config.corpus, list(run.dataset.files), config.cache_dir or None).items():
            if scan["invalid_utf8"] or scan["truncated_files"]:
                logger.warning("corpus %s: %d invalid UTF-8 sequences (replaced), truncated shards: %s", lang,
                               scan["invalid_utf8"], ", ".join(scan["truncated_files"]) or "none")
    logger.info("objective %s, student %s %d layers / hidden %d / %d heads (%.1fM parameters, init %s), %d process(es) "
                "on %s, precision %s, AdamW kernel %s", config.objective, student.config.model_type, student.config.num_hidden_layers,
                student.config.hidden_size, student.config.num_attention_heads,
                sum(p.numel() for p in student.parameters()) / 1e6, config.student_from or config.student_init,
                context.world_size, device, precision_used(device, config.precision), kernel_of(run.optimizer))
    return run


def _restore(run: TrainingRun, checkpoint: Path) -> None:
    trainer_state, rank_state = load_checkpoint(checkpoint, run.context)
    run.student.load_state_dict(trainer_state["student"])
    run.objective.load_state_dict(trainer_state.get("objective", {}), strict=False)
    run.optimizer.load_state_dict(trainer_state["optimizer"])
    run.scheduler.load_state_dict(trainer_state["scheduler"])
    # An lr allowed to change on resume (--allow-config-change lr) must take effect: the restored
    # optimizer and schedule would otherwise keep the saved one.
    run.scheduler.base_lrs = [run.config.lr] * len(run.optimizer.param_groups)
    for group, factor in zip(run.optimizer.param_groups, run.scheduler.lr_lambdas):
        group["initial_lr"], group["lr"] = run.config.lr, run.config.lr * factor(run.scheduler.last_epoch)
    if trainer_state.get("scaler"):
        run.scaler.load_state_dict(trainer_state["scaler"])
    run.step = trainer_state["step"]
    restore_rng_state(rank_state["rng"])
    run.mask_generator.set_state(rank_state["mask_generator"])
    if rank_state["data"] is not None:
        run.dataset.load_state_dict(rank_state["data"])
    run.tokens_seen = Counter(rank_state["tokens_seen"])
    run.log.truncate_after(run.step)
    run.logger.info("resumed from %s at step %d", checkpoint, run.step)


def loss_step(run: TrainingRun, batches) -> dict[str, Any]:
    """One optimizer step over `grad_accum` micro-batches. Returns what a log line needs, still
    on the device (no host sync here beyond the finiteness check of the gradient norm)."""
    config = run.config
    step_loss = torch.zeros((), device=run.context.device)
    components: dict[str, torch.Tensor] = {}
    tokens, languages = 0, Counter()
    for _ in range(config.grad_accum):
        batch = next(batches)
        with autocast_context(run.context.device, config.precision):
            loss, parts = run.objective(batch["input_ids"].to(run.context.device), batch["attention_mask"].to(run.context.device))
        run.scaler.scale(loss / config.grad_accum).backward()
        step_loss += loss.detach().float() / config.grad_accum
        for name, value in parts.items():
            components[name] = components.get(name, 0) + value.float() / config.grad_accum
        real = batch["attention_mask"].sum(dim=1).tolist()  # a CPU tensor: no device sync
        tokens += sum(real)
        for language, count in zip(batch["languages"], real):
            languages[language] += count
    average_gradients(run.objective, run.context)  # the student and any parameters the objective owns
    run.scaler.unscale_(run.optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(run.objective.trainable_parameters(), config.max_grad_norm or float("inf"))
    if run.scaler.is_enabled():  # fp16: an overflow skips this step and lowers the scale; it is not an error
        run.scaler.step(run.optimizer)
        run.scaler.update()
    elif not torch.isfinite(grad_norm):
        raise FloatingPointError(f"non-finite loss or gradient at step {run.step + 1} (loss {float(step_loss)}): the update "
                                 f"was not applied. {_last_good(run)}")
    else:
        run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    return {"loss": step_loss, "components": components, "grad_norm": grad_norm, "tokens": tokens, "languages": languages}


def _last_good(run: TrainingRun) -> str:
    newest = latest_checkpoint(run.output / "checkpoints")
    where = f"the last good checkpoint is {newest}" if newest else "no checkpoint was written yet"
    return (f"Lower --lr or use --precision fp32, then start a new --output-dir, or --resume here with "
            f"--allow-config-change lr (precision) to continue from it; {where}")


def save(run: TrainingRun) -> None:
    """An atomic checkpoint of the student, the objective's own parameters, optimizer, schedule,
    RNG and data-stream position (every rank). Non-finite weights are never written."""
    config = run.config
    bad = [name for name, p in run.objective.named_parameters() if p.requires_grad and not torch.isfinite(p).all()]
    if bad:
        raise FloatingPointError(f"non-finite weights at step {run.step} ({bad[0]}, {len(bad)} tensors); not saved. "
                                 f"{_last_good(run)}")
    trainer_state = {"step": run.step, "student": run.student.state_dict(), "objective": run.objective.extra_state(),
                     "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
                     "scaler": run.scaler.state_dict(),
                     "config": asdict(config)}
    checksum = parameter_checksum(run.student)
    if run.context.enabled and not ranks_agree(checksum, run.context, run.context.device):
        raise RuntimeError(f"ranks hold different student weights at step {run.step}: gradient sync is broken")
    rank_state = {"rng": rng_state(), "mask_generator": run.mask_generator.get_state(), "param_checksum": checksum,
                  "data": run.dataset.state_dict() if config.num_workers == 0 else None,
                  "tokens_seen": dict(run.tokens_seen)}
    save_checkpoint(run.output / "checkpoints", run.step, trainer_state, rank_state, run.context)


def train(config: TrainConfig) -> Path:
    """Run (or resume) a training run; returns the final model dir `OUT/model`."""
    config.validate()
    context = init_distributed(resolve_device(config.device))
    lock = claim_run_dir(config, context)
    done = finished_model(config)
    if done is not None:
        if context.is_main:
            print(f"already trained with this configuration: {done}", file=sys.stderr)
        _finish(context, lock)
        return done
    run = setup(config, context)
    writer = tensorboard_writer(run.output, config.tensorboard and run.context.is_main)
    batches = _batches(run.dataset, config)
    progress = tqdm(total=config.steps, initial=run.step, desc=config.objective, disable=not run.context.is_main,
                    dynamic_ncols=True, mininterval=1.0 if sys.stderr.isatty() else 30.0)
    probe = _retrieval_probe(run)
    run.objective.train()
    started = time.time()
    while run.step < config.steps:
        step_start = time.perf_counter()
        result = loss_step(run, batches)
        run.step += 1
        run.tokens_seen.update(result["languages"])
        progress.update(1)
        if run.step % config.log_every == 0 or run.step == config.steps:
            elapsed = time.perf_counter() - step_start
            loss = mean_across_ranks(float(result["loss"]), run.context, run.context.device)
            tokens_per_s = result["tokens"] * run.context.world_size / max(elapsed, 1e-9)
            progress.set_postfix(loss=f"{loss:.4f}", tok_s=f"{tokens_per_s:,.0f}", refresh=False)
            invalid = {lang: stats.invalid_utf8_lines for lang, stats in run.dataset.read_stats().items()
                       if stats.invalid_utf8_lines}
            record = {"step": run.step, "loss": loss, "lr": run.scheduler.get_last_lr()[0],
                      "grad_norm": float(result["grad_norm"]), "tokens_per_s": tokens_per_s,
                      "tokens": dict(result["languages"]),
                      "components": {k: float(v) for k, v in result["components"].items()},
                      "elapsed_s": time.time() - started, "invalid_utf8_lines_read": invalid}
            run.log.write(record)
            if writer is not None:
                for name in ("loss", "lr", "tokens_per_s"):
                    writer.add_scalar(f"train/{name}", record[name], run.step)
        if probe is not None and (run.step % config.probe_every == 0 or run.step == config.steps):
            run.log.write({"step": run.step, "probe": "retrieval", "model": "student",
                           **probe(run.student, run.context.device)})
        if run.step % config.save_every == 0 or run.step == config.steps:
            save(run)
    progress.close()
    model_dir = run.output / "model"
    if run.context.is_main:
        save_student(run.student, run.tokenizer, model_dir,
                     provenance={"objective": config.objective, "teacher": config.teacher or None,
                                 "student_init": config.student_from or config.student_init, "steps": run.step,
                                 "distil_layers": config.distil_layers, "hidden_weight": config.hidden_weight})
        summary = {"steps": run.step, "tokens_per_language": dict(run.tokens_seen), "wall_time_s": time.time() - started,
                   "model_dir": str(model_dir), "student_init": config.student_from or config.student_init,
                   "parameters": sum(p.numel() for p in run.student.parameters()),
                   "precision_used": precision_used(run.context.device, config.precision),
                   "adamw_kernel": kernel_of(run.optimizer)}
        (run.output / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        run.logger.info("saved %s", model_dir)
    if writer is not None:
        writer.close()
    _finish(run.context, lock)
    return model_dir


def _retrieval_probe(run: TrainingRun):
    """The --probe-every callable (main process only), after logging the step-0 teacher and student values.

    It embeds a fixed set of aligned sentences in eval mode without gradients and consumes no random
    numbers, so a probed run trains exactly as an unprobed one (and resumes bit-identically).
    """
    config = run.config
    if not config.probe_every or not run.context.is_main:
        return None
    from eval.retrieval import RetrievalProbe  # eval depends on mminilm, not the reverse: imported only when asked

    probe = RetrievalProbe(config.probe_data or None, config.languages, config.probe_sentences, run.tokenizer,
                           max_length=config.max_length)
    if run.step == 0:
        teacher = run.objective.teacher
        if teacher is not None:
            run.log.write({"step": 0, "probe": "retrieval", "model": "teacher", **probe(teacher, run.context.device)})
        run.log.write({"step": 0, "probe": "retrieval", "model": "student", **probe(run.student, run.context.device)})
    return probe


def _finish(context: DistributedContext, lock: RunLock | None) -> None:
    if context.enabled:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    if lock is not None:
        lock.release()
