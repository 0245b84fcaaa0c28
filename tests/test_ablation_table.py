"""eval.ablation turns the reports of real (tiny) XNLI evaluations into the ablation table.

The reports come from `eval.xnli` fine-tuning tiny real models on the shared data, laid out as
recipes/ablation.sh lays them out; every figure checked is recomputed from those reports."""

from __future__ import annotations

import json

from eval.ablation import XNLI_CHANCE, write_ablation
from test_eval_transfer import tiny_model_dirs  # noqa: F401  (the fixture)


def _evaluate(run_cli, model_dir, out, data_dir, seed):
    result = run_cli("eval.xnli", "--model", model_dir, "--output-dir", out, "--data-dir", data_dir, "--epochs", "1",
                     "--lr", "1e-3", "--device", "cpu", "--max-train-examples", "32", "--max-eval-examples", "30",
                     "--languages", "en", "de", "sw", "--max-length", "48", "--precision", "fp32", "--seed", seed)
    assert result.returncode == 0, result.stderr[-2000:]
    return {lang: entry["accuracy"] for lang, entry in
            json.loads((out / "xnli" / "report.json").read_text())["languages"].items()}


def test_a_partial_ablation_table_with_seed_spread_lowest_language_and_above_chance_retention(
        tmp_path, data_dir, tiny_model_dirs, run_cli):
    student_dir, teacher_dir = tiny_model_dirs
    teacher = _evaluate(run_cli, teacher_dir, tmp_path / "teacher_eval", data_dir, 42)
    seeds = {seed: _evaluate(run_cli, student_dir, tmp_path / "variants" / "minilm" / f"seed{seed}" / "eval", data_dir, seed)
             for seed in (42, 43)}
    (tmp_path / "variants" / "attention" / "seed42").mkdir(parents=True)  # a row still training: left out

    write_ablation(tmp_path, tmp_path / "teacher_eval", measure_speed=False)
    table = json.loads((tmp_path / "ablation.json").read_text())
    [row] = table["rows"]
    averages = [sum(scores.values()) / 3 for scores in seeds.values()]
    teacher_average = sum(teacher.values()) / 3
    assert row["seeds"] == ["seed42", "seed43"] and row["average"]["runs"] == averages
    assert row["lowest"]["runs"] == [min(scores.values()) for scores in seeds.values()]
    assert row["lowest_languages"] == [min(scores, key=scores.get) for scores in seeds.values()]
    assert row["retention"]["runs"] == [100 * a / teacher_average for a in averages]
    if teacher_average > XNLI_CHANCE:
        assert row["retention_above_chance"]["runs"] == [
            100 * (a - XNLI_CHANCE) / (teacher_average - XNLI_CHANCE) for a in averages]
    else:
        assert "retention_above_chance" not in row  # no lead over chance to keep
    markdown = (tmp_path / "ablation.md").read_text()
    assert "| lowest language | retention % | above-chance retention % |" in markdown
    assert "| MiniLM (attention + value relation) | seed42 seed43 |" in markdown
    assert ("| 100 | 100 |" in markdown) == (teacher_average > XNLI_CHANCE)  # above-chance 100 only with a lead
    assert "attention distributions only" not in markdown and (tmp_path / "ablation.png").stat().st_size > 1000


def test_retention_is_the_share_of_the_teachers_lead_over_the_floor_the_student_keeps():
    from eval.report import retention

    teacher = 61.8
    assert retention(teacher, teacher) == retention(teacher, teacher, XNLI_CHANCE) == 100.0
    assert retention(XNLI_CHANCE, teacher, XNLI_CHANCE) == 0.0       # a student at chance keeps none of the lead
    assert retention(XNLI_CHANCE, teacher) > 50                      # while plain retention reads over half
    assert retention(58.0, teacher) == 100 * 58.0 / teacher
    assert retention(40.0, XNLI_CHANCE, XNLI_CHANCE) is None         # a teacher at chance has no lead
