"""Benchmark: the AdamW kernel in a fine-tuning step, fused vs torch's default (JSON out).

The default is what runs used before fused: foreach on CUDA, a loop over tensors on CPU.

Why: on CPU a small multilingual model's step is dominated by its embedding table (a trimmed
e5-small student: 45M embedding weights vs 11M in six layers), and AdamW touches every row each
step. This measures, for the shapes the e5-small preset fine-tunes, the optimizer step alone and
the whole training step (forward, backward, clipping, AdamW, zero_grad) with each kernel. Both
kernels run in the same process on the same model, alternating every step, so a busy machine
slows both alike; reported: the median over the measured steps.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/optimizer_step.py --output docs/results/optimizer_step.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from transformers import BertForSequenceClassification

from _shared import TRIMMED_E5_VOCAB, e5_small_config, write_report
from mminilm.training.schedule import adamw_without_decay_on_norms, kernel_of

SHAPES = {  # name: (layers, batch, tokens); XNLI pairs are ~60 tokens once padding is cut
    "student_L6": (6, 32, 64),
    "teacher_L12": (12, 32, 64),
}


def _optimizers(model: torch.nn.Module) -> dict[str, torch.optim.Optimizer]:
    fused = adamw_without_decay_on_norms(model, 1e-4, 0.01)
    default = adamw_without_decay_on_norms(model, 1e-4, 0.01, fused=False)
    assert kernel_of(fused) == "fused", "no fused AdamW on this device"
    return {"fused": fused, "default": default}


def measure(layers: int, batch: int, tokens: int, steps: int) -> dict:
    torch.manual_seed(0)
    model = BertForSequenceClassification(e5_small_config(layers, num_labels=3)).train()
    optimizers = _optimizers(model)
    ids = torch.randint(5, TRIMMED_E5_VOCAB, (batch, tokens), generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 3, (batch,), generator=torch.Generator().manual_seed(1))
    timings: dict[str, dict[str, list[float]]] = {name: {"optimizer_s": [], "step_s": []} for name in optimizers}
    for step in range(steps + 1):  # the first round warms both kernels up and is dropped
        for name, optimizer in optimizers.items():
            started = time.perf_counter()
            model(input_ids=ids, labels=labels).loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            before_update = time.perf_counter()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            finished = time.perf_counter()
            if step:
                timings[name]["optimizer_s"].append(finished - before_update)
                timings[name]["step_s"].append(finished - started)
    medians = {name: {key: statistics.median(values) for key, values in parts.items()} for name, parts in timings.items()}
    embedding = model.get_input_embeddings().weight.numel()
    return {"layers": layers, "batch": batch, "tokens": tokens, "steps": steps,
            "parameters": sum(p.numel() for p in model.parameters()), "embedding_parameters": embedding,
            **medians,
            "optimizer_time_ratio_fused_vs_default": medians["fused"]["optimizer_s"] / medians["default"]["optimizer_s"],
            "step_time_ratio_fused_vs_default": medians["fused"]["step_s"] / medians["default"]["step_s"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--steps", type=int, default=10, help="measured steps per kernel (after one warm-up step)")
    parser.add_argument("--output", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    results = {name: measure(*SHAPES[name], steps=args.steps) for name in args.shapes}
    write_report("optimizer_step", results, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
