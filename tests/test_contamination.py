"""`python -m corpora contamination`: planted evaluation text is found; the shared (cleaned) corpus has next to none."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from corpora.contamination import contamination_report, evaluation_texts, word_tokenizer
from eval.data import load_nli_tsv

REPO = Path(__file__).resolve().parents[1]


def _long_premise(data_dir: Path, language: str, min_chars: int) -> tuple[int, str]:
    examples = load_nli_tsv(data_dir / "xnli" / "test" / f"{language}.tsv")
    return next((i, p) for i, p in zip(examples.indices, examples.premises) if len(p) > min_chars)


def test_planted_evaluation_text_is_found_with_its_corpus_line(tmp_path, data_dir, cc100_dir):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    planted = {}
    for language, min_chars in (("de", 150), ("th", 150), ("zh", 60)):
        clean = (cc100_dir / f"{language}.txt").read_text(encoding="utf-8").splitlines()[:300]
        row, premise = _long_premise(data_dir, language, min_chars)
        lines = clean[:150] + [f"Vorwort: {premise} (Quelle unbekannt)"] + clean[150:]
        (corpus / f"{language}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        planted[language] = (row, 151)
    report = contamination_report(corpus, ["de", "th", "zh"], data_dir)
    for language, (row, line) in planted.items():
        result = report["languages"][language]
        sources = {e["source"]: e for e in result["examples"]}
        assert f"xnli/test/{language}.tsv:{row}:premise" in sources, (language, list(sources)[:5])
        hit = sources[f"xnli/test/{language}.tsv:{row}:premise"]
        assert hit["overlap"] == 1.0 and {"file": f"{language}.txt", "line": line} == {
            k: hit["corpus_lines"][0][k] for k in ("file", "line")}
    assert report["summary"].startswith("Contamination (13-word overlap")


def test_language_appropriate_word_segmentation():
    assert word_tokenizer("zh")[0] == "zh" and word_tokenizer("th")[0] == "char" and word_tokenizer("de")[0] == "intl"
    assert word_tokenizer("ja")[0] in ("ja-mecab", "char")
    name, tokenize = word_tokenizer("zh")
    assert tokenize("我们明天出发。") == ["我", "们", "明", "天", "出", "发", "。"]


def test_evaluation_texts_are_distinct_and_named(data_dir):
    texts = evaluation_texts(data_dir, "de", ["xnli", "mlqa"])
    assert len({t.text for t in texts}) == len(texts)
    assert any(t.source.startswith("xnli/dev/de.tsv:") for t in texts)
    assert any(t.source.startswith("dev-context-de-question-de.json:") and t.source.endswith(":context") for t in texts)


def test_shared_corpus_was_cleaned(data_dir, cc100_dir):
    report = contamination_report(cc100_dir, ["de", "sw", "th"], data_dir)
    assert all(r["checked"] > 2000 for r in report["languages"].values())
    assert sum(r["contaminated"] for r in report["languages"].values()) == 0, report["summary"]


@pytest.mark.slow
def test_shared_corpus_has_next_to_no_evaluation_text_in_any_xnli_language(tmp_path, data_dir, cc100_dir):
    result = subprocess.run([sys.executable, "-m", "corpora", "contamination", str(cc100_dir), "--data-dir",
                             str(data_dir), "--languages", *"ar bg de el en es fr hi ru sw th tr ur vi zh".split(),
                             "--output-dir", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "contamination.json").read_text())
    checked = sum(r["checked"] for r in report["languages"].values())
    contaminated = sum(r["contaminated"] for r in report["languages"].values())
    assert checked > 50000 and contaminated <= checked / 5000  # "none or near none"
    assert (tmp_path / "contamination.md").read_text().startswith("# Evaluation text in the corpus")


def test_missing_data_is_a_one_line_error(tmp_path, cc100_dir, run_cli):
    result = run_cli("corpora.__main__", "contamination", cc100_dir, "--data-dir", tmp_path, "--languages", "de")
    assert result.returncode == 2 and "--data-dir" in result.stderr and len(result.stderr.strip().splitlines()) == 1
