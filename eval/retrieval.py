"""`python -m eval.retrieval`: cross-lingual sentence retrieval, a retention signal without fine-tuning.

XNLI and MLQA measure transfer only after English fine-tuning, which costs most of a CPU run and
adds seed noise. Retrieval (as XTREME's Tatoeba/BUCC) needs no training: embed translations with
the encoder (mean over the real tokens of one layer, cosine similarity) and check that each
English sentence's nearest neighbour among the other language's sentences is its translation,
and back. It measures how well the encoder aligns languages in its representation space; it does
not measure whether a classifier trained on English transfers (that is XNLI/MLQA's job).

Sentences come from the shared evaluation data, which the distillation corpus was cleaned of:
- `xnli` (task `retrieval`): distinct XNLI test premises, aligned by row across the 15
  languages (each premise occurs once per hypothesis: the first row of each is used).
- `mlqa` (task `retrieval-mlqa`): MLQA dev questions, professional translations of the English
  question, aligned by question id. (MLQA's contexts are parallel only at the answer sentence,
  so they are not used.)

Writes OUT/{task}/report.json and OUT/{task}/predictions/{lang}.jsonl (one line per pair: its
row/id, the retrieved row/id in each direction), from which `rescore` recomputes every number.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformers import AutoModel, AutoTokenizer

from mminilm.training.atomic import atomic_write_file
from mminilm.cli import parse_config
from mminilm.training.precision import autocast_context, precision_used, resolve_device
from mminilm.languages import MLQA_LANGUAGES, XNLI_LANGUAGES
from mminilm.models.teacher import load_pretrained

from .data import NliExamples, data_root, flatten_squad, load_nli_tsv, load_squad, require_model_dir
from .config import SOURCES, RetrievalConfig
from .finetune import trim_padding
from .previous import computed_with, model_fingerprint, previous_report

PIVOT = "en"


@dataclass
class AlignedSentences:
    """Translation pairs: `english[i]` and `other[i]` are translations of each other; `ids[i]` names the pair."""

    english: list[str]
    other: list[str]
    ids: list[int | str]

    def __len__(self) -> int:
        return len(self.ids)

    def head(self, count: int) -> "AlignedSentences":
        return AlignedSentences(self.english[:count], self.other[:count], self.ids[:count]) if count else self


@functools.lru_cache(maxsize=32)
def _xnli_test(path: Path) -> NliExamples:
    """One XNLI test file, read once per process (English is paired with every language)."""
    return load_nli_tsv(path)


def xnli_premises(root: Path, language: str) -> AlignedSentences:
    """Distinct aligned XNLI test premises: rows where neither side repeats an earlier premise."""
    english = _xnli_test(Path(root) / "xnli" / "test" / f"{PIVOT}.tsv")
    other = _xnli_test(Path(root) / "xnli" / "test" / f"{language}.tsv")
    if len(english) != len(other):
        raise ValueError(f"xnli/test/{language}.tsv has {len(other)} rows and {PIVOT}.tsv {len(english)}: "
                         f"retrieval needs the aligned XNLI test files")
    pairs = AlignedSentences([], [], [])
    seen_en, seen_other = set(), set()
    for index, en_text, other_text in zip(english.indices, english.premises, other.premises):
        if en_text in seen_en or other_text in seen_other:
            continue
        seen_en.add(en_text)
        seen_other.add(other_text)
        pairs.english.append(en_text)
        pairs.other.append(other_text)
        pairs.ids.append(index)
    return pairs


def _mlqa_questions(path: Path) -> dict[str, str]:
    questions: dict[str, str] = {}
    for record in flatten_squad(load_squad(path)):
        questions.setdefault(record["id"], record["question"].strip())
    return questions


def mlqa_questions(root: Path, language: str) -> AlignedSentences:
    """MLQA dev questions in `language` with their English originals (same question id), distinct on both sides."""
    folder = root / "mlqa" / "dev"
    english = _mlqa_questions(folder / f"dev-context-{PIVOT}-question-{PIVOT}.json")
    other = _mlqa_questions(folder / f"dev-context-{language}-question-{language}.json")
    pairs = AlignedSentences([], [], [])
    seen_en, seen_other = set(), set()
    for qid, text in other.items():
        if qid not in english or english[qid] in seen_en or text in seen_other:
            continue
        seen_en.add(english[qid])
        seen_other.add(text)
        pairs.english.append(english[qid])
        pairs.other.append(text)
        pairs.ids.append(qid)
    return pairs


LOADERS = {"xnli": (xnli_premises, XNLI_LANGUAGES), "mlqa": (mlqa_questions, MLQA_LANGUAGES)}


def retrieval_languages(source: str, languages: Sequence[str]) -> list[str]:
    """The requested languages that `source` has, without the pivot (English)."""
    available = LOADERS[source][1]
    return [lang for lang in languages if lang in available and lang != PIVOT]


@torch.no_grad()
def embed(model: torch.nn.Module, tokenizer, sentences: Sequence[str], layers: Sequence[int], device: torch.device,
          batch_size: int = 64, max_length: int = 128, precision: str = "auto") -> torch.Tensor:
    """L2-normalised mean-pooled hidden states, shape (len(layers), len(sentences), hidden), fp32 on CPU.

    `layers` index `hidden_states` (0 = embeddings, -1 = last layer). Sentences run longest
    first in batches cut to their longest real sequence, then are put back in order. Only the
    encoder runs: a student being distilled is a masked-LM model, and its head over the whole
    vocabulary (117k rows trimmed) made each probe during training ~5x slower than the encoder alone.
    """
    model = getattr(model, "base_model", model)
    was_training = model.training
    model.eval()
    encoded = tokenizer(list(sentences), truncation=True, max_length=max_length, padding="max_length",
                        return_tensors="pt")
    features = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
    order = torch.argsort(features["attention_mask"].sum(dim=1), descending=True, stable=True)
    pooled = torch.empty(len(layers), len(sentences), model.config.hidden_size)
    for start in range(0, len(sentences), batch_size):
        rows = order[start: start + batch_size]
        batch = {name: t.to(device) for name, t in trim_padding(features, rows).items()}
        with autocast_context(device, precision):
            hidden_states = model(**batch, output_hidden_states=True).hidden_states
        mask = batch["attention_mask"].unsqueeze(-1).float()
        for slot, layer in enumerate(layers):
            states = hidden_states[layer].float()
            mean = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
            pooled[slot, rows] = torch.nn.functional.normalize(mean, dim=-1).cpu()
    model.train(was_training)
    return pooled


def nearest(queries: torch.Tensor, candidates: torch.Tensor) -> list[int]:
    """Position of each query's most cosine-similar candidate (both L2-normalised)."""
    return (queries @ candidates.T).argmax(dim=1).tolist()


