"""An evaluation already on disk is reused only for the same model files and options (eval.previous).

Real fine-tunings of a tiny real model on the real shared data, through each CLI's `main`."""

from __future__ import annotations

import json
import shutil

import torch
from transformers import AutoModelForMaskedLM

from mminilm.training.precision import precision_used
from mminilm.models.student import DISTILLATION_FILE

from test_eval_transfer import tiny_model_dirs  # noqa: F401  (the fixture)


def _xnli_args(model_dir, data_dir):
    return ["--model", model_dir, "--data-dir", data_dir, "--epochs", "1", "--lr", "1e-3", "--device", "cpu",
            "--max-train-examples", "32", "--max-eval-examples", "24", "--languages", "en", "de",
            "--max-length", "48", "--precision", "fp32"]


def _files(task_dir):
    return {p.relative_to(task_dir).as_posix(): p.read_bytes() for p in sorted(task_dir.rglob("*")) if p.is_file()}


def test_xnli_keeps_finished_runs_and_fine_tunes_only_the_missing_seeds(tmp_path, data_dir, tiny_model_dirs, run_cli):
    common = _xnli_args(tiny_model_dirs[0], data_dir)
    out = tmp_path / "grown"
    assert run_cli("eval.xnli", *common, "--output-dir", out).returncode == 0
    grown = run_cli("eval.xnli", *common, "--output-dir", out, "--runs", "2")
    assert grown.returncode == 0 and "keeping the finished runs with seeds [42], fine-tuning seeds [43]" in grown.stderr
    assert run_cli("eval.xnli", *common, "--output-dir", tmp_path / "at-once", "--runs", "2").returncode == 0
    report, at_once = (json.loads((d / "xnli" / "report.json").read_text()) for d in (out, tmp_path / "at-once"))
    # growing a one-run report gives what two runs at once give: the same runs, means and predictions
    assert report["languages"] == at_once["languages"] and report["average_runs"] == at_once["average_runs"]
    assert report["seeds"] == [42, 43] and (out / "xnli" / "train_log.seed43.jsonl").is_file()
    assert report["adamw_kernel"] == "fused"  # CPU weights: what made the numbers is on record
    for lang in ("en", "de"):
        assert ((out / "xnli" / "predictions" / f"{lang}.jsonl").read_text()
                == (tmp_path / "at-once" / "xnli" / "predictions" / f"{lang}.jsonl").read_text())

    before = _files(out / "xnli")
    again = run_cli("eval.xnli", *common, "--output-dir", out, "--runs", "2")
    assert again.returncode == 0 and "already evaluated" in again.stderr
    fewer = run_cli("eval.xnli", *common, "--output-dir", out)
    assert fewer.returncode == 2 and "holds 2 runs" in fewer.stderr and "--runs 2" in fewer.stderr
    changed = run_cli("eval.xnli", *common, "--output-dir", out, "--runs", "2", "--lr", "1e-4")
    assert changed.returncode == 2 and "lr: 0.001 -> 0.0001" in changed.stderr and "--overwrite" in changed.stderr
    assert _files(out / "xnli") == before  # neither the reuse nor the refusals touched a file

    # a report written before fingerprints and --overwrite existed is trusted by the model's path
    saved = json.loads((out / "xnli" / "report.json").read_text())
    del saved["model_files_sha256"], saved["precision_used"], saved["config"]["overwrite"]
    (out / "xnli" / "report.json").write_text(json.dumps(saved))
    assert "already evaluated" in run_cli("eval.xnli", *common, "--output-dir", out, "--runs", "2").stderr

    redone = run_cli("eval.xnli", *common, "--output-dir", out, "--lr", "1e-4", "--overwrite")
    assert redone.returncode == 0
    report = json.loads((out / "xnli" / "report.json").read_text())
    assert report["config"]["lr"] == 1e-4 and "seeds" not in report


