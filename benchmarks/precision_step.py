"""Benchmark: fp32 vs bf16 autocast for the e5-small preset's steps on this CPU (JSON out).

Why: precision `auto` picks bf16 only where the CPU computes bf16 products natively (AMX tiles or
AVX512-BF16); elsewhere oneDNN emulates it and fp32 is faster. This measures the two steps the
main job spends its time in, with the preset's shapes, so that choice rests on a number for the
machine at hand:

- distill: the trimmed L12-H384 teacher's forward and the L6-H384 student's forward, MiniLM loss
  at every layer pair plus 5 x hidden-state MSE (the preset's `distil_layers: uniform`,
  `hidden_weight: 5`), backward, clipping and the AdamW update; batch 32 x 128 packed tokens;
- finetune_student / finetune_teacher: a sequence-classification step (forward, backward,
  clipping, AdamW) at batch 32 x 64, about an XNLI batch once padding is cut.

Random weights (the shapes decide the time, not the values). Both precisions run in the same
process on the same models, alternating step by step, so a busy machine slows both alike;
reported: the median over the measured steps, and bf16's time as a fraction of fp32's.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/precision_step.py --output docs/results/precision_step.json
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Callable

import torch
from transformers import BertForSequenceClassification, BertModel

from _shared import TRIMMED_E5_VOCAB, e5_small_config, write_report
from mminilm.objectives.registry import build_objective
from mminilm.training.precision import cpu_bf16_units, cpu_has_native_bf16
from mminilm.training.schedule import adamw_without_decay_on_norms

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


def _autocast(dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    return contextlib.nullcontext() if dtype is None else torch.autocast("cpu", dtype=dtype)


def _ids(batch: int, tokens: int) -> torch.Tensor:
    return torch.randint(5, TRIMMED_E5_VOCAB, (batch, tokens), generator=torch.Generator().manual_seed(0))


def distill_step(batch: int, tokens: int) -> tuple[Callable[[torch.dtype | None], None], dict]:
    torch.manual_seed(0)
    teacher, student = BertModel(e5_small_config(12)), BertModel(e5_small_config(6))
    objective = build_objective("minilm", student, teacher, None, torch.Generator(), layer_map="uniform",
                                hidden_weight=5.0).train()
    optimizer = adamw_without_decay_on_norms(student, 1e-4, 0.01)
    ids, mask = _ids(batch, tokens), torch.ones(batch, tokens, dtype=torch.long)

    def step(dtype: torch.dtype | None) -> None:
        with _autocast(dtype):
            loss, _ = objective(ids, mask)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(objective.trainable_parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, {"teacher_layers": 12, "student_layers": 6, "batch": batch, "tokens": tokens}


def finetune_step(layers: int, batch: int, tokens: int) -> tuple[Callable[[torch.dtype | None], None], dict]:
    torch.manual_seed(0)
    model = BertForSequenceClassification(e5_small_config(layers, num_labels=3)).train()
    optimizer = adamw_without_decay_on_norms(model, 1e-4, 0.01)
    ids, labels = _ids(batch, tokens), torch.randint(0, 3, (batch,), generator=torch.Generator().manual_seed(1))

    def step(dtype: torch.dtype | None) -> None:
        with _autocast(dtype):
            loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, {"layers": layers, "batch": batch, "tokens": tokens}


STEPS = {
    "distill": lambda: distill_step(32, 128),
    "finetune_student": lambda: finetune_step(6, 32, 64),
    "finetune_teacher": lambda: finetune_step(12, 32, 64),
}


def measure(name: str, steps: int) -> dict:
    step, shape = STEPS[name]()
    timings: dict[str, list[float]] = {precision: [] for precision in PRECISIONS}
    for index in range(steps + 1):  # the first round warms both precisions up and is dropped
        for precision, dtype in PRECISIONS.items():
            started = time.perf_counter()
            step(dtype)
            if index:
                timings[precision].append(time.perf_counter() - started)
    medians = {f"{precision}_s": statistics.median(values) for precision, values in timings.items()}
    return {**shape, "steps": steps, **medians, "bf16_time_vs_fp32": medians["bf16_s"] / medians["fp32_s"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", nargs="+", default=list(STEPS), choices=list(STEPS), help="which steps to time")
    parser.add_argument("--repeats", type=int, default=5, help="measured steps per precision (after one warm-up)")
    parser.add_argument("--output", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    cpu = {**cpu_bf16_units(), "capability": torch.backends.cpu.get_cpu_capability(),
           "auto_picks_bf16": cpu_has_native_bf16()}
    write_report("precision_step", {name: measure(name, args.repeats) for name in args.steps}, args.output, cpu=cpu)
    return 0


if __name__ == "__main__":
    sys.exit(main())