def scores(forward: Sequence, backward: Sequence, gold: Sequence) -> dict[str, float]:
    """Top-1 accuracy (%) per direction and their mean: a pair is right when it retrieves itself."""
    en_to_xx = 100.0 * sum(p == g for p, g in zip(forward, gold)) / max(1, len(gold))
    xx_to_en = 100.0 * sum(p == g for p, g in zip(backward, gold)) / max(1, len(gold))
    return {"accuracy": (en_to_xx + xx_to_en) / 2, "en_to_xx": en_to_xx, "xx_to_en": xx_to_en}


def top1_scores(english: torch.Tensor, other: torch.Tensor) -> dict[str, float]:
    """Top-1 accuracy (%) in both directions and their mean, for row-aligned embeddings."""
    return scores(nearest(english, other), nearest(other, english), range(len(english)))


class RetrievalProbe:
    """A fixed small retrieval set, embedded once per call: the cheap curve logged during distillation."""

    def __init__(self, data_dir: str | Path | None, languages: Sequence[str], sentences: int, tokenizer,
                 max_length: int = 128) -> None:
        root = data_root(data_dir)
        self.languages = retrieval_languages("xnli", languages)
        if not self.languages:
            raise ValueError(f"retrieval probe: none of the languages {' '.join(languages)} is a non-English XNLI language")
        self.pairs = {lang: xnli_premises(root, lang).head(sentences) for lang in self.languages}
        self.tokenizer = tokenizer
        self.max_length = max_length

    def __call__(self, model: torch.nn.Module, device: torch.device) -> dict:
        scores = {}
        for lang, pairs in self.pairs.items():
            vectors = embed(model, self.tokenizer, pairs.english + pairs.other, [-1], device, max_length=self.max_length)[0]
            scores[lang] = top1_scores(vectors[: len(pairs)], vectors[len(pairs):])["accuracy"]
        return {"average": sum(scores.values()) / len(scores), "languages": scores,
                "sentences": len(next(iter(self.pairs.values())))}


def parse_layers(value: str, num_layers: int) -> list[int]:
    """'-1' (last), 'N' (0 = embeddings .. num_layers) or 'all' -> hidden_states indices."""
    if value == "all":
        return list(range(num_layers + 1))
    try:
        layer = int(value)
    except ValueError:
        raise ValueError(f"--layer must be an integer (0 = embeddings, -1 = last) or 'all', got {value!r}") from None
    if not -num_layers - 1 <= layer <= num_layers:
        raise ValueError(f"--layer {layer} is outside this model's 0..{num_layers} (0 = embeddings, -1 = last)")
    return [layer % (num_layers + 1)]