def test_a_different_model_saved_at_the_same_path_is_evaluated_again_only_when_asked(tmp_path, data_dir,
                                                                                      tiny_model_dirs, run_cli):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dirs[0], model_dir)
    common = ["--model", model_dir, "--output-dir", tmp_path / "eval", "--data-dir", data_dir, "--languages", "de",
              "--max-sentences", "8", "--device", "cpu", "--precision", "fp32"]
    assert run_cli("eval.retrieval", *common, "--sources", "xnli").returncode == 0
    # another --sources: the finished source is kept, the new one computed
    both = run_cli("eval.retrieval", *common, "--sources", "xnli", "mlqa")
    assert both.returncode == 0 and "already evaluated" in both.stderr
    assert (tmp_path / "eval" / "retrieval-mlqa" / "report.json").is_file()

    model = AutoModelForMaskedLM.from_pretrained(model_dir)
    with torch.no_grad():
        model.roberta.embeddings.word_embeddings.weight[5] += 1.0  # re-trained, saved at the same path
    model.save_pretrained(model_dir)
    refused = run_cli("eval.retrieval", *common, "--sources", "xnli")
    assert refused.returncode == 2 and f"the files of --model {model_dir} differ" in refused.stderr
    assert run_cli("eval.retrieval", *common, "--sources", "xnli", "--overwrite").returncode == 0


def test_mlqa_reuses_its_report_and_refuses_other_options(tmp_path, data_dir, tiny_model_dirs, run_cli):
    common = ["--model", tiny_model_dirs[0], "--output-dir", tmp_path, "--data-dir", data_dir, "--epochs", "1",
              "--device", "cpu", "--max-train-examples", "16", "--max-eval-examples", "4", "--languages", "en",
              "--max-length", "128", "--doc-stride", "48", "--precision", "fp32"]
    assert run_cli("eval.mlqa", *common).returncode == 0
    before = _files(tmp_path / "mlqa")
    again = run_cli("eval.mlqa", *common)
    assert again.returncode == 0 and "already evaluated" in again.stderr
    changed = run_cli("eval.mlqa", *common, "--max-answer-length", "10")
    assert changed.returncode == 2 and "max_answer_length: 30 -> 10" in changed.stderr
    assert _files(tmp_path / "mlqa") == before


def test_the_same_model_files_elsewhere_and_precision_auto_are_matched_by_what_they_are(tmp_path, data_dir,
                                                                                         tiny_model_dirs, run_cli):
    original = tmp_path / "runs" / "model"
    shutil.copytree(tiny_model_dirs[0], original)
    (original / DISTILLATION_FILE).write_text('{"seconds": 1.0}\n')
    common = ["--output-dir", tmp_path / "eval", "--data-dir", data_dir, "--languages", "de", "--sources", "xnli",
              "--max-sentences", "8", "--device", "cpu"]
    assert run_cli("eval.retrieval", "--model", original, *common, "--precision", "fp32").returncode == 0
    report = json.loads((tmp_path / "eval" / "retrieval" / "report.json").read_text())
    assert report["precision_used"] == "fp32" and report["torch_threads"] == torch.get_num_threads()
    assert "adamw_kernel" not in report  # retrieval trains nothing

    # the run dir moved, and a record beside the weights was rewritten: the same model
    moved = tmp_path / "elsewhere" / "model"
    shutil.move(original, moved)
    (moved / DISTILLATION_FILE).write_text('{"seconds": 2.0}\n')
    (moved / "notes.md").write_text("copied here\n")
    again = run_cli("eval.retrieval", "--model", moved, *common, "--precision", "fp32")
    assert again.returncode == 0 and "already evaluated" in again.stderr
    reused = json.loads((tmp_path / "eval" / "retrieval" / "report.json").read_text())
    assert reused["model"] == reused["config"]["model"] == str(moved)  # points where the model is now
    assert reused["languages"] == report["languages"]

    # --precision auto: the same question where it resolves to fp32, another one where it means bf16
    auto = run_cli("eval.retrieval", "--model", moved, *common, "--precision", "auto")
    if precision_used(torch.device("cpu"), "auto") == "fp32":
        assert auto.returncode == 0 and "already evaluated" in auto.stderr
    else:
        assert auto.returncode == 2 and "precision: fp32 -> bf16" in auto.stderr
    bf16 = run_cli("eval.retrieval", "--model", moved, *common, "--precision", "bf16")
    assert bf16.returncode == 2 and "precision: fp32 -> bf16 (--precision bf16 here)" in bf16.stderr

    # a weight file differs: another model, even at the path the report names
    model = AutoModelForMaskedLM.from_pretrained(moved)
    with torch.no_grad():
        model.roberta.embeddings.word_embeddings.weight[5] += 1.0
    model.save_pretrained(moved)
    changed = run_cli("eval.retrieval", "--model", moved, *common, "--precision", "fp32")
    assert changed.returncode == 2 and "differ from those it was made with" in changed.stderr
