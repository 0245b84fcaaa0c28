"""`python -m corpora contamination CORPUS`: does the distillation corpus contain evaluation text?

A corpus that contains XNLI or MLQA text inflates every number in the transfer report. This
checks n-gram overlap (GPT-3's test, default n = 13 words) between each language's corpus file and
that language's evaluation texts: XNLI dev and test premises and hypotheses, MLQA dev contexts and
questions. Words come from sacrebleu's tokenizers, chosen per language: `zh` for Chinese,
`ja-mecab`/`ko-mecab` where MeCab is installed, characters for scripts written without spaces
(Thai, Japanese/Korean without MeCab, Lao, Khmer, Burmese), `intl` elsewhere. Text is lowercased.
A character carries less than a word, so character-segmented text uses n x (characters per word):
x2 for Chinese (`zh` splits Han characters), x4 for the `char` tokenizer (Thai words average ~4-5
characters; with x2, common Thai phrases matched unrelated sentences in the shared corpus).
Evaluation texts shorter than n words cannot share an n-gram; they are counted as unchecked.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_N = 13
CHARACTER_N_FACTOR = {"zh": 2, "char": 4}  # n-gram length multiplier for character-level tokenizers (see above)
EVALUATION_SETS = ("xnli", "mlqa")
CHARACTER_SCRIPTS = {"th", "lo", "km", "my"}  # written without spaces between words
MAX_HITS_LISTED = 20  # corpus lines listed per contaminated evaluation text


@dataclass(frozen=True)
class EvaluationText:
    source: str  # e.g. "xnli/test/de.tsv:17:premise"
    text: str


def word_tokenizer(language: str):
    """(name, callable str -> list[str]) of the sacrebleu tokenizer used for `language`."""
    from sacrebleu.tokenizers.tokenizer_char import TokenizerChar
    from sacrebleu.tokenizers.tokenizer_intl import TokenizerV14International
    from sacrebleu.tokenizers.tokenizer_zh import TokenizerZh

    if language == "zh":
        tokenizer, name = TokenizerZh(), "zh"
    elif language in ("ja", "ko"):
        try:
            if language == "ja":
                from sacrebleu.tokenizers.tokenizer_ja_mecab import TokenizerJaMecab as Mecab
            else:
                from sacrebleu.tokenizers.tokenizer_ko_mecab import TokenizerKoMecab as Mecab
            tokenizer, name = Mecab(), f"{language}-mecab"
        except (ImportError, RuntimeError):
            tokenizer, name = TokenizerChar(), "char"
    elif language in CHARACTER_SCRIPTS:
        tokenizer, name = TokenizerChar(), "char"
    else:
        tokenizer, name = TokenizerV14International(), "intl"
    return name, lambda text: tokenizer(text.lower()).split()


def ngram_size(tokenizer_name: str, n: int) -> int:
    return n * CHARACTER_N_FACTOR.get(tokenizer_name, 1)


def ngrams(words: Sequence[str], n: int) -> Iterable[tuple[str, ...]]:
    return (tuple(words[i: i + n]) for i in range(len(words) - n + 1))


def evaluation_texts(data_dir: Path, language: str, against: Sequence[str],
                     xnli_splits: Sequence[str] = ("dev", "test")) -> list[EvaluationText]:
    """The distinct evaluation texts of one language, each with where it comes from."""
    from eval.data import flatten_squad, load_nli_tsv, load_squad

    texts: list[EvaluationText] = []
    if "xnli" in against:
        for split in xnli_splits:
            path = data_dir / "xnli" / split / f"{language}.tsv"
            if path.is_file():
                examples = load_nli_tsv(path)
                for index, premise, hypothesis in zip(examples.indices, examples.premises, examples.hypotheses):
                    texts.append(EvaluationText(f"xnli/{split}/{language}.tsv:{index}:premise", premise))
                    texts.append(EvaluationText(f"xnli/{split}/{language}.tsv:{index}:hypothesis", hypothesis))
    if "mlqa" in against:
        path = data_dir / "mlqa" / "dev" / f"dev-context-{language}-question-{language}.json"
        if path.is_file():
            for record in flatten_squad(load_squad(path)):  # a context is named by its first question's id
                texts.append(EvaluationText(f"{path.name}:{record['id']}:context", record["context"]))
                texts.append(EvaluationText(f"{path.name}:{record['id']}:question", record["question"]))
    unique: dict[str, EvaluationText] = {}
    for item in texts:  # premises repeat once per hypothesis, contexts once per question: each text once
        if item.text.strip():
            unique.setdefault(item.text, item)
    return list(unique.values())


def check_language(corpus_files: Sequence[Path], language: str, texts: list[EvaluationText], n: int) -> dict[str, Any]:
    """Per-language result: checked/unchecked counts and every contaminated text with the corpus lines that hit it."""
    from .reader import iter_lines

    tokenizer_name, tokenize = word_tokenizer(language)
    size = ngram_size(tokenizer_name, n)
    owners: dict[tuple[str, ...], list[int]] = defaultdict(list)
    grams_per_text: list[int] = []
    for position, item in enumerate(texts):
        grams = set(ngrams(tokenize(item.text), size))
        grams_per_text.append(len(grams))
        for gram in grams:
            owners[gram].append(position)
    hits: dict[int, dict[str, Any]] = {}
    lines_read = 0
    for path in corpus_files:
        for line_number, line in enumerate(iter_lines(path), start=1):
            lines_read += 1
            if not line.strip():
                continue
            matched: dict[int, int] = defaultdict(int)
            for gram in set(ngrams(tokenize(line), size)):
                for position in owners.get(gram, ()):
                    matched[position] += 1
            for position, count in matched.items():
                entry = hits.setdefault(position, {"source": texts[position].source, "text": texts[position].text,
                                                   "ngrams": grams_per_text[position], "matched_ngrams": 0,
                                                   "corpus_lines": []})
                entry["matched_ngrams"] = max(entry["matched_ngrams"], count)
                if len(entry["corpus_lines"]) < MAX_HITS_LISTED:
                    entry["corpus_lines"].append({"file": path.name, "line": line_number, "text": line.strip()[:300]})
    checked = sum(1 for g in grams_per_text if g)
    for entry in hits.values():
        entry["overlap"] = entry["matched_ngrams"] / entry["ngrams"]
    return {"tokenizer": tokenizer_name, "n": size, "evaluation_texts": len(texts), "checked": checked,
            "unchecked_short": len(texts) - checked, "corpus_lines": lines_read, "contaminated": len(hits),
            "examples": sorted(hits.values(), key=lambda e: (-e["overlap"], e["source"]))}


def contamination_report(corpus_dir: str | os.PathLike, languages: Sequence[str] | None, data_dir: str | os.PathLike,
                         against: Sequence[str] = EVALUATION_SETS, n: int = DEFAULT_N) -> dict[str, Any]:
    from .reader import discover_languages

    unknown = sorted(set(against) - set(EVALUATION_SETS))
    if unknown:
        raise ValueError(f"--against {unknown}: expected some of {', '.join(EVALUATION_SETS)}")
    if n < 2:
        raise ValueError(f"--n must be at least 2, got {n}")
    data = Path(data_dir)
    if not (data / "xnli").is_dir() and not (data / "mlqa").is_dir():
        raise FileNotFoundError(f"--data-dir {data} has neither xnli/ nor mlqa/ (the shared data folder)")
    files = discover_languages(corpus_dir, list(languages) if languages else None)
    results = {}
    for language, paths in files.items():
        texts = evaluation_texts(data, language, against)
        if texts:
            results[language] = check_language(paths, language, texts, n)
    return {"corpus": str(corpus_dir), "against": list(against), "n": n, "languages": results,
            "summary": summary_line(results, against, n)}


def summary_line(results: dict[str, dict[str, Any]], against: Sequence[str], n: int) -> str:
    checked = sum(r["checked"] for r in results.values())
    contaminated = sum(r["contaminated"] for r in results.values())
    hit = ", ".join(f"{lang} {r['contaminated']}" for lang, r in results.items() if r["contaminated"]) or "none"
    return (f"Contamination ({n}-word overlap, {'/'.join(against)} vs the corpus, {len(results)} languages): "
            f"{contaminated} of {checked:,} checkable evaluation texts share an n-gram with the corpus ({hit}).")


def format_markdown(report: dict[str, Any], examples_per_language: int = 5) -> str:
    lines = ["# Evaluation text in the corpus", "", report["summary"], "",
             "| language | tokenizer | n | evaluation texts | checked | too short | corpus lines | contaminated |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for lang, r in report["languages"].items():
        lines.append(f"| {lang} | {r['tokenizer']} | {r['n']} | {r['evaluation_texts']:,} | {r['checked']:,} | "
                     f"{r['unchecked_short']:,} | {r['corpus_lines']:,} | {r['contaminated']} |")
    for lang, r in report["languages"].items():
        if not r["examples"]:
            continue
        lines += ["", f"## {lang}: contaminated evaluation texts", ""]
        for example in r["examples"][:examples_per_language]:
            lines.append(f"- `{example['source']}` ({100 * example['overlap']:.0f}% of its n-grams): {example['text'][:160]}")
            for hit in example["corpus_lines"][:3]:
                lines.append(f"  - {hit['file']}:{hit['line']}: {hit['text'][:160]}")
        if len(r["examples"]) > examples_per_language:
            lines.append(f"- ... {len(r['examples']) - examples_per_language} more in contamination.json")
    return "\n".join(lines) + "\n"
