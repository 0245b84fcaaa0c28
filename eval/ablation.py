"""`python -m eval.ablation RUN_DIR`: the ablation table of recipes/ablation.sh.

Rows are variants, columns the XNLI average, English, the mean over non-English languages, the
lowest language, retention vs the teacher and retention of the teacher's lead over chance (plain
retention starts at 54% for a student at chance with a 61.8 teacher, which squeezes every row
together), each as mean ± sample standard deviation over seeds (so a reader can tell signal from
noise), plus MLQA F1 and retrieval when they were run, and the efficiency of student and teacher.
Partial runs give a partial table: recipes/ablation.sh rewrites it after every row.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from mminilm.training.atomic import atomic_write_file

from .report import CHANCE, retention

XNLI_CHANCE = CHANCE["xnli"]

VARIANT_NAMES = {
    "minilm": "MiniLM (attention + value relation)",
    "attention": "attention distributions only",
    "minilmv2": "MiniLMv2 (Q-Q, K-K, V-V relations)",
    "layerwise": "MiniLM at every layer pair + hidden MSE",
    "logit_kd": "logit KD (soft MLM logits)",
    "hidden": "hidden-state MSE (TinyBERT-style)",
    "mlm": "MLM only (no teacher)",
    "ta": "MiniLM via teacher assistant",
    "none": "no distillation (student init only)",
}


def _xnli_summary(report: dict[str, Any]) -> dict[str, float]:
    scores = {lang: entry["accuracy"] for lang, entry in report["languages"].items()}
    others = [v for lang, v in scores.items() if lang != "en"]
    lowest = min(scores, key=scores.get)
    return {"average": sum(scores.values()) / len(scores), "en": scores.get("en", float("nan")),
            "non_en": sum(others) / len(others) if others else float("nan"),
            "lowest": scores[lowest], "lowest_language": lowest}


def _mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "runs": values}


def _retrieval_average(eval_dir: Path) -> float | None:
    path = eval_dir / "retrieval" / "report.json"
    return json.loads(path.read_text())["average"] if path.is_file() else None


def collect(run_dir: Path, teacher_eval: Path | None) -> dict[str, Any]:
    teacher = None
    if teacher_eval and (teacher_eval / "xnli" / "report.json").is_file():
        teacher = _xnli_summary(json.loads((teacher_eval / "xnli" / "report.json").read_text()))
        teacher["retrieval"] = _retrieval_average(teacher_eval)
    rows = []
    for variant_dir in sorted((run_dir / "variants").iterdir()):
        seeds = sorted(p for p in variant_dir.glob("seed*") if (p / "eval" / "xnli" / "report.json").is_file())
        if not seeds:
            continue
        summaries = [_xnli_summary(json.loads((s / "eval" / "xnli" / "report.json").read_text())) for s in seeds]
        row: dict[str, Any] = {"variant": variant_dir.name, "name": VARIANT_NAMES.get(variant_dir.name, variant_dir.name),
                               "seeds": [s.name for s in seeds]}
        for key in ("average", "en", "non_en", "lowest"):
            row[key] = _mean_std([s[key] for s in summaries])
        row["lowest_languages"] = [s["lowest_language"] for s in summaries]
        if teacher:
            row["retention"] = _mean_std([retention(s["average"], teacher["average"]) for s in summaries])
            above = [retention(s["average"], teacher["average"], XNLI_CHANCE) for s in summaries]
            if None not in above:  # the teacher has a lead over chance to keep
                row["retention_above_chance"] = _mean_std(above)
        mlqa = [json.loads((s / "eval" / "mlqa" / "report.json").read_text())["average"]["f1"]
                for s in seeds if (s / "eval" / "mlqa" / "report.json").is_file()]
        if mlqa:
            row["mlqa_f1"] = _mean_std(mlqa)
        retrieval = [value for value in (_retrieval_average(s / "eval") for s in seeds) if value is not None]
        if retrieval:
            row["retrieval"] = _mean_std(retrieval)
        model_dir = seeds[0] / "model"
        row["model_dir"] = str(model_dir)
        rows.append(row)
    order = list(VARIANT_NAMES)
    rows.sort(key=lambda r: order.index(r["variant"]) if r["variant"] in order else len(order))
    return {"teacher": teacher, "rows": rows}


def _cell(stat: dict[str, float] | None) -> str:
    if stat is None:
        return "–"
    return f"{stat['mean']:.1f} ± {stat['std']:.1f}" if len(stat["runs"]) > 1 else f"{stat['mean']:.1f}"


def write_ablation(run_dir: str | Path, teacher_eval: str | Path | None = None, measure_speed: bool = True) -> Path:
    run_dir = Path(run_dir)
    data = collect(run_dir, Path(teacher_eval) if teacher_eval else None)
    if not data["rows"]:
        raise FileNotFoundError(f"{run_dir}/variants/*/seed*/eval/xnli/report.json: no evaluated variants")
    has_mlqa = any("mlqa_f1" in r for r in data["rows"])
    has_retrieval = any("retrieval" in r for r in data["rows"])
    header = ("| variant | XNLI avg | en | non-en mean | lowest language | retention % | above-chance retention % |"
              + (" MLQA F1 |" if has_mlqa else "") + (" retrieval top-1 |" if has_retrieval else ""))
    lines = ["# Ablation (zero-shot XNLI, fine-tuned on English)", "",
             "Mean ± sample standard deviation where a variant ran with several seeds (seeds column).",
             *(["Retrieval: en<->xx top-1 on distinct XNLI test premises, mean-pooled last layer, no fine-tuning "
                "(python -m eval.retrieval)."] if has_retrieval else []), "",
             header.replace("| variant |", "| variant | seeds |"),
             "|---|---|---:|---:|---:|---|---:|---:|" + ("---:|" if has_mlqa else "") + ("---:|" if has_retrieval else "")]
    teacher = data["teacher"]
    if teacher:
        lines.append(f"| teacher | – | {teacher['average']:.1f} | {teacher['en']:.1f} | {teacher['non_en']:.1f} | "
                     f"{teacher['lowest_language']} {teacher['lowest']:.1f} | 100 | "
                     f"{'100' if teacher['average'] > XNLI_CHANCE else '–'} |"
                     + (" |" if has_mlqa else "")
                     + (f" {teacher['retrieval']:.1f} |" if has_retrieval and teacher.get("retrieval") is not None
                        else " – |" if has_retrieval else ""))
    for row in data["rows"]:
        lowest = "/".join(dict.fromkeys(row["lowest_languages"]))
        lines.append(f"| {row['name']} | {' '.join(row['seeds'])} | {_cell(row['average'])} | {_cell(row['en'])} | {_cell(row['non_en'])} | "
                     f"{lowest} {_cell(row['lowest'])} | {_cell(row.get('retention'))} | {_cell(row.get('retention_above_chance'))} |" + (f" {_cell(row.get('mlqa_f1'))} |" if has_mlqa else "")
                     + (f" {_cell(row.get('retrieval'))} |" if has_retrieval else ""))
    if measure_speed:
        from .efficiency import compare
        from .report import _speed_sentences

        teacher_model = json.loads((Path(teacher_eval) / "xnli" / "report.json").read_text())["model"] if teacher else None
        efficiency = compare(data["rows"][0]["model_dir"], teacher_model, _speed_sentences())
        data["efficiency"] = efficiency
        lines += ["", "## Efficiency (every variant has the same student shape)", "",
                  "| model | Transformer params | embedding params | FLOPs/token (n=128) | sentences/s (median of 5) | speed-up |",
                  "|---|---:|---:|---:|---:|---:|"]
        for role in ("teacher", "student"):
            if role in efficiency:
                cost = efficiency[role]
                speedup = efficiency.get("speedup", 1.0) if role == "student" else 1.0
                lines.append(f"| {role} | {cost['transformer_parameters'] / 1e6:.2f}M | {cost['embedding_parameters'] / 1e6:.2f}M | "
                             f"{cost['flops_per_token'] / 1e6:.1f}M | {cost['throughput']['sentences_per_s']:.0f} | {speedup:.2f}x |")
    _chart(data, run_dir / "ablation.png")
    lines += ["", "![ablation](ablation.png)", ""]
    atomic_write_file(run_dir / "ablation.json", lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))
    atomic_write_file(run_dir / "ablation.md", lambda tmp: tmp.write_text("\n".join(lines)))
    return run_dir / "ablation.md"


def _chart(data: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .report import save_figure

    rows = data["rows"]
    names = [r["variant"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.bar(names, [r["average"]["mean"] for r in rows], yerr=[r["average"]["std"] for r in rows], capsize=4,
           color="#2a7ab9", label="student (mean ± std over seeds)")
    if data["teacher"]:
        ax.axhline(data["teacher"]["average"], color="#555555", linestyle="--", label="teacher")
    ax.axhline(XNLI_CHANCE, color="#bb3333", linestyle=":", label="chance")
    ax.set_ylabel("XNLI average accuracy (%)")
    ax.set_title("Ablation: zero-shot XNLI at equal steps")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.ablation", description=__doc__)
    parser.add_argument("run_dir")
    parser.add_argument("--teacher-eval", default=None, help="eval output dir of the teacher")
    parser.add_argument("--no-speed", action="store_true")
    args = parser.parse_args(argv)
    try:
        print(write_ablation(args.run_dir, args.teacher_eval, measure_speed=not args.no_speed))
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
