"""`python -m eval.mlqa`: zero-shot cross-lingual extractive QA — fine-tune on English, test on MLQA.

Training data: SQuAD v1.1-format English files (`--train-files`; offline default: the shared
`qa_train_en/` TyDiQA-GoldP-en train + XQuAD-en). Test: MLQA `dev-context-{c}-question-{q}.json`
(`--mlqa-dir`; offline default: the shared `mlqa/dev/`), XLT pairs (c = q) for en es de ar hi vi
zh, and with `--gxlt` the full 7×7 matrix. Features are the standard sliding windows (max length
384, stride 128) and answers are decoded from the n-best start/end logits (max 30 tokens), then
scored exactly like mlqa_evaluation_v1.py.
"""

from __future__ import annotations

import json
import sys
import time
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForQuestionAnswering, AutoTokenizer

from mminilm.training.atomic import atomic_write_file
from mminilm.cli import parse_config
from mminilm.training.precision import precision_used, resolve_device
from mminilm.models.teacher import load_pretrained

from mminilm.languages import MLQA_LANGUAGES

from .data import data_root, flatten_squad, load_squad, require_model_dir
from .config import MlqaConfig
from .finetune import batched_forward, finetune, seed_everything
from .mlqa_scoring import evaluate
from .previous import computed_with, model_fingerprint, previous_report


def clip_questions(tokenizer, records: list[dict[str, Any]], max_query_length: int) -> list[str]:
    """Questions cut to `max_query_length` tokens (SQuAD's max_query_length), so a long question
    can never leave a window too short for its context and stride."""
    questions = [r["question"].lstrip() for r in records]
    encoded = tokenizer(questions, add_special_tokens=False)["input_ids"]
    return [q if len(ids) <= max_query_length else tokenizer.decode(ids[:max_query_length])
            for q, ids in zip(questions, encoded)]


def check_window(max_length: int, stride: int, max_query_length: int) -> None:
    room = max_length - max_query_length - 4  # <s> q </s></s> c </s>
    if room <= 0 or stride >= room:
        raise ValueError(f"--doc-stride {stride} must be smaller than the context room of a window: --max-length "
                         f"{max_length} - --max-query-length {max_query_length} - 4 special tokens = {room}")


def train_features(tokenizer, records: list[dict[str, Any]], max_length: int, stride: int,
                   max_query_length: int = 64) -> dict[str, torch.Tensor]:
    """Sliding windows over each context; windows without the answer point at <s> (index 0)."""
    check_window(max_length, stride, max_query_length)
    encoded = tokenizer(clip_questions(tokenizer, records, max_query_length), [r["context"] for r in records],
                        truncation="only_second", max_length=max_length, stride=stride, return_overflowing_tokens=True,
                        return_offsets_mapping=True, padding="max_length")
    starts, ends = [], []
    for i, offsets in enumerate(encoded["offset_mapping"]):
        record = records[encoded["overflow_to_sample_mapping"][i]]
        sequence_ids = encoded.sequence_ids(i)
        answer_start = record["answers"]["answer_start"][0]
        answer_end = answer_start + len(record["answers"]["text"][0])
        context_tokens = [t for t, s in enumerate(sequence_ids) if s == 1]
        first, last = context_tokens[0], context_tokens[-1]
        if not (offsets[first][0] <= answer_start and offsets[last][1] >= answer_end):
            starts.append(0)
            ends.append(0)
            continue
        start = first
        while start <= last and offsets[start][0] <= answer_start:
            start += 1
        end = last
        while end >= first and offsets[end][1] >= answer_end:
            end -= 1
        starts.append(start - 1)
        ends.append(end + 1)
    return {"input_ids": torch.tensor(encoded["input_ids"]), "attention_mask": torch.tensor(encoded["attention_mask"]),
            "start_positions": torch.tensor(starts), "end_positions": torch.tensor(ends)}


