"""Local evaluation data: XNLI / MNLI TSVs and SQuAD-format QA files, loaded through `datasets`.

Accepted NLI formats (auto-detected from the first line):
- XTREME per-language TSV: no header, `premise<TAB>hypothesis<TAB>label`.
- XNLI-1.0 `xnli.dev.tsv` / `xnli.test.tsv`: header with `language`, `gold_label`, `sentence1`,
  `sentence2` (all languages in one file; filtered by `language`).
- GLUE MNLI `train.tsv` / `dev_matched.tsv`: header with `sentence1`, `sentence2`, `gold_label`.
- SICK (`SICK.txt`): header with `sentence_A`, `sentence_B`, `entailment_label` (upper case),
  CRLF line endings.
Quoting is off (`quoting=3`): XNLI text contains unbalanced quotes that would otherwise merge rows.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

NLI_LABELS = ("entailment", "neutral", "contradiction")
XNLI_DEV_SPLIT = 1245  # xnli-dev-split protocol: train on English rows [0, 1245), test every language on [1245, 2490)


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    value = explicit or os.environ.get("MMINILM_DATA")
    if not value:
        raise FileNotFoundError("no evaluation data: pass --data-dir or set MMINILM_DATA (the shared data folder)")
    root = Path(value)
    if not root.is_dir():
        raise FileNotFoundError(f"data dir {root} does not exist")
    return root


def require_model_dir(value: str | os.PathLike) -> Path:
    """`--model` as a Path, or a clear error before any data is read when it is not a transformers model dir."""
    model_dir = Path(value)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"--model {model_dir} is not a transformers model dir (no config.json)")
    return model_dir


@dataclass
class NliExamples:
    """Premise/hypothesis/label columns plus each row's index in its source file."""

    premises: list[str]
    hypotheses: list[str]
    labels: list[int]
    indices: list[int]

    def __len__(self) -> int:
        return len(self.labels)

    def concat(self, other: "NliExamples") -> "NliExamples":
        """Both sets in order (indices stay those of each source file)."""
        return NliExamples(self.premises + other.premises, self.hypotheses + other.hypotheses,
                           self.labels + other.labels, self.indices + other.indices)

    def select(self, start: int, stop: int | None = None) -> "NliExamples":
        part = slice(start, stop)
        return NliExamples(self.premises[part], self.hypotheses[part], self.labels[part], self.indices[part])


def _label_id(value: Any, path: Path, row: int) -> int:
    text = str(value).strip().lower()
    if text == "contradictory":  # XTREME spelling
        text = "contradiction"
    if text not in NLI_LABELS:
        raise ValueError(f"{path} row {row}: label {value!r} is not one of {NLI_LABELS}")
    return NLI_LABELS.index(text)


def load_nli_tsv(path: str | os.PathLike, language: str | None = None) -> NliExamples:
    """Read one NLI TSV in any of the accepted formats (see module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"NLI file {path} does not exist")
    with open(path, encoding="utf-8") as handle:
        first = handle.readline().rstrip("\n").split("\t")
    has_header = bool({"sentence1", "premise", "sentence_A"} & set(first))
    if not has_header and len(first) != 3:
        raise ValueError(f"{path}: expected 3 tab-separated columns (premise, hypothesis, label) or a header with "
                         f"sentence1/sentence2/gold_label, got {len(first)} columns in the first line")
    table = datasets.load_dataset(
        "csv", data_files=str(path), delimiter="\t", quoting=csv.QUOTE_NONE, split="train",
        column_names=None if has_header else ["premise", "hypothesis", "label"], keep_default_na=False,
    )
    columns = table.column_names
    premise = next((c for c in ("sentence1", "sentence_A") if c in columns), "premise")
    hypothesis = next((c for c in ("sentence2", "sentence_B") if c in columns), "hypothesis")
    label = next((c for c in ("gold_label", "entailment_label") if c in columns), "label")
    for needed in (premise, hypothesis, label):
        if needed not in columns:
            raise ValueError(f"{path}: no {needed!r} column (columns: {columns})")
    # Whole columns in one Arrow call: indexing a `datasets` column row by row costs ~40 us a row,
    # which made reading the 15 XNLI test files take most of a tiny evaluation's minute.
    data = table.to_dict()
    languages = data["language"] if "language" in columns else None
    rows = range(len(table))
    if languages is not None and language is not None:
        rows = [i for i in rows if languages[i] == language]
        if not rows:
            raise ValueError(f"{path}: no rows for language {language!r}")
    premises, hypotheses, labels = data[premise], data[hypothesis], data[label]
    return NliExamples(
        premises=[str(premises[i]) for i in rows],
        hypotheses=[str(hypotheses[i]) for i in rows],
        labels=[_label_id(labels[i], path, i) for i in rows],
        indices=list(rows),
    )


def load_squad(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The `data` list of a SQuAD v1.1-format JSON file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SQuAD-format file {path} does not exist")
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); is the file truncated?") from None
    if not isinstance(content, dict) or "data" not in content:
        raise ValueError(f"{path} is not SQuAD format: expected a JSON object with a 'data' list")
    return content["data"]


def flatten_squad(data: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per question: id, question, context, answers (texts + character starts)."""
    records = []
    for article in data:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                records.append({
                    "id": qa["id"], "question": qa["question"], "context": paragraph["context"],
                    "answers": {"text": [a["text"] for a in qa["answers"]],
                                "answer_start": [a["answer_start"] for a in qa["answers"]]},
                })
    return records
