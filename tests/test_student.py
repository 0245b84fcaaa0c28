"""Students: built from a teacher, saved as plain transformers dirs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from transformers import XLMRobertaForMaskedLM

from conftest import small_xlmr_config
from mminilm.models.teacher import load_teacher
from mminilm.models.student import StudentConfig, build_student, save_student


@pytest.fixture
def teacher_dir(tmp_path, tokenizer):
    torch.manual_seed(0)
    teacher = XLMRobertaForMaskedLM(small_xlmr_config(len(tokenizer), hidden_size=64, num_heads=4, num_layers=4))
    teacher.save_pretrained(tmp_path / "teacher")
    tokenizer.save_pretrained(tmp_path / "teacher")
    return tmp_path / "teacher"


def test_student_keeps_vocabulary_and_positions_and_loads_with_plain_automodel(tmp_path, teacher_dir):
    teacher, tokenizer = load_teacher(str(teacher_dir))
    student = build_student(teacher, StudentConfig(num_layers=2, hidden_size=32, num_heads=4), seed=0)
    for key in ("vocab_size", "max_position_embeddings", "pad_token_id", "type_vocab_size", "layer_norm_eps"):
        assert getattr(student.config, key) == getattr(teacher.config, key)
    assert (student.config.num_hidden_layers, student.config.hidden_size, student.config.intermediate_size) == (2, 32, 128)
    out = save_student(student, tokenizer, tmp_path / "student")
    assert not list(tmp_path.glob(".student.tmp-*"))
    batch = tokenizer(["Ein kleiner Test.", "A small test of the student."], padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = student.eval().roberta(**batch).last_hidden_state
    torch.save(dict(batch), tmp_path / "batch.pt")
    # A fresh interpreter with nothing of this project importable: what a user who ships the dir sees.
    script = (
        "import sys, json, torch\n"
        "from transformers import AutoModel, AutoTokenizer\n"
        f"model = AutoModel.from_pretrained({str(out)!r}).eval()\n"
        f"tok = AutoTokenizer.from_pretrained({str(out)!r})\n"
        "assert not any(m.startswith(('mminilm', 'corpora')) for m in sys.modules)\n"
        f"batch = torch.load({str(tmp_path / 'batch.pt')!r})\n"
        "ids = tok(['Ein kleiner Test.', 'A small test of the student.'], padding=True, return_tensors='pt')['input_ids']\n"
        "assert torch.equal(ids, batch['input_ids'])\n"
        "with torch.no_grad(): hidden = model(**batch).last_hidden_state\n"
        f"torch.save(hidden, {str(tmp_path / 'hidden.pt')!r})\n"
        "print(json.dumps({'class': type(model).__name__, 'vocab': len(tok)}))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout.strip().splitlines()[-1])
    assert info == {"class": "XLMRobertaModel", "vocab": len(tokenizer)}
    torch.testing.assert_close(torch.load(tmp_path / "hidden.pt"), expected, rtol=1e-5, atol=1e-5)


def test_init_from_every_kth_teacher_layer(teacher_dir):
    teacher, _ = load_teacher(str(teacher_dir), masked_lm=True)
    student = build_student(teacher, StudentConfig(num_layers=2, hidden_size=64, num_heads=4, init="teacher"))
    for student_index, teacher_index in ((0, 1), (1, 3)):
        s = student.roberta.encoder.layer[student_index].state_dict()
        t = teacher.roberta.encoder.layer[teacher_index].state_dict()
        assert all(torch.equal(s[k], t[k]) for k in t)
    assert torch.equal(student.roberta.embeddings.word_embeddings.weight, teacher.roberta.embeddings.word_embeddings.weight)
    assert torch.equal(student.lm_head.dense.weight, teacher.lm_head.dense.weight)
    with pytest.raises(ValueError, match="student init .teacher. needs the student.s hidden_size"):
        build_student(teacher, StudentConfig(num_layers=2, hidden_size=32, num_heads=4, init="teacher"))


def test_bad_student_shapes_and_teacher_paths(tmp_path, teacher_dir):
    teacher, _ = load_teacher(str(teacher_dir))
    with pytest.raises(ValueError, match="not divisible by num_heads 5"):
        build_student(teacher, StudentConfig(num_layers=2, hidden_size=32, num_heads=5))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="neither a transformers model"):
        load_teacher(str(tmp_path / "empty"))


def test_teacher_lookup_cli_prints_a_local_dir_and_refuses_a_missing_path(teacher_dir, tmp_path, run_cli):
    found = run_cli("mminilm.models.__main__", teacher_dir)
    assert found.returncode == 0 and found.stdout.strip() == str(teacher_dir)
    missing = run_cli("mminilm.models.__main__", tmp_path / "nope")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "does not exist" in missing.stderr
    empty = run_cli("mminilm.models.__main__", tmp_path)  # exists, but holds no model
    assert empty.returncode == 2 and "neither a transformers model" in empty.stderr