def run_retrieval(config: RetrievalConfig) -> dict[str, dict]:
    """Embed, retrieve and write one report per source; returns {task: report}."""
    unknown = sorted(set(config.sources) - set(SOURCES))
    if unknown:
        raise ValueError(f"--sources {unknown}: expected some of {', '.join(SOURCES)}")
    model_dir = require_model_dir(config.model)
    root = data_root(config.data_dir)
    fingerprint, device = model_fingerprint(model_dir), resolve_device(config.device)
    precision = precision_used(device, config.precision)
    reports, to_compute = {}, []
    for source in config.sources:
        if not retrieval_languages(source, config.languages):
            continue
        out = Path(config.output_dir) / SOURCES[source]
        # each source has its own report, so one made by a run with other --sources is still this one
        previous = previous_report(out, config, fingerprint, precision, reusable=frozenset({"sources"}))
        if previous:
            print(f"already evaluated: {out / 'report.json'} (same model and options)", file=sys.stderr)
            reports[SOURCES[source]] = previous
        else:
            to_compute.append(source)
    if not to_compute:
        return _at_least_one(reports, config)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    model = load_pretrained(AutoModel, str(model_dir), "--model").to(device)
    layers = parse_layers(config.layer, model.config.num_hidden_layers)
    reported_layer = layers[-1]  # the table's layer: the chosen one, or the last with --layer all
    for source in to_compute:
        languages = retrieval_languages(source, config.languages)
        task = SOURCES[source]
        out = Path(config.output_dir) / task
        (out / "predictions").mkdir(parents=True, exist_ok=True)
        started = time.time()
        results, by_layer = {}, {str(layer): {} for layer in layers}
        for lang in languages:
            pairs = LOADERS[source][0](root, lang).head(config.max_sentences)
            vectors = embed(model, tokenizer, pairs.english + pairs.other, layers, device, config.batch_size,
                            config.max_length, config.precision)
            english, other = vectors[:, : len(pairs)], vectors[:, len(pairs):]
            for slot, layer in enumerate(layers):
                forward, backward = nearest(english[slot], other[slot]), nearest(other[slot], english[slot])
                by_layer[str(layer)][lang] = scores(forward, backward, range(len(pairs)))["accuracy"]
                if layer == reported_layer:  # the last slot: its retrievals are the predictions written below
                    results[lang] = {**scores(forward, backward, range(len(pairs))), "n": len(pairs)}
            lines = "".join(json.dumps({"index": pair_id, "en_to_xx": pairs.ids[f], "xx_to_en": pairs.ids[b]},
                                       ensure_ascii=False) + "\n"
                            for pair_id, f, b in zip(pairs.ids, forward, backward))
            atomic_write_file(out / "predictions" / f"{lang}.jsonl", lambda tmp, text=lines: tmp.write_text(text))
        report = {
            # the protocol names what must match between two models to compare them; the layer may differ
            "task": task, "model": str(model_dir), **computed_with(fingerprint, precision),
            "protocol": f"{source} sentences, en<->xx top-1, mean pooling, cosine",
            "layers": model.config.num_hidden_layers,
            "source": source, "layer": reported_layer, "languages": results,
            "average": sum(r["accuracy"] for r in results.values()) / len(results),
            "by_layer": {layer: {"average": sum(s.values()) / len(s), "languages": s} for layer, s in by_layer.items()},
            "seconds": time.time() - started, "config": asdict(config),
        }
        atomic_write_file(out / "report.json", lambda tmp, r=report: tmp.write_text(json.dumps(r, indent=2) + "\n"))
        reports[task] = report
    return _at_least_one(reports, config)


def _at_least_one(reports: dict[str, dict], config: RetrievalConfig) -> dict[str, dict]:
    if not reports:
        raise ValueError(f"--languages {' '.join(config.languages)}: none has aligned sentences besides English "
                         f"(xnli: {' '.join(XNLI_LANGUAGES)}; mlqa: {' '.join(MLQA_LANGUAGES)})")
    return reports


def rescore(task_dir: str | Path) -> dict[str, float]:
    """Each language's accuracy recomputed from its prediction file alone (a pair is right when it retrieves itself)."""
    accuracy = {}
    for path in sorted((Path(task_dir) / "predictions").glob("*.jsonl")):
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        accuracy[path.stem] = scores([r["en_to_xx"] for r in rows], [r["xx_to_en"] for r in rows],
                                     [r["index"] for r in rows])["accuracy"]
    return accuracy


def main(argv: list[str] | None = None) -> int:
    config = parse_config(argv, RetrievalConfig, prog="python -m eval.retrieval", description=__doc__)
    try:
        reports = run_retrieval(config)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({task: {"average": r["average"], **{k: v["accuracy"] for k, v in r["languages"].items()}}
                      for task, r in reports.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
