"""Benchmark one distillation training step: SelfAttentionDistillation vs the naive implementation.

The naive step is what a user writes without this toolkit: run both full models with
`attn_implementation="eager"` and `output_attentions=True`, grab the last layer's values with a
hook, and compute the MiniLM loss from the returned attention maps. Both variants use the same
base (no LM head) models, batch and loss definition. Each variant runs in its own process so
that its peak RSS (ru_maxrss) is its own. Prints JSON.

    python benchmarks/distill_step.py                 # realistic (XLM-R-base width, seq 512) + small
    python benchmarks/distill_step.py --shapes recipe # the recipe's student at batch 8 x 512
    python benchmarks/distill_step.py --shapes small  # quick
    python benchmarks/distill_step.py --shapes scale_b2_t128 scale_b8_t128 scale_b2_t512 scale_b4_t512  # scaling
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time


SHAPES = {
    # XLM-R-base teacher (L12-H768-A12, 250k vocabulary) -> the recipe's L12-H384-A12 student, seq 512.
    "realistic": dict(vocab=250002, teacher_layers=12, teacher_hidden=768, student_layers=12, student_hidden=384,
                      heads=12, seq=512, batch=2, steps=3),
    "small": dict(vocab=8002, teacher_layers=4, teacher_hidden=256, student_layers=2, student_hidden=128,
                  heads=4, seq=128, batch=8, steps=10),
    # The recipe's student (L12-H384-A12) at the recipe's length and a real batch (8 x 512), where
    # the loss dominates memory. The teacher is 4 x 768 (not 12) so one step fits minutes on 2 CPU
    # cores: only its first 4 layers run anyway when distilling an upper layer.
    "recipe": dict(vocab=8002, teacher_layers=4, teacher_hidden=768, student_layers=12, student_hidden=384,
                   heads=12, seq=512, batch=8, steps=2),
    # The same, as the corpus packer delivers it: full blocks, no padding.
    "recipe_packed": dict(vocab=8002, teacher_layers=4, teacher_hidden=768, student_layers=12, student_hidden=384,
                          heads=12, seq=512, batch=8, steps=2, packed=True),
}


def _resident_kb(field: str = "VmRSS") -> int:
    with open("/proc/self/status") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith(field + ":"))


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) so the step's own peak can be read (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _models(shape: dict, attn: str):
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    def make(layers: int, hidden: int, seed: int):
        torch.manual_seed(seed)
        config = XLMRobertaConfig(vocab_size=shape["vocab"], hidden_size=hidden, num_hidden_layers=layers,
                                  num_attention_heads=shape["heads"], intermediate_size=4 * hidden,
                                  max_position_embeddings=514, type_vocab_size=1, pad_token_id=1,
                                  attn_implementation=attn,
                                  # no dropout: both variants must compute the same loss to be comparable
                                  # (with dropout, eager attention returns dropped-out maps and the naive
                                  # loss silently measures the wrong thing)
                                  hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        return XLMRobertaModel(config, add_pooling_layer=False)

    return make(shape["teacher_layers"], shape["teacher_hidden"], 0), make(shape["student_layers"], shape["student_hidden"], 1)


def _batch(shape: dict):
    import torch

    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, shape["vocab"], (shape["batch"], shape["seq"]), generator=generator)
    mask = torch.ones_like(ids)
    if not shape.get("packed"):
        mask[0, shape["seq"] * 3 // 4:] = 0  # some padding, as in batches of separate sentences
    ids[mask == 0] = 1
    return ids, mask


def _naive_step_fn(teacher, student, heads: int):
    import torch

    def last_values(model, ids, mask):
        captured = {}
        layer = model.encoder.layer[-1].attention.self
        handle = layer.value.register_forward_hook(lambda _m, _i, out: captured.__setitem__("v", out))
        out = model(input_ids=ids, attention_mask=mask, output_attentions=True)
        handle.remove()
        return out.attentions[-1], captured["v"]

    def relation(v, mask):
        b, s, h = v.shape
        v = v.view(b, s, heads, h // heads).transpose(1, 2)
        scores = v @ v.transpose(-1, -2) / math.sqrt(h // heads)
        scores = scores.masked_fill(~mask.bool()[:, None, None, :], torch.finfo(scores.dtype).min)
        return torch.softmax(scores, dim=-1)

    def kl(p, q, mask):
        per_query = (p * (torch.log(p + 1e-12) - torch.log(q + 1e-12))).sum(-1).mean(1)
        return (per_query * mask).sum() / mask.sum()

    def step(ids, mask):
        with torch.no_grad():
            t_att, t_v = last_values(teacher, ids, mask)
            t_val = relation(t_v, mask)
        s_att, s_v = last_values(student, ids, mask)
        loss = kl(t_att, s_att, mask) + kl(t_val, relation(s_v, mask), mask)
        loss.backward()
        return loss

    return step


# How step memory scales: the recipe_packed models at smaller batches and lengths (one timed step each).
for _batch_size, _seq in ((2, 128), (8, 128), (2, 512), (4, 512)):
    SHAPES[f"scale_b{_batch_size}_t{_seq}"] = dict(SHAPES["recipe_packed"], batch=_batch_size, seq=_seq, steps=1)

VARIANTS = ("ours", "ours_reference", "naive")


def run_variant(variant: str, shape_name: str) -> dict:
    import torch

    from mminilm import SelfAttentionDistillation

    shape = SHAPES[shape_name]
    teacher, student = _models(shape, "eager" if variant == "naive" else "sdpa")
    teacher.eval()
    student.train()
    ids, mask = _batch(shape)
    if variant == "naive":
        step = _naive_step_fn(teacher, student, shape["heads"])
    else:
        # ours: the default relation KL (fused); ours_reference: the plain definition, same module
        distiller = SelfAttentionDistillation(teacher, student, **({"relation_kl": "reference"}
                                                                   if variant == "ours_reference" else {})).train()

        def step(ids, mask):
            loss = distiller(ids, mask)
            loss.backward()
            return loss
    import gc

    gc.collect()
    weights_kb, reset = _resident_kb(), _reset_peak()  # models, batch and Python: everything but the step
    step(ids, mask)  # warm-up
    student.zero_grad(set_to_none=True)
    timings, losses = [], []
    for _ in range(shape["steps"]):
        start = time.perf_counter()
        losses.append(float(step(ids, mask)))
        timings.append(time.perf_counter() - start)
        student.zero_grad(set_to_none=True)
    tokens = int(mask.sum())
    median = sorted(timings)[len(timings) // 2]
    return {"variant": variant, "shape": shape_name, "tokens_per_step": tokens, "median_step_s": median,
            "tokens_per_s": tokens / median, "loss": losses[-1], "threads": torch.get_num_threads(),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "step_peak_above_weights_mb": (_resident_kb("VmHWM") - weights_kb) / 1024 if reset else None}


def _ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either step memory could not be measured (no peak reset on this kernel)."""
    return a / b if a and b else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="+", default=["realistic", "small"], choices=sorted(SHAPES))
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--shape", choices=sorted(SHAPES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:  # child process
        print(json.dumps(run_variant(args.variant, args.shape)))
        return
    results = {}
    for shape in args.shapes:
        per_variant = {}
        for variant in VARIANTS:
            out = subprocess.run([sys.executable, __file__, "--variant", variant, "--shape", shape], check=True,
                                 capture_output=True, text=True, env=dict(os.environ, TRANSFORMERS_VERBOSITY="error"))
            per_variant[variant] = json.loads(out.stdout.strip().splitlines()[-1])
        ours, naive = per_variant["ours"], per_variant["naive"]
        results[shape] = {
            "shape": SHAPES[shape], **per_variant,
            "speedup": ours["tokens_per_s"] / naive["tokens_per_s"],
            "peak_memory_ratio": ours["peak_rss_mb"] / naive["peak_rss_mb"],
            "step_memory_ratio": _ratio(ours["step_peak_above_weights_mb"], naive["step_peak_above_weights_mb"]),
            "same_loss": abs(ours["loss"] - naive["loss"]) <= 1e-3 * max(1.0, abs(naive["loss"])),
            "ours_over_ours_reference": {
                "speed": ours["tokens_per_s"] / per_variant["ours_reference"]["tokens_per_s"],
                "step_memory": _ratio(ours["step_peak_above_weights_mb"],
                                      per_variant["ours_reference"]["step_peak_above_weights_mb"])},
        }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
