"""`python -m eval.report OUT_STUDENT [--teacher OUT_TEACHER]`: the per-language verdict on a student.

Reads the `{task}/report.json` that `eval.xnli`, `eval.mlqa` and `eval.retrieval` wrote in each
output dir and writes, into OUT_STUDENT: `report.md` (a table per task: language, student,
teacher, retention %, and the average), `report.json`, one PNG bar chart per task, the model
sizes with the student's measured speed-up over the teacher on the same inputs, and optionally
the retrieval curve logged during distillation (`--train-log`) and the corpus contamination
summary (`--contamination`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from mminilm.training.atomic import atomic_write_file
from mminilm.training.run_logging import read_jsonl
from mminilm.models.student import DISTILLATION_FILE

TASK_METRIC = {"xnli": ("accuracy", "accuracy (%)"), "mlqa": ("f1", "F1"),
               "retrieval": ("accuracy", "top-1 (%)"), "retrieval-mlqa": ("accuracy", "top-1 (%)")}
TASK_TITLE = {"xnli": "XNLI zero-shot transfer (fine-tuned on English)",
              "mlqa": "MLQA zero-shot transfer (fine-tuned on English)",
              "retrieval": "en<->xx retrieval, XNLI test premises (no fine-tuning)",
              "retrieval-mlqa": "en<->xx retrieval, MLQA dev questions (no fine-tuning)"}
PREDICTION_LINES = {"xnli", "retrieval", "retrieval-mlqa"}  # tasks whose predictions/{lang}.jsonl lines carry "index"
FALLBACK_SENTENCES = [
    "The committee will publish its report next week.", "Die Regierung hat neue Maßnahmen angekündigt.",
    "El tren llegó con dos horas de retraso.", "Le musée est fermé le lundi.", "Он купил новую машину в прошлом году.",
    "我们明天早上八点出发。", "مرحبا بكم في المدينة القديمة.", "यह किताब बहुत दिलचस्प है।", "Tôi thích uống cà phê vào buổi sáng.",
    "Bu akşam sinemaya gidiyoruz.", "Ninapenda kusoma vitabu vya historia.", "ฉันชอบกินอาหารไทยมาก",
]


CHANCE = {"xnli": 100.0 / 3}


def retention(student: float, teacher: float, floor: float = 0.0) -> float | None:
    """100 x (student - floor) / (teacher - floor): the share of the teacher's lead over `floor` the
    student keeps. floor 0 is plain retention; floor = chance asks how much of what the teacher
    learnt above guessing survived, which plain retention hides (a student at chance keeps 54% of a
    61.8 teacher). None when the teacher has no lead over the floor."""
    return 100.0 * (student - floor) / (teacher - floor) if teacher - floor > 1e-9 else None


class ReportError(ValueError):
    """Inputs that cannot be compared honestly (different examples, a missing or corrupt report)."""


def _load_task(output_dir: Path, task: str) -> dict[str, Any] | None:
    path = output_dir / task / "report.json"
    if not path.is_file():
        return None
    try:
        report = json.loads(path.read_text())
        report["languages"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ReportError(f"{path} is not a report written by eval.{task} ({error}); re-run eval.{task}") from error
    return report


def evaluated_examples(output_dir: Path, task: str, language: str) -> list:
    """The example ids a model was scored on (from its prediction file), in order."""
    if task in PREDICTION_LINES:
        path = output_dir / task / "predictions" / f"{language}.jsonl"
        return [json.loads(line)["index"] for line in path.read_text().splitlines()] if path.is_file() else []
    path = output_dir / "mlqa" / "predictions" / f"{language}.json"
    return list(json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else []


def check_same_examples(student_out: Path, student: dict, teacher_out: Path, teacher: dict, task: str) -> None:
    """Retention means something only on identical example sets: same protocol, same rows."""
    if student.get("protocol") != teacher.get("protocol"):
        raise ReportError(f"{task}: the student was evaluated with protocol {student.get('protocol')!r} and the teacher "
                          f"with {teacher.get('protocol')!r}; evaluate both the same way")
    for language in student["languages"]:
        if language not in teacher["languages"]:
            raise ReportError(f"{task}: the teacher report {teacher_out} has no {language}; evaluate it on the same languages")
        ours, theirs = (evaluated_examples(student_out, task, language), evaluated_examples(teacher_out, task, language))
        if ours != theirs:
            raise ReportError(f"{task} {language}: the student was scored on {len(ours)} examples and the teacher on "
                              f"{len(theirs)}, not the same ones; evaluate both with the same --max-eval-examples")


def provenance(model_dir: str) -> list[str]:
    """What a reader must know about a model: 4-bit teacher weights, how the student started."""
    notes = []
    directory = Path(model_dir)
    conversion = directory / "conversion.json"
    if conversion.is_file():
        record = json.loads(conversion.read_text())
        if record.get("weight_bits"):
            notes.append(f"converted from {Path(record['source']).name}: **{record['weight_bits']}-bit weights** "
                         f"({record.get('weight_format', 'quantised')})")
    trimmed = directory / "trim_report.json"
    if trimmed.is_file():
        record = json.loads(trimmed.read_text())
        notes.append(f"vocabulary trimmed to {record['vocabulary_after']:,} of {record['vocabulary_before']:,} pieces "
                     f"({record['vocabulary_share']:.1f}%) for {' '.join(record['languages'])} (mminilm.models.trim_vocab)")
    distillation = directory / DISTILLATION_FILE
    if distillation.is_file():
        record = json.loads(distillation.read_text())
        layers = {"uniform": ", every layer pair"}.get(record.get("distil_layers"), "")
        hidden = f" + {record['hidden_weight']:g} x hidden-state MSE" if record.get("hidden_weight") else ""
        notes.append(f"{record['objective']}{layers}{hidden} from {record['teacher']}, student init "
                     f"{record['student_init']}, {record['steps']} steps")
    return notes


def _score(entry: dict[str, Any], task: str) -> float:
    return float(entry[TASK_METRIC[task][0]])


def task_rows(student: dict[str, Any], teacher: dict[str, Any] | None, task: str) -> list[dict[str, Any]]:
    rows = []
    for lang, entry in student["languages"].items():
        row = {"language": lang, "student": _score(entry, task), "n": entry["n"]}
        if teacher and lang in teacher["languages"]:
            row["teacher"] = _score(teacher["languages"][lang], task)
            row["retention"] = retention(row["student"], row["teacher"])
        rows.append(row)
    average = {"language": "average", "student": sum(r["student"] for r in rows) / len(rows), "n": sum(r["n"] for r in rows)}
    if teacher and all("teacher" in r for r in rows):
        average["teacher"] = sum(r["teacher"] for r in rows) / len(rows)
        average["retention"] = retention(average["student"], average["teacher"])
    rows.append(average)
    if task in CHANCE:
        for row in rows:
            above = retention(row["student"], row["teacher"], CHANCE[task]) if "teacher" in row else None
            if above is not None:
                row["retention_above_chance"] = above
    return rows


FINE_TUNING_FIELDS = ("english_train", "epochs", "lr", "batch_size", "max_length", "max_train_examples", "seed",
                      "runs", "freeze_word_embeddings", "group_by_length")


def fine_tuning_mismatch(student: dict, teacher: dict) -> list[str]:
    """A warning line when student and teacher were fine-tuned differently: retention is only
    meaningful when the one difference between the two columns is the model."""
    student_config, teacher_config = student.get("config", {}), teacher.get("config", {})
    differing = [f"{name} {student_config.get(name)} vs {teacher_config.get(name)}" for name in FINE_TUNING_FIELDS
                 if name in student_config and name in teacher_config and student_config[name] != teacher_config[name]]
    if not differing:
        return []
    return [f"> **Warning:** student and teacher were fine-tuned differently ({'; '.join(differing)}, student vs "
            "teacher): the retention column compares protocols as well as models."]


def runs_note(student: dict, teacher: dict | None) -> str:
    """', mean of N fine-tuning runs (...)' when the task was fine-tuned several times (eval.xnli
    --runs): the spread between runs is what a single number would hide."""
    if len(student.get("seeds", ())) < 2:
        return ""
    per_run = [f"student {' / '.join(f'{a:.1f}' for a in student['average_runs'])}"]
    if teacher and teacher.get("average_runs"):
        per_run.append(f"teacher {' / '.join(f'{a:.1f}' for a in teacher['average_runs'])}")
    return (f", mean of {len(student['seeds'])} fine-tuning runs (seeds {' '.join(map(str, student['seeds']))}; "
            f"average per run: {', '.join(per_run)})")


def chance_warnings(rows: list[dict[str, Any]], task: str) -> list[str]:
    """Flag models whose XNLI average is statistically indistinguishable from chance (1/3).

    Retention between two models at chance is meaningless (it reads ~100%), so the report says
    so instead of letting a reader take it for a good student. Band: 1/3 ± 1.96 binomial std
    with n = the examples of one language (the languages are translations of the same
    examples, so pooling them would overstate the evidence).
    """
    if task != "xnli":
        return []
    average = rows[-1]
    n = average["n"] // max(1, len(rows) - 1)
    band = 100 * 1.96 * ((1 / 3) * (2 / 3) / max(1, n)) ** 0.5
    warnings = []
    for role in ("teacher", "student"):
        value = average.get(role)
        if value is not None and abs(value - 100 / 3) <= band:
            warnings.append(f"> **Warning:** the {role}'s XNLI average ({value:.1f}%) is within chance level "
                            f"(33.3% ± {band:.1f} for n={n}); retention figures are not meaningful.")
    return warnings


def fine_tuning_note(report: dict) -> str:
    """The fine-tuning choices a reader needs next to the numbers (both change what was trained
    on and in which batches; the mismatch check makes sure the teacher had the same)."""
    config = report.get("config", {})
    notes = (["word embeddings frozen while fine-tuning"] if config.get("freeze_word_embeddings") else []) + \
            (["length-grouped batches"] if config.get("group_by_length") else [])
    return "".join(f", {note}" for note in notes)


# Below this average F1 an MLQA model has not learned extractive QA: predicted spans still overlap
# the answers by a few tokens. Every model the e5-small preset fine-tuned on 500-1000 English
# questions for one epoch scored 6-16 F1 per language, the teacher as much as students distilled
# for 20, 170 or 450 steps (docs/results/e5-small-*/report.md).
MLQA_UNTRAINED_F1 = 20.0


def untrained_warnings(rows: list[dict[str, Any]], task: str) -> list[str]:
    """Flag an MLQA table whose models never learned the task (average F1 < MLQA_UNTRAINED_F1).

    Why: there, student and teacher both sit on the same floor, so retention reads ~100% and the
    difference between them is noise; the report says so instead of letting a reader take it
    for a student that kept everything. The teacher decides (the student alone when there is none).
    """
    if task != "mlqa":
        return []
    average = rows[-1]
    role = "teacher" if average.get("teacher") is not None else "student"
    value = average.get(role)
    if value is None or value >= MLQA_UNTRAINED_F1:
        return []
    return [f"> **Warning:** the {role}'s MLQA average F1 ({value:.1f}) is below {MLQA_UNTRAINED_F1:.0f}: with this "
            f"little English QA training neither model has learned the task, so these F1 and retention figures say "
            f"nothing about what distillation kept (more MLQA_MAX_TRAIN / MLQA_EPOCHS fixes that; XNLI does not "
            f"have this problem)."]


def _fmt(value: Any, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown_table(rows: list[dict[str, Any]], task: str) -> str:
    metric = TASK_METRIC[task][1]
    above = task in CHANCE
    header = f"| language | student {metric} | teacher {metric} | retention % |" + (" above-chance retention % |" if above else "")
    lines = [header + " n |", "|---|---:|---:|---:|" + ("---:|" if above else "") + "---:|"]
    for row in rows:
        name = f"**{row['language']}**" if row["language"] == "average" else row["language"]
        extra = f" {_fmt(row.get('retention_above_chance'))} |" if above else ""
        lines.append(f"| {name} | {_fmt(row['student'])} | {_fmt(row.get('teacher'))} | "
                     f"{_fmt(row.get('retention'))} |{extra} {row['n']} |")
    return "\n".join(lines)


def save_figure(fig, path: Path) -> None:
    """Write a PNG atomically (a reader never sees half a chart) and free the figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    atomic_write_file(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def bar_chart(rows: list[dict[str, Any]], task: str, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels = [r["language"] for r in rows]
    x = np.arange(len(labels))
    has_teacher = any("teacher" in r for r in rows)
    width = 0.4 if has_teacher else 0.6
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(labels) + 2), 4))
    ax.bar(x - (width / 2 if has_teacher else 0), [r["student"] for r in rows], width, label="student", color="#2a7ab9")
    if has_teacher:
        ax.bar(x + width / 2, [r.get("teacher", 0) for r in rows], width, label="teacher", color="#b0b0b0")
    ax.set_xticks(x, labels, rotation=0)
    ax.set_ylabel(TASK_METRIC[task][1])
    ax.set_title(title)
    ax.legend()
    save_figure(fig, path)


