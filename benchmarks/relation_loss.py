"""Benchmark the relation loss alone: fused (chunked) vs reference, forward + backward.

Each (path, shape) runs in its own process, so its peak RSS is its own; "peak extra memory" is the
high-water mark of the loss computation above the RSS the inputs already took (ru_maxrss after
minus the resident size just before the loss). Time is the median of `--repeats` fwd+bwd passes
after one warm-up. Prints JSON; the ratios fused/reference are in "summary".

    python benchmarks/relation_loss.py                      # B·H·T² from 1·12·128² to 8·12·512²
    python benchmarks/relation_loss.py --shapes 8x12x512    # one shape
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

DEFAULT_SHAPES = ["2x12x128", "8x12x256", "4x12x512", "8x12x512"]  # batch x heads x seq
TEACHER_HIDDEN, STUDENT_HIDDEN = 768, 384


def _rss_kb() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def run_one(path: str, shape: str, repeats: int) -> dict:
    import torch

    from mminilm.objectives.losses import minilm_relation_losses

    batch, heads, seq = map(int, shape.split("x"))
    generator = torch.Generator().manual_seed(0)
    teacher = [torch.randn(batch, seq, TEACHER_HIDDEN, generator=generator) for _ in range(3)]
    student = [torch.randn(batch, seq, STUDENT_HIDDEN, generator=generator, requires_grad=True) for _ in range(3)]
    mask = torch.ones(batch, seq, dtype=torch.long)
    mask[0, seq * 3 // 4:] = 0
    before = _rss_kb()
    times, loss = [], None
    for index in range(repeats + 1):
        started = time.perf_counter()
        loss = sum(minilm_relation_losses(teacher, student, mask, heads, path=path).values())
        loss.backward()
        if index:  # the first pass warms up allocators and kernels
            times.append(time.perf_counter() - started)
        for tensor in student:
            tensor.grad = None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"path": path, "shape": shape, "b_h_t2": batch * heads * seq * seq, "loss": float(loss),
            "fwd_bwd_s_median": statistics.median(times), "peak_extra_mb": max(0, peak - before) / 1024,
            "threads": torch.get_num_threads()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", default=DEFAULT_SHAPES, help="batch x heads x seq")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--one", nargs=2, metavar=("PATH", "SHAPE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one[0], args.one[1], args.repeats)))
        return 0
    results = []
    for shape in args.shapes:
        for path in ("reference", "fused"):
            out = subprocess.run([sys.executable, __file__, "--one", path, shape, "--repeats", str(args.repeats)],
                                 check=True, capture_output=True, text=True)
            results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    summary = []
    for shape in args.shapes:
        ref, fused = (next(r for r in results if r["shape"] == shape and r["path"] == p) for p in ("reference", "fused"))
        summary.append({"shape": shape, "b_h_t2": ref["b_h_t2"],
                        "time_ratio_fused_over_reference": fused["fwd_bwd_s_median"] / ref["fwd_bwd_s_median"],
                        "memory_ratio_fused_over_reference": fused["peak_extra_mb"] / max(ref["peak_extra_mb"], 1e-9),
                        "same_loss": abs(fused["loss"] - ref["loss"]) <= 1e-4 * max(1.0, abs(ref["loss"]))})
    print(json.dumps({"machine": {"cpus": os.cpu_count(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")},
                      "results": results, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
