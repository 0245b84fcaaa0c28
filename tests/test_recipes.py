"""The recipes as a user runs them: bash subprocesses, end to end, on the shared data (shortened tiny preset)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from mminilm.training.run_logging import read_jsonl

REPO = Path(__file__).resolve().parents[1]
# The tiny preset, shortened so that pretraining, distillation, both evaluations and the report
# finish in a few minutes on 2 cores. The full preset is the same code with more steps.
SHORT = {
    "VOCAB_SIZE": "3000", "TOKENIZER_LINES": "1500", "TEACHER_LAYERS": "2", "TEACHER_HIDDEN": "64",
    "TEACHER_STEPS": "30", "STUDENT_HIDDEN": "32", "STUDENT_LAYERS": "1", "STEPS": "30", "MAX_LENGTH": "64",
    "BATCH_SIZE": "8", "SAVE_EVERY": "10", "WARMUP": "3", "XNLI_MAX_TRAIN": "96", "XNLI_MAX_EVAL": "24", "XNLI_EPOCHS": "1",
    "MLQA_MAX_TRAIN": "48", "MLQA_MAX_EVAL": "12", "MLQA_EPOCHS": "1", "MLQA_MAX_LENGTH": "128", "MLQA_STRIDE": "32",
    "RETRIEVAL_SENTENCES": "40", "PROBE_EVERY": "10", "PROBE_SENTENCES": "20", "OMP_NUM_THREADS": "2",
}


def _run(script: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "recipes" / script), *args], cwd="/", env=env, capture_output=True,
                          text=True, timeout=1200)


@pytest.mark.slow
def test_tiny_preset_end_to_end(tmp_path, data_dir):
    env = dict(os.environ, MMINILM_DATA=str(data_dir), OUTPUT=str(tmp_path / "run"), **SHORT)
    result = _run("xlmr_to_small.sh", env, "--preset", "tiny")  # from cwd=/: the recipe finds its repo itself
    assert result.returncode == 0, result.stderr[-4000:]
    run = tmp_path / "run"
    for model in (run / "teacher" / "model", run / "student" / "model"):
        assert (model / "config.json").is_file() and (model / "tokenizer.json").is_file()
    student_config = json.loads((run / "student" / "model" / "config.json").read_text())
    assert (student_config["num_hidden_layers"], student_config["hidden_size"]) == (1, 32)
    for log in (run / "teacher" / "train_log.jsonl", run / "student" / "train_log.jsonl"):
        losses = [r["loss"] for r in read_jsonl(log) if "loss" in r]
        assert len(losses) == 3 and losses[-1] < losses[0], (log, losses)  # log every 10 of 30 steps
    probes = [(r["step"], r["model"]) for r in read_jsonl(run / "student" / "train_log.jsonl") if r.get("probe")]
    assert probes == [(0, "teacher"), (0, "student"), (10, "student"), (20, "student"), (30, "student")]
    report = json.loads((run / "eval" / "student" / "report.json").read_text())
    assert set(report["tasks"]) == {"retrieval", "retrieval-mlqa", "xnli", "mlqa"}
    assert len(report["tasks"]["xnli"]["rows"]) == 16 and len(report["tasks"]["mlqa"]["rows"]) == 8
    assert len(report["tasks"]["retrieval"]["rows"]) == 15  # 14 languages paired with English + the average
    assert all("teacher" in row and "retention" in row for row in report["tasks"]["xnli"]["rows"])
    markdown = (run / "report.md").read_text()
    assert markdown.count("| **average** |") == 4
    assert "Retention during distillation" in markdown and "Contamination (13-word overlap" in markdown
    for chart in ("xnli.png", "mlqa.png", "retrieval.png", "retrieval_curve.png"):
        assert (run / "eval" / "student" / chart).is_file(), chart
    summary = json.loads((run / "recipe_summary.json").read_text())
    assert summary["student"].endswith("student/model")
    # where the time went, per stage (recipes/lib.sh `timed`): every stage that ran, and nothing stopped
    assert set(summary["work"]["by_stage"]) == {"pretrain", "distill", "retrieval", "xnli", "mlqa", "contamination", "report"}
    assert summary["work"]["stopped"] == [] and summary["work"]["by_stage"]["distill"] >= 1
    # a second run finds everything done and only rewrites the report
    again = _run("xlmr_to_small.sh", env, "--preset", "tiny")
    assert again.returncode == 0 and "already trained" in again.stderr
    assert again.stderr.count("already evaluated") == 8  # 4 reports (xnli, mlqa, 2 retrieval) x 2 models
    # more XNLI runs: the finished seed is kept for both models, only seed 43 is fine-tuned
    more = _run("xlmr_to_small.sh", dict(env, XNLI_RUNS="2"), "--preset", "tiny")
    assert more.returncode == 0 and more.stderr.count("fine-tuning seeds [43]") == 2, more.stderr[-3000:]
    assert json.loads((run / "eval" / "student" / "xnli" / "report.json").read_text())["seeds"] == [42, 43]
    assert "mean of 2 fine-tuning runs" in (run / "report.md").read_text()
    # an evaluation made with other options is refused, not returned as if it answered this one
    other = _run("xlmr_to_small.sh", dict(env, XNLI_RUNS="2", XNLI_EPOCHS="2"), "--preset", "tiny")
    assert other.returncode == 2 and "epochs: 1.0 -> 2.0" in other.stderr and "Traceback" not in other.stderr
    redo = _run("xlmr_to_small.sh", dict(env, XNLI_EPOCHS="2", REEVALUATE="1"), "--preset", "tiny")
    assert redo.returncode == 0, redo.stderr[-3000:]
    redone = json.loads((run / "eval" / "teacher" / "xnli" / "report.json").read_text())
    assert redone["config"]["epochs"] == 2.0 and "seeds" not in redone
    # the same OUTPUT with other knobs is refused, naming the fields, instead of returning the old model
    changed = _run("xlmr_to_small.sh", dict(env, LR="5e-4"), "--preset", "tiny")
    assert changed.returncode == 2 and "another configuration" in changed.stderr and "lr: 0.001 -> 0.0005" in changed.stderr


@pytest.mark.slow
def test_teacher_assistant_reuses_the_recipe_machinery(tmp_path, data_dir):
    env = dict(os.environ, MMINILM_DATA=str(data_dir), OUTPUT=str(tmp_path / "ta"), EVAL="0", **SHORT,
               ASSISTANT_LAYERS="2", ASSISTANT_HIDDEN="48", ASSISTANT_HEADS="4")
    result = _run("teacher_assistant.sh", env, "--preset", "tiny")
    assert result.returncode == 0, result.stderr[-4000:]
    assistant = json.loads((tmp_path / "ta" / "assistant" / "model" / "config.json").read_text())
    assert assistant["hidden_size"] == 48
    student_run = json.loads((tmp_path / "ta" / "student" / "config.json").read_text())
    assert student_run["teacher"].endswith("assistant/model") and student_run["steps"] == 15
    assert json.loads((tmp_path / "ta" / "assistant" / "config.json").read_text())["steps"] == 15


@pytest.mark.parametrize("env_update,message", [
    ({"CORPUS": ""}, "no corpus: set CORPUS="),
    ({"CORPUS": "/nonexistent/cc100"}, "CORPUS=/nonexistent/cc100 is not a directory"),
    ({"TEACHER": "/nonexistent/teacher"}, "TEACHER=/nonexistent/teacher cannot be used"),
])
def test_missing_inputs_stop_at_once_saying_what_to_set(tmp_path, data_dir, env_update, message):
    env = dict(os.environ, CORPUS=str(data_dir / "cc100_sample"), OUTPUT=str(tmp_path / "x"))
    env.update(env_update)
    result = _run("xlmr_to_small.sh", env)
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "x" / "student").exists()


def test_help_lists_the_knobs_and_unknown_flags_are_refused():
    result = subprocess.run(["bash", str(REPO / "recipes" / "xlmr_to_small.sh"), "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for knob in ("PRESET", "TEACHER", "CORPUS", "STUDENT_LAYERS", "STUDENT_INIT", "METHOD", "NPROC", "EVAL_TASKS"):
        assert knob in result.stdout
    typo = subprocess.run(["bash", str(REPO / "recipes" / "xlmr_to_small.sh"), "--preset", "tiny", "--stesp", "10"],
                          capture_output=True, text=True, timeout=60)
    assert typo.returncode == 2 and "unknown option --stesp" in typo.stderr


@pytest.mark.slow
def test_ablation_smoke_all_variants_one_seed(tmp_path, data_dir):
    env = dict(os.environ, MMINILM_DATA=str(data_dir), OUTPUT=str(tmp_path / "ablation"), **SHORT, SEEDS="1",
               REPEAT="attention:2", ASSISTANT_LAYERS="1", ASSISTANT_HIDDEN="48", ASSISTANT_HEADS="4",
               RELATION_HEADS_V2="8", VARIANTS="minilm attention minilmv2 layerwise logit_kd mlm ta",
               DISTIL_LAYERS="uniform", HIDDEN_WEIGHT="2")  # only the layerwise row may take these
    result = _run("ablation.sh", env)
    assert result.returncode == 0, result.stderr[-4000:]
    table = json.loads((tmp_path / "ablation" / "ablation.json").read_text())
    assert [row["variant"] for row in table["rows"]] == ["minilm", "attention", "minilmv2", "layerwise", "logit_kd",
                                                         "mlm", "ta"]
    for row in table["rows"]:
        assert 0 <= row["average"]["mean"] <= 100
        assert row["seeds"] == (["seed1", "seed2"] if row["variant"] == "attention" else ["seed1"])
        assert row["retention"]["mean"] > 0
        assert 0 <= row["retrieval"]["mean"] <= 100  # the cheap signal, same sentences as the teacher's
    markdown = (tmp_path / "ablation" / "ablation.md").read_text()
    assert "| MiniLM via teacher assistant |" in markdown and "| teacher |" in markdown
    assert (tmp_path / "ablation" / "ablation.png").stat().st_size > 1000
    configs = {row["variant"]: json.loads((tmp_path / "ablation" / "variants" / row["variant"] / "seed1" / "config.json").read_text())
               for row in table["rows"]}
    assert configs["attention"]["relations"] == "attention" and configs["minilmv2"]["relation_heads"] == 8
    assert (configs["layerwise"]["distil_layers"], configs["layerwise"]["hidden_weight"]) == ("uniform", 2.0)
    assert all((c["distil_layers"], c["hidden_weight"]) == ("last", 0.0) for v, c in configs.items() if v != "layerwise")
    assert configs["ta"]["steps"] + json.loads(
        (tmp_path / "ablation" / "variants" / "ta" / "seed1" / "assistant" / "config.json").read_text())["steps"] == 30
    assert len({c["steps"] for v, c in configs.items() if v != "ta"}) == 1  # equal compute for every row
    work = json.loads((tmp_path / "ablation" / "work.json").read_text())  # 8 rows + the ta assistant trained
    assert sum(a["stage"] == "distill" for a in work["attempts"]) == 9 and work["stopped"] == []