def eval_features(tokenizer, records: list[dict[str, Any]], max_length: int, stride: int, max_query_length: int = 64):
    check_window(max_length, stride, max_query_length)
    encoded = tokenizer(clip_questions(tokenizer, records, max_query_length), [r["context"] for r in records],
                        truncation="only_second", max_length=max_length, stride=stride, return_overflowing_tokens=True,
                        return_offsets_mapping=True, padding="max_length")
    offsets = []
    for i, window in enumerate(encoded["offset_mapping"]):
        sequence_ids = encoded.sequence_ids(i)
        offsets.append([o if sequence_ids[k] == 1 else None for k, o in enumerate(window)])
    features = {"input_ids": torch.tensor(encoded["input_ids"]), "attention_mask": torch.tensor(encoded["attention_mask"])}
    return features, list(encoded["overflow_to_sample_mapping"]), offsets


def decode_answers(records, sample_of_feature, offsets, start_logits: torch.Tensor, end_logits: torch.Tensor,
                   n_best: int, max_answer_length: int) -> list[str]:
    """Best span per question (in `records` order) over all its windows: top-n starts × top-n ends, valid spans only."""
    by_sample: dict[int, list[int]] = defaultdict(list)
    for feature, sample in enumerate(sample_of_feature):
        by_sample[sample].append(feature)
    predictions = []
    for sample, record in enumerate(records):
        best_score, best_text = -np.inf, ""
        for feature in by_sample.get(sample, []):
            start, end = start_logits[feature].numpy(), end_logits[feature].numpy()
            window = offsets[feature]
            for s in np.argsort(start)[-n_best:][::-1]:
                for e in np.argsort(end)[-n_best:][::-1]:
                    if window[s] is None or window[e] is None or e < s or e - s + 1 > max_answer_length:
                        continue
                    score = start[s] + end[e]
                    if score > best_score:
                        best_score, best_text = score, record["context"][window[s][0]: window[e][1]]
        predictions.append(best_text)
    return predictions


def _pairs(config: MlqaConfig) -> list[tuple[str, str]]:
    if config.gxlt:
        return [(c, q) for c in config.languages for q in config.languages]
    return [(lang, lang) for lang in config.languages]


