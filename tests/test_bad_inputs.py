"""Bad input gets exit code 2 and one line naming the input and what was expected — no traceback.

The CLIs are called in-process through their `main(argv)`: the process itself is not the point.
"""

from __future__ import annotations

import json
import os
import shutil
import stat

import pytest

from transformers import XLMRobertaForMaskedLM

from conftest import small_xlmr_config
from eval import mlqa as mlqa_cli
from eval import report as report_cli
from eval import xnli as xnli_cli
from mminilm import distill

LANGS = ["sw", "yo"]


def _distill_args(teacher, corpus, out, *extra):
    return ["--teacher", str(teacher), "--corpus", str(corpus), "--languages", *LANGS, "--output-dir", str(out),
            "--student-layers", "1", "--student-hidden", "32", "--student-heads", "4", "--max-length", "32",
            "--batch-size", "2", "--steps", "2", "--device", "cpu", "--no-tensorboard",
            "--cache-dir", str(out.parent / "cache"), *extra]


def _one_line_error(capsys, code: int, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert "Traceback" not in err and len(errors) == 1 and err.splitlines()[-1] == errors[0], err
    for needle in needles:
        assert needle in errors[0], (needle, err)
    return errors[0]


def test_truncated_safetensors(tmp_path, small_teacher_dir, cc100_dir, capsys):
    broken = tmp_path / "teacher"
    shutil.copytree(small_teacher_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    code = distill.main(_distill_args(broken, cc100_dir, tmp_path / "out"))
    _one_line_error(capsys, code, str(broken), "cannot be loaded")


def test_tokenizer_larger_than_the_embedding_table(tmp_path, tokenizer, cc100_dir, capsys):
    teacher = tmp_path / "teacher"
    XLMRobertaForMaskedLM(small_xlmr_config(len(tokenizer) - 100, hidden_size=32, num_heads=4)).save_pretrained(teacher)
    tokenizer.save_pretrained(teacher)
    code = distill.main(_distill_args(teacher, cc100_dir, tmp_path / "out"))
    _one_line_error(capsys, code, f"tokenizer has {len(tokenizer)} ids", f"only {len(tokenizer) - 100} rows")


@pytest.mark.parametrize("extra, needle", [
    (["--teacher-layer", "7"], "teacher_layer=7 is out of range for a 3-layer teacher"),
    (["--student-layer", "-3"], "student_layer=-3 is out of range for a 1-layer student"),
    (["--max-length", "600"], "--max-length 600 exceeds the teacher's 512 positions"),
])
def test_out_of_range_layers_and_lengths(tmp_path, small_teacher_dir, cc100_dir, capsys, extra, needle):
    args = _distill_args(small_teacher_dir, cc100_dir, tmp_path / "out")
    args[args.index("--max-length") + 1] = "32"
    code = distill.main(args + extra)
    _one_line_error(capsys, code, needle)


def test_yaml_numbers_and_lists(tmp_path, small_teacher_dir, cc100_dir, capsys):
    from mminilm.cli import parse_config
    from mminilm.training.config import TrainConfig

    good = tmp_path / "good.yaml"
    good.write_text("lr: 1e-3\nsteps: 1e4\nlanguages: [en, de]\n")
    config = parse_config(["--config", str(good)], TrainConfig)
    assert (config.lr, config.steps, config.languages) == (1e-3, 10000, ["en", "de"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("languages: en\n")
    with pytest.raises(SystemExit) as exit_info:
        parse_config(["--config", str(bad)], TrainConfig)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "languages: expected a list" in err and "'en'" in err


def test_four_column_nli_tsv(tmp_path, small_teacher_dir, capsys):
    train = tmp_path / "train.tsv"
    train.write_text("a\tb\tentailment\textra\n", encoding="utf-8")
    code = xnli_cli.main(["--model", str(small_teacher_dir), "--output-dir", str(tmp_path / "o"),
                          "--train-file", str(train), "--test-dir", str(tmp_path)])
    _one_line_error(capsys, code, str(train), "expected 3 tab-separated columns")


def test_truncated_mlqa_json(tmp_path, small_teacher_dir, data_dir, capsys):
    mlqa = tmp_path / "mlqa"
    mlqa.mkdir()
    source = (data_dir / "mlqa" / "dev" / "dev-context-en-question-en.json").read_text(encoding="utf-8")
    (mlqa / "dev-context-en-question-en.json").write_text(source[: len(source) // 2], encoding="utf-8")
    code = mlqa_cli.main(["--model", str(small_teacher_dir), "--output-dir", str(tmp_path / "o"), "--languages", "en",
                          "--mlqa-dir", str(mlqa), "--data-dir", str(data_dir)])
    _one_line_error(capsys, code, "dev-context-en-question-en.json is not valid JSON", "truncated")


def _fake_eval(out, task, indices, protocol="offline", model="m"):
    (out / task / "predictions").mkdir(parents=True)
    (out / task / "predictions" / "en.jsonl").write_text(
        "".join(json.dumps({"index": i, "prediction": "neutral"}) + "\n" for i in indices))
    report = {"task": task, "model": model, "protocol": protocol,
              "languages": {"en": {"accuracy": 50.0, "n": len(indices)}}}
    (out / task / "report.json").write_text(json.dumps(report))


def test_report_refuses_different_examples_and_missing_teachers(tmp_path, capsys):
    student, teacher = tmp_path / "student", tmp_path / "teacher"
    _fake_eval(student, "xnli", range(16))
    _fake_eval(teacher, "xnli", range(48))
    code = report_cli.main([str(student), "--teacher", str(teacher), "--no-speed"])
    _one_line_error(capsys, code, "student was scored on 16 examples and the teacher on 48")
    code = report_cli.main([str(student), "--teacher", str(tmp_path / "typo"), "--no-speed"])
    _one_line_error(capsys, code, "typo has no xnli/report.json")
    shutil.rmtree(teacher)
    _fake_eval(teacher, "xnli", range(16), protocol="xnli-dev-split")
    code = report_cli.main([str(student), "--teacher", str(teacher), "--no-speed"])
    _one_line_error(capsys, code, "protocol 'offline'", "'xnli-dev-split'")
    (teacher / "xnli" / "report.json").write_text("{\"task\": ")
    code = report_cli.main([str(student), "--teacher", str(teacher), "--no-speed"])
    _one_line_error(capsys, code, "is not a report written by eval.xnli")


def test_saved_models_follow_the_umask(tmp_path, tokenizer):
    from mminilm.models.student import save_student

    previous = os.umask(0o022)
    try:
        model = XLMRobertaForMaskedLM(small_xlmr_config(len(tokenizer), hidden_size=32, num_heads=4))
        directory = save_student(model, tokenizer, tmp_path / "model")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o755
    assert {stat.S_IMODE(p.stat().st_mode) for p in directory.iterdir()} == {0o644}
    assert XLMRobertaForMaskedLM.from_pretrained(directory).config.hidden_size == 32


def test_help_shows_defaults_and_never_none(capsys):
    for main in (distill.main, xnli_cli.main, mlqa_cli.main):
        with pytest.raises(SystemExit):
            main(["--help"])
        text = capsys.readouterr().out
        assert "(default: None)" not in text
    with pytest.raises(SystemExit):
        xnli_cli.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for shown in ("fine-tuning epochs (default: 2.0)", "(default: 2e-05)", "(default: 128)", "(default: 32)"):
        assert shown in text, shown
