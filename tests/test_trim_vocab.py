"""Vocabulary trimming on real models, tokenizers and corpus text; the output loads with plain transformers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import sentencepiece as spm
import torch
from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer

from mminilm.models.trim_vocab import REPORT_FILE, SPM_FILE_NAME, TrimConfig, heldout_sentences, trim

REPO = Path(__file__).resolve().parents[1]
LANGS = ["de", "sw", "zh"]


@pytest.fixture(scope="module")
def teacher_with_spm(tmp_path_factory, small_teacher_dir, tokenizer_dir) -> Path:
    """The 3-layer XLM-R masked-LM fixture with its real SentencePiece model beside tokenizer.json (as XLM-R ships)."""
    directory = tmp_path_factory.mktemp("teacher_spm")
    shutil.copytree(small_teacher_dir, directory, dirs_exist_ok=True)
    shutil.copyfile(tokenizer_dir / SPM_FILE_NAME, directory / SPM_FILE_NAME)
    return directory


@pytest.fixture(scope="module")
def trimmed_small(tmp_path_factory, teacher_with_spm, cc100_dir, data_dir):
    """That teacher trimmed for three languages."""
    out = tmp_path_factory.mktemp("trim") / "small"
    report = trim(TrimConfig(model=str(teacher_with_spm), corpus=str(cc100_dir), output_dir=str(out),
                             languages=LANGS, coverage=0.99, max_lines=3000, eval_data=str(data_dir)))
    return out, report


def test_trimmed_masked_lm_keeps_its_outputs_on_unchanged_text(trimmed_small, small_teacher_dir, data_dir):
    out, report = trimmed_small
    kept = report["kept_ids"]
    assert report["vocabulary_after"] == len(kept) < report["vocabulary_before"]
    original_tok, trimmed_tok = AutoTokenizer.from_pretrained(small_teacher_dir), AutoTokenizer.from_pretrained(out)
    original = AutoModelForMaskedLM.from_pretrained(small_teacher_dir).eval()
    trimmed = AutoModelForMaskedLM.from_pretrained(out).eval()
    assert trimmed.get_input_embeddings().num_embeddings == len(kept) == len(trimmed_tok)
    assert trimmed.get_output_embeddings().weight.data_ptr() == trimmed.get_input_embeddings().weight.data_ptr()
    assert trimmed_tok.mask_token_id == kept.index(original_tok.mask_token_id)
    new_id = {old: new for new, old in enumerate(kept)}
    compared = 0
    for text in heldout_sentences(data_dir, "de")[:200]:
        old = original_tok(text, return_tensors="pt")
        new = trimmed_tok(text, return_tensors="pt")
        if [new_id.get(i, -1) for i in old["input_ids"][0].tolist()] != new["input_ids"][0].tolist():
            continue
        with torch.no_grad():
            before, after = original(**old).logits[0], trimmed(**new).logits[0]
        torch.testing.assert_close(after, before[:, kept])  # same states, the kept rows of the MLM head
        compared += 1
        if compared == 5:
            break
    assert compared == 5


def test_trimmed_sentencepiece_model_agrees_with_the_fast_tokenizer(trimmed_small, teacher_with_spm, data_dir):
    out, report = trimmed_small
    processor = spm.SentencePieceProcessor(model_file=str(out / SPM_FILE_NAME))
    original = spm.SentencePieceProcessor(model_file=str(teacher_with_spm / SPM_FILE_NAME))
    assert processor.get_piece_size() < original.get_piece_size() and processor.get_piece_size() == report["sentencepiece_pieces_after"]
    fast = AutoTokenizer.from_pretrained(out)
    checked = 0
    for text in heldout_sentences(data_dir, "sw")[:300]:
        pieces = processor.encode(text, out_type=str)
        if "<unk>" in fast.convert_ids_to_tokens(fast(text, add_special_tokens=False)["input_ids"]):
            continue  # XLM-R maps SentencePiece's unknown id specially; compare pieces elsewhere
        assert pieces == fast.convert_ids_to_tokens(fast(text, add_special_tokens=False)["input_ids"]), text
        checked += 1
    assert checked > 200


def test_report_explains_every_changed_sentence(trimmed_small):
    out, report = trimmed_small
    saved = json.loads((out / REPORT_FILE).read_text())
    assert saved["kept_ids"] == report["kept_ids"] and (out / "trim_report.md").is_file()
    for lang in LANGS:
        entry = report["per_language"][lang]
        held = entry["heldout"]
        assert held["changed_otherwise"] == 0  # a segmentation changes only through a dropped piece
        assert held["identical"] + held["changed_by_dropped_pieces"] == held["sentences"] > 100
        assert held["new_unk_tokens"] == 0  # single-character pieces are kept
        assert entry["corpus_coverage"] >= 99.0


@pytest.mark.slow  # scans the corpus with the real 250k-piece vocabulary: an integration test
def test_real_teacher_trims_below_half_and_loads_with_plain_transformers(tmp_path, e5_dir, cc100_dir, data_dir):
    out = tmp_path / "e5"
    report = trim(TrimConfig(model=str(e5_dir), corpus=str(cc100_dir), output_dir=str(out), languages=["de", "hi"],
                             max_pieces=30000, max_lines=10000, eval_data=str(data_dir)))
    assert report["vocabulary_after"] == 30000 and report["embedding_parameters_after"] == 30000 * 384
    assert report["parameters_before"] - report["parameters_after"] == (250037 - 30000) * 384  # rows only
    tokenizer, model = AutoTokenizer.from_pretrained(out), AutoModel.from_pretrained(out).eval()
    original_tok, original = AutoTokenizer.from_pretrained(e5_dir), AutoModel.from_pretrained(e5_dir).eval()
    unchanged = 0
    for text in heldout_sentences(data_dir, "de")[:100]:
        new, old = tokenizer(text, return_tensors="pt"), original_tok(text, return_tensors="pt")
        if [report["kept_ids"][i] for i in new["input_ids"][0].tolist()] != old["input_ids"][0].tolist():
            continue
        with torch.no_grad():
            torch.testing.assert_close(model(**new).last_hidden_state, original(**old).last_hidden_state)
        unchanged += 1
    assert unchanged >= 10
    assert report["per_language"]["hi"]["heldout"]["changed_otherwise"] == 0
    assert json.loads((out / "conversion.json").read_text())["weight_bits"] == 4  # provenance travels along


def test_bad_inputs_exit_2_with_one_line(tmp_path, small_teacher_dir, cc100_dir, run_cli):
    def run(*args):
        return run_cli("mminilm.models.trim_vocab", *args)

    missing = run("--model", str(tmp_path / "nope"), "--corpus", str(cc100_dir), "--output-dir", str(tmp_path / "o"))
    assert missing.returncode == 2 and "config.json" in missing.stderr and "Traceback" not in missing.stderr
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("a previous result")
    busy = run("--model", str(small_teacher_dir), "--corpus", str(cc100_dir), "--languages", "de",
               "--output-dir", str(tmp_path / "busy"))
    assert busy.returncode == 2 and "--overwrite" in busy.stderr
    assert (tmp_path / "busy" / "keep.txt").read_text() == "a previous result"
    small = run("--model", str(small_teacher_dir), "--corpus", str(cc100_dir), "--languages", "de", "--max-pieces",
                "3", "--output-dir", str(tmp_path / "small"))
    assert small.returncode == 2 and "--max-pieces 3" in small.stderr and len(small.stderr.strip().splitlines()) == 1


def test_reuse_keeps_an_identical_trim_and_refuses_another(tmp_path, small_teacher_dir, cc100_dir):
    settings = dict(model=str(small_teacher_dir), corpus=str(cc100_dir), output_dir=str(tmp_path / "t"),
                    languages=["de"], max_lines=500, eval_data=None, reuse=True)
    first = trim(TrimConfig(**settings))
    stamp = (tmp_path / "t" / "model.safetensors").stat().st_mtime_ns
    assert trim(TrimConfig(**settings))["kept_ids"] == first["kept_ids"]
    assert (tmp_path / "t" / "model.safetensors").stat().st_mtime_ns == stamp  # nothing was rewritten
    with pytest.raises(FileExistsError, match="coverage"):
        trim(TrimConfig(**{**settings, "coverage": 0.5}))
