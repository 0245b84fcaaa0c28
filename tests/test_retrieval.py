"""Cross-lingual retrieval (eval.retrieval) on the real teacher and real aligned XNLI/MLQA sentences."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoConfig, AutoModel

from eval.report import ReportError, write_report
from eval.retrieval import (RetrievalConfig, embed, mlqa_questions, nearest, parse_layers, rescore, run_retrieval,
                            top1_scores, xnli_premises)
from eval.data import load_nli_tsv
from conftest import small_xlmr_config


def test_xnli_premises_are_distinct_and_aligned_by_row(data_dir):
    pairs = xnli_premises(data_dir, "de")
    english = load_nli_tsv(data_dir / "xnli" / "test" / "en.tsv")
    german = load_nli_tsv(data_dir / "xnli" / "test" / "de.tsv")
    assert 1000 < len(pairs) < len(english) / 2  # every premise has three hypotheses
    assert len(set(pairs.english)) == len(pairs) and len(set(pairs.other)) == len(pairs)
    for row, en_text, de_text in zip(pairs.ids, pairs.english, pairs.other):
        assert english.premises[row] == en_text and german.premises[row] == de_text
    assert pairs.ids == sorted(pairs.ids)


def test_mlqa_questions_pair_each_translation_with_its_english_original(data_dir):
    pairs = mlqa_questions(data_dir, "de")
    assert 400 < len(pairs) <= 512  # dev-context-de-question-de has 512 questions
    index = dict(zip(pairs.ids, zip(pairs.english, pairs.other)))
    english_file = json.loads((data_dir / "mlqa/dev/dev-context-en-question-en.json").read_text(encoding="utf-8"))
    qid = pairs.ids[0]
    originals = [qa["question"].strip() for a in english_file["data"] for p in a["paragraphs"] for qa in p["qas"]
                 if qa["id"] == qid]
    assert originals == [index[qid][0]]


def test_top1_counts_only_the_translation_itself():
    torch.manual_seed(0)
    english = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    assert top1_scores(english, english.clone()) == {"accuracy": 100.0, "en_to_xx": 100.0, "xx_to_en": 100.0}
    swapped = english[[1, 0, 2, 3, 4, 5]]  # the first two "translations" exchanged
    assert nearest(english, swapped)[:2] == [1, 0]
    assert top1_scores(english, swapped)["en_to_xx"] == pytest.approx(100 * 4 / 6)


def test_layer_option_is_checked_against_the_model():
    assert parse_layers("-1", 6) == [6] and parse_layers("0", 6) == [0] and parse_layers("all", 2) == [0, 1, 2]
    with pytest.raises(ValueError, match="outside"):
        parse_layers("7", 6)
    with pytest.raises(ValueError, match="integer"):
        parse_layers("last", 6)


def test_embedding_a_masked_lm_student_runs_its_encoder_only(tokenizer):
    """The probe embeds the student being distilled, a masked-LM model: its vocabulary-wide head
    must not run (it cost ~25 s of a ~30 s probe on the trimmed e5 vocabulary), and the vectors
    must be those of the encoder alone."""
    from transformers import XLMRobertaForMaskedLM

    torch.manual_seed(0)
    student = XLMRobertaForMaskedLM(small_xlmr_config(len(tokenizer)))
    head_calls = []
    student.lm_head.register_forward_hook(lambda *_: head_calls.append(1))
    sentences = ["A man is playing a guitar.", "Ein Mann spielt Gitarre.", "Un homme joue de la guitare ici."]
    vectors = embed(student, tokenizer, sentences, [-1, 0], torch.device("cpu"), precision="fp32")
    assert head_calls == []
    encoder_only = embed(student.roberta, tokenizer, sentences, [-1, 0], torch.device("cpu"), precision="fp32")
    assert vectors.shape == (2, 3, 64) and torch.equal(vectors, encoder_only)
    assert student.roberta.training  # the encoder it switched to eval mode is back in training mode


@pytest.mark.slow  # the real 12-layer teacher embeds 2 x 15 languages: an integration test
def test_teacher_retrieves_translations_and_a_random_encoder_does_not(tmp_path, e5_dir, data_dir):
    config = RetrievalConfig(model=str(e5_dir), output_dir=str(tmp_path / "teacher"), languages=["en", "de", "sw"],
                             max_sentences=40, data_dir=str(data_dir), layer="all")
    reports = run_retrieval(config)
    xnli = reports["retrieval"]
    assert set(xnli["languages"]) == {"de", "sw"} and set(reports["retrieval-mlqa"]["languages"]) == {"de"}
    assert xnli["languages"]["de"]["accuracy"] >= 90 and xnli["languages"]["de"]["n"] == 40
    assert xnli["layer"] == 12 and set(xnli["by_layer"]) == {str(i) for i in range(13)}
    assert xnli["by_layer"]["12"]["languages"]["de"] == xnli["languages"]["de"]["accuracy"]
    # the numbers come back from the prediction files alone
    for task, report in reports.items():
        assert rescore(tmp_path / "teacher" / task) == pytest.approx({k: v["accuracy"] for k, v in report["languages"].items()})

    random_dir = tmp_path / "random"  # a 2-layer student-shaped encoder: its last layer is layer 2, the teacher's 12
    AutoModel.from_config(AutoConfig.from_pretrained(e5_dir, num_hidden_layers=2)).save_pretrained(random_dir)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (e5_dir / name).is_file():
            (random_dir / name).write_bytes((e5_dir / name).read_bytes())
    random_report = run_retrieval(RetrievalConfig(model=str(random_dir), output_dir=str(tmp_path / "random_out"),
                                                  languages=["de"], sources=["xnli"], max_sentences=40,
                                                  data_dir=str(data_dir)))
    assert random_report["retrieval"]["languages"]["de"]["accuracy"] < 50

    # the report puts it next to the teacher, and refuses different sentence sets
    write_report(tmp_path / "random_out", tmp_path / "teacher", measure_speed=False)
    text = (tmp_path / "random_out" / "report.md").read_text()
    assert "retrieval, XNLI test premises" in text and (tmp_path / "random_out" / "retrieval.png").is_file()
    assert "layer 2 of 2 (student), 12 of 12 (teacher)" in text
    run_retrieval(RetrievalConfig(model=str(random_dir), output_dir=str(tmp_path / "fewer"), languages=["de"],
                                  sources=["xnli"], max_sentences=30, data_dir=str(data_dir)))
    with pytest.raises(ReportError, match="not the same ones"):
        write_report(tmp_path / "fewer", tmp_path / "teacher", measure_speed=False)


@pytest.mark.parametrize("args, message", [
    (["--layer", "first"], "--layer must be an integer"),
    (["--sources", "tatoeba"], "invalid choice"),
])
def test_bad_options_exit_2_with_one_line(tmp_path, e5_dir, data_dir, args, message, run_cli):
    result = run_cli("eval.retrieval", "--model", e5_dir, "--output-dir", tmp_path, "--data-dir", data_dir,
                     "--max-sentences", "5", *args)
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