def run_mlqa(config: MlqaConfig) -> dict:
    unknown = sorted(set(config.languages) - set(MLQA_LANGUAGES))
    if unknown:
        raise ValueError(f"--languages {unknown} are not MLQA languages ({' '.join(MLQA_LANGUAGES)})")
    model_dir = require_model_dir(config.model)
    check_window(config.max_length, config.doc_stride, config.max_query_length)
    out = Path(config.output_dir) / "mlqa"
    fingerprint, device = model_fingerprint(model_dir), resolve_device(config.device)
    precision = precision_used(device, config.precision)
    previous = previous_report(out, config, fingerprint, precision)
    if previous:
        print(f"already evaluated: {out / 'report.json'} (same model and options)", file=sys.stderr)
        return previous
    train_files = config.train_files or [str(p) for p in sorted((data_root(config.data_dir) / "qa_train_en").glob("*.json"))]
    if not train_files:
        raise FileNotFoundError("no English QA training files: pass --train-files (SQuAD v1.1 format)")
    mlqa_dir = Path(config.mlqa_dir) if config.mlqa_dir else data_root(config.data_dir) / "mlqa" / "dev"
    test_sets = {}
    for context_lang, question_lang in _pairs(config):
        path = mlqa_dir / f"dev-context-{context_lang}-question-{question_lang}.json"
        if not path.is_file():
            test_path = mlqa_dir / f"test-context-{context_lang}-question-{question_lang}.json"
            if not test_path.is_file():
                raise FileNotFoundError(f"MLQA file {path} (or {test_path.name}) not found in {mlqa_dir}")
            path = test_path
        test_sets[(context_lang, question_lang)] = load_squad(path)
    records, skipped = usable_training_records(train_files)
    if not records:
        raise ValueError(f"no usable answers in the QA training files {train_files}")
    if config.max_train_examples:
        records = records[: config.max_train_examples]
    (out / "predictions").mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    if not tokenizer.is_fast:
        raise ValueError(f"{model_dir}: MLQA needs a fast tokenizer (offset mapping); save one with the model")
    model = load_pretrained(AutoModelForQuestionAnswering, str(model_dir), "--model")
    started = time.time()
    features = train_features(tokenizer, records, config.max_length, config.doc_stride, config.max_query_length)
    settings = config.finetune_settings()
    losses = finetune(model, features, settings, device, out / "train_log.jsonl", "mlqa fine-tune (en)")
    train_seconds = time.time() - started
    results: dict[str, Any] = {}
    matrix: dict[str, dict[str, float]] = defaultdict(dict)
    for (context_lang, question_lang), data in test_sets.items():
        if config.max_eval_examples:
            data = _first_questions(data, config.max_eval_examples)
        eval_records = flatten_squad(data)
        feats, sample_map, offsets = eval_features(tokenizer, eval_records, config.max_length, config.doc_stride,
                                                   config.max_query_length)
        start_logits, end_logits = batched_forward(model, feats, config.eval_batch_size, device, config.precision,
                                                   f"mlqa {context_lang}-{question_lang}")
        answers = decode_answers(eval_records, sample_map, offsets, start_logits, end_logits, config.n_best,
                                 config.max_answer_length)
        predictions = {record["id"]: answer for record, answer in zip(eval_records, answers)}
        if len(predictions) != len(eval_records):
            raise ValueError(f"MLQA {context_lang}-{question_lang}: question ids are not unique")
        scores = evaluate(data, predictions, context_lang)  # scored in the context language, as MLQA does
        matrix[context_lang][question_lang] = scores["f1"]
        if context_lang == question_lang:
            results[context_lang] = scores
            name = context_lang
        else:
            name = f"{context_lang}-{question_lang}"
        text = json.dumps(predictions, ensure_ascii=False, indent=1)
        atomic_write_file(out / "predictions" / f"{name}.json", lambda tmp, t=text: tmp.write_text(t, encoding="utf-8"))
    report = {
        "task": "mlqa", "model": str(model_dir), **computed_with(fingerprint, precision, device),
        "languages": results,
        "average": {"f1": float(np.mean([r["f1"] for r in results.values()])),
                    "exact_match": float(np.mean([r["exact_match"] for r in results.values()]))},
        "train_examples": len(records), "train_skipped": skipped, "train_features": int(len(features["input_ids"])),
        "final_train_loss": losses[-1], "train_seconds": train_seconds,
        "eval_seconds": time.time() - started - train_seconds, "config": asdict(config),
    }
    if config.gxlt:
        report["gxlt_f1"] = {c: dict(row) for c, row in matrix.items()}
        report["gxlt_average_f1"] = float(np.mean([v for row in matrix.values() for v in row.values()]))
    atomic_write_file(out / "report.json", lambda tmp: tmp.write_text(json.dumps(report, indent=2) + "\n"))
    return report


def usable_training_records(train_files: list[str]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Training questions whose first answer is non-empty and found at its `answer_start`.

    Some distributed copies of SQuAD-format files ship without answers (an earlier copy of the
    shared XQuAD-en had all 1190 answers empty); such questions cannot be trained on, so they are
    skipped — counted per file in the report and announced on stderr, never silently.
    """
    kept, skipped = [], {}
    for path in train_files:
        bad = 0
        for record in flatten_squad(load_squad(path)):
            texts, starts = record["answers"]["text"], record["answers"]["answer_start"]
            if texts and texts[0] and record["context"][starts[0]: starts[0] + len(texts[0])] == texts[0]:
                kept.append(record)
            else:
                bad += 1
        if bad:
            skipped[str(path)] = bad
            print(f"warning: {path}: {bad} questions have no answer matching the context; skipped for training",
                  file=sys.stderr)
    return kept, skipped


def _first_questions(data: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """The same data structure cut after `limit` questions (for quick CPU runs)."""
    kept, count = [], 0
    for article in data:
        paragraphs = []
        for paragraph in article["paragraphs"]:
            qas = paragraph["qas"][: max(0, limit - count)]
            count += len(qas)
            if qas:
                paragraphs.append({**paragraph, "qas": qas})
        if paragraphs:
            kept.append({**article, "paragraphs": paragraphs})
        if count >= limit:
            break
    return kept


def main(argv: list[str] | None = None) -> int:
    config = parse_config(argv, MlqaConfig, prog="python -m eval.mlqa", description=__doc__)
    try:
        report = run_mlqa(config)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({"average_f1": report["average"]["f1"], **{k: v["f1"] for k, v in report["languages"].items()}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
