"""Cost of layer-to-layer targets: one distillation forward+backward with the papers' single
last-layer pair vs every layer pair plus the hidden-state term, on a real teacher.

The two variants alternate inside one process on the same batch, so a busy shared machine slows
both alike; the first repeat of each is a warm-up and not counted. Prints (and with --output
writes) JSON.

    python benchmarks/layer_map_step.py --teacher runs/e5-small/teacher-trimmed --corpus ../shared/data/cc100_sample
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer

from mminilm.models.student import StudentConfig, build_student
from mminilm.objectives.distillation import SelfAttentionDistillation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", required=True, help="a saved teacher dir (e.g. OUTPUT/teacher-trimmed)")
    parser.add_argument("--corpus", required=True, help="CC-100-layout dir; en.txt gives the tokens")
    parser.add_argument("--student-layers", type=int, default=6)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--hidden-weight", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--output", default=None, help="also write the JSON here")
    args = parser.parse_args()
    teacher = AutoModel.from_pretrained(args.teacher)
    tokenizer = AutoTokenizer.from_pretrained(args.teacher)
    hidden, heads = teacher.config.hidden_size, teacher.config.num_attention_heads
    student = build_student(teacher, StudentConfig(args.student_layers, hidden, heads, init="teacher"), seed=42)
    words = (Path(args.corpus) / "en.txt").read_text(encoding="utf-8").split()[:50_000]
    ids = tokenizer(" ".join(words))["input_ids"][: args.batch * args.length]
    batch = torch.tensor(ids).view(args.batch, args.length)
    mask = torch.ones_like(batch)
    variants = {"last": SelfAttentionDistillation(teacher, student),
                "uniform+hidden": SelfAttentionDistillation(teacher, student, layer_map="uniform",
                                                            hidden_weight=args.hidden_weight)}
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats + 1):
        for name, distiller in variants.items():
            distiller.train()
            started = time.perf_counter()
            distiller(batch, mask).backward()
            seconds[name].append(time.perf_counter() - started)
            student.zero_grad(set_to_none=True)
    median = {name: statistics.median(values[1:]) for name, values in seconds.items()}
    result = {"teacher": args.teacher, "student_layers": args.student_layers, "batch": args.batch,
              "length": args.length, "hidden_weight": args.hidden_weight, "median_forward_backward_s": median,
              "ratio_uniform_hidden_over_last": median["uniform+hidden"] / median["last"],
              "threads": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
              "machine": platform.processor() or platform.machine(), "torch": torch.__version__}
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")


if __name__ == "__main__":
    main()