def probe_curve(train_log: Path) -> dict[str, Any] | None:
    """The retrieval probe records of a distillation log (`--probe-every`): student per step, teacher at step 0."""
    if not train_log.is_file():
        raise ReportError(f"--train-log {train_log} does not exist (expected a distillation run's train_log.jsonl)")
    probes = [r for r in read_jsonl(train_log) if r.get("probe") == "retrieval"]
    if not probes:
        return None
    student = [{"step": r["step"], "average": r["average"]} for r in probes if r["model"] == "student"]
    teacher = next((r["average"] for r in probes if r["model"] == "teacher"), None)
    return {"student": student, "teacher": teacher, "languages": sorted(probes[0]["languages"]),
            "sentences": probes[0]["sentences"]}


def curve_chart(curve: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot([p["step"] for p in curve["student"]], [p["average"] for p in curve["student"]], marker="o",
            color="#2a7ab9", label="student")
    if curve["teacher"] is not None:
        ax.axhline(curve["teacher"], color="#808080", linestyle="--", label="teacher")
    ax.set_xlabel("distillation step")
    ax.set_ylabel("en<->xx retrieval top-1 (%)")
    ax.set_title(f"Retention during distillation ({curve['sentences']} XNLI premises x {len(curve['languages'])} languages)")
    ax.legend()
    save_figure(fig, path)


def _speed_sentences() -> list[str]:
    root = os.environ.get("MMINILM_DATA")
    path = Path(root) / "xnli" / "dev" / "en.tsv" if root else None
    if path and path.is_file():
        with open(path, encoding="utf-8") as handle:
            return [line.split("\t")[0] for _, line in zip(range(256), handle)]
    return FALLBACK_SENTENCES * 8


def write_report(student_dir: str | os.PathLike, teacher_dir: str | os.PathLike | None = None,
                 measure_speed: bool = True, speed_repeats: int = 5, train_log: str | os.PathLike | None = None,
                 contamination: str | os.PathLike | None = None) -> Path:
    student_out = Path(student_dir)
    teacher_out = Path(teacher_dir) if teacher_dir else None
    report: dict[str, Any] = {"student_dir": str(student_out), "teacher_dir": str(teacher_out) if teacher_out else None,
                              "tasks": {}}
    sections = ["# mMiniLM transfer report", ""]
    model_dirs: dict[str, str] = {}
    for task in TASK_METRIC:
        student = _load_task(student_out, task)
        if student is None:
            continue
        teacher = _load_task(teacher_out, task) if teacher_out else None
        if teacher_out and teacher is None:
            raise ReportError(f"--teacher {teacher_out} has no {task}/report.json (the student has one): "
                              f"evaluate the teacher on {task} too, or check the path")
        if teacher:
            check_same_examples(student_out, student, teacher_out, teacher, task)
        model_dirs.setdefault("student", student["model"])
        if teacher:
            model_dirs.setdefault("teacher", teacher["model"])
        rows = task_rows(student, teacher, task)
        chart = student_out / f"{task}.png"
        bar_chart(rows, task, chart, TASK_TITLE[task])
        report["tasks"][task] = {"rows": rows, "chart": chart.name,
                                 "protocol": student.get("protocol", "mlqa dev (XLT)" if task == "mlqa" else None)}
        protocol = report["tasks"][task]["protocol"]
        if student.get("english_train"):
            protocol += f", fine-tuned on {student['english_train']}"
        protocol += fine_tuning_note(student)
        protocol += runs_note(student, teacher)
        warnings = chance_warnings(rows, task) + untrained_warnings(rows, task) + (fine_tuning_mismatch(student, teacher) if teacher else [])
        report["tasks"][task]["warnings"] = warnings
        if task.startswith("retrieval"):
            protocol += (f"; layer {student['layer']} of {student['layers']} (student)"
                         + (f", {teacher['layer']} of {teacher['layers']} (teacher)" if teacher else ""))
        sections += [f"## {TASK_TITLE[task]} ({protocol})", "", *[w + "\n" for w in warnings], markdown_table(rows, task), "",
                     f"![{task}]({chart.name})", ""]
    curve = probe_curve(Path(train_log)) if train_log else None
    if curve:
        report["retrieval_curve"] = curve
        curve_chart(curve, student_out / "retrieval_curve.png")
        last = curve["student"][-1]
        teacher_note = f" (teacher {curve['teacher']:.1f})" if curve["teacher"] is not None else ""
        sections += ["## Retention during distillation", "",
                     f"Student en<->xx retrieval top-1 on {curve['sentences']} XNLI test premises x "
                     f"{len(curve['languages'])} languages, logged every few steps (`--probe-every`): "
                     f"{curve['student'][0]['average']:.1f} at step {curve['student'][0]['step']} -> "
                     f"{last['average']:.1f} at step {last['step']}{teacher_note}.", "",
                     "![retrieval curve](retrieval_curve.png)", ""]
    if not report["tasks"]:
        raise FileNotFoundError(f"{student_out} has neither xnli/report.json nor mlqa/report.json: run eval.xnli / eval.mlqa first")
    if contamination:
        path = Path(contamination)
        if not path.is_file():
            raise ReportError(f"--contamination {path} does not exist (write it with python -m corpora contamination "
                              f"CORPUS --output-dir DIR)")
        summary = json.loads(path.read_text())["summary"]
        report["contamination"] = summary
        sections[2:2] = [f"{summary} Details: {path.with_suffix('.md')}.", ""]
    notes = [f"- {role}: {note}" for role in ("teacher", "student") if role in model_dirs
             for note in provenance(model_dirs[role])]
    report["provenance"] = notes
    if notes:
        sections[2:2] = ["Models:", "", *notes, ""]
    if "student" in model_dirs:
        from .efficiency import compare, model_cost

        if measure_speed:
            efficiency = compare(model_dirs["student"], model_dirs.get("teacher"), _speed_sentences(), speed_repeats)
        else:
            efficiency = {"student": model_cost(model_dirs["student"]).as_dict()}
            if "teacher" in model_dirs:
                efficiency["teacher"] = model_cost(model_dirs["teacher"]).as_dict()
        report["efficiency"] = efficiency
        lines = ["## Size and speed", "",
                 "| model | layers | hidden | Transformer params | embedding params | GFLOPs/token (n=128) | sentences/s |",
                 "|---|---:|---:|---:|---:|---:|---:|"]
        for role in ("student", "teacher"):
            if role in efficiency:
                cost = efficiency[role]
                speed = cost.get("throughput", {}).get("sentences_per_s")
                lines.append(f"| {role} | {cost['layers']} | {cost['hidden']} | {cost['transformer_parameters'] / 1e6:.2f}M | "
                             f"{cost['embedding_parameters'] / 1e6:.2f}M | {cost['flops_per_token'] / 1e9:.4f} | {_fmt(speed)} |")
        if "speedup" in efficiency:
            lines += ["", f"Measured speed-up of the student over the teacher: **{efficiency['speedup']:.2f}x** "
                          f"(same {efficiency['student']['throughput']['sentences']} sentences, batch 32, median of "
                          f"{speed_repeats} runs, {efficiency['student']['throughput']['threads']} CPU threads); "
                          f"FLOPs ratio {efficiency['flops_ratio']:.2f}x."]
        sections += lines + [""]
    atomic_write_file(student_out / "report.json", lambda tmp: tmp.write_text(json.dumps(report, indent=2) + "\n"))
    atomic_write_file(student_out / "report.md", lambda tmp: tmp.write_text("\n".join(sections)))
    return student_out / "report.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.report", description=__doc__)
    parser.add_argument("student_dir", help="output dir of eval.xnli/eval.mlqa for the student")
    parser.add_argument("--teacher", default=None, help="the same for the teacher")
    parser.add_argument("--no-speed", action="store_true", help="skip the throughput measurement")
    parser.add_argument("--speed-repeats", type=int, default=5)
    parser.add_argument("--train-log", default=None,
                        help="the student's distillation train_log.jsonl: plots its --probe-every retrieval curve")
    parser.add_argument("--contamination", default=None,
                        help="contamination.json of python -m corpora contamination: its summary line goes on top")
    args = parser.parse_args(argv)
    try:
        path = write_report(args.student_dir, args.teacher, measure_speed=not args.no_speed,
                            speed_repeats=args.speed_repeats, train_log=args.train_log,
                            contamination=args.contamination)
    except (FileNotFoundError, ReportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
