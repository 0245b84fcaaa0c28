"""`python -m eval.xnli`: zero-shot cross-lingual NLI — fine-tune on English, test on 15 languages.

Protocols:
- `standard` (the paper's): train on MNLI (`--train-file`, GLUE TSV; or the hub when online),
  select the best epoch on English XNLI dev (`--dev-file`), test on XNLI test (`--test-file`,
  XNLI-1.0 `xnli.test.tsv`, or `--test-dir` with per-language TSVs).
- `offline` (MNLI is not available offline; see the shared data's MANIFEST.md): fine-tune on the
  English NLI that is (`--english-train`: XNLI en dev, 2490 rows, optionally plus SICK's 9840
  pairs) for a fixed number of epochs — no model selection on test — and test every language
  on the real XNLI test set (`xnli/test/{lang}.tsv`, 5010 rows each, aligned across languages;
  `--max-eval-examples N` takes the first N rows, the same rows for every model).
- `xnli-dev-split` (the old offline protocol, explicit only): train on English XNLI dev rows
  0-1244, test every language on dev rows 1245-2489.
`auto` (default) picks `standard` when a training file is given, else `offline`. Files that the
chosen protocol would not read are an error, never silently ignored.

`--runs N` fine-tunes N times (seeds seed..seed+N-1) and reports the mean; an OUT that already
holds runs of this model and configuration keeps them and fine-tunes only the missing seeds.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from mminilm.training.atomic import atomic_write_file
from mminilm.cli import parse_config
from mminilm.training.precision import precision_used, resolve_device
from mminilm.models.teacher import load_pretrained

from mminilm.languages import XNLI_LANGUAGES

from .data import NLI_LABELS, XNLI_DEV_SPLIT, NliExamples, data_root, load_nli_tsv, require_model_dir
from .config import ENGLISH_TRAIN, PROTOCOLS, STANDARD_ONLY, XnliConfig
from .finetune import batched_forward, finetune, seed_everything
from .previous import computed_with, model_fingerprint, previous_report


def resolve_protocol(config: XnliConfig) -> str:
    """The protocol that will run; rejects files it would ignore."""
    if config.protocol not in PROTOCOLS:
        raise ValueError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {config.protocol!r}")
    if config.english_train not in ENGLISH_TRAIN:
        raise ValueError(f"--english-train must be one of {', '.join(ENGLISH_TRAIN)}, got {config.english_train!r}")
    protocol = config.protocol
    if protocol == "auto":
        protocol = "standard" if config.train_file else "offline"
    if protocol != "standard":
        given = [name for name in STANDARD_ONLY if getattr(config, name)]
        if given:
            flags = ", ".join("--" + name.replace("_", "-") for name in given)
            raise ValueError(f"{flags} belong(s) to --protocol standard (MNLI train + XNLI dev/test files); the "
                             f"{protocol} protocol reads the shared data folder. Pass --train-file too, or drop {flags}")
    return protocol


def _hub_split(name: str, language: str | None, split: str) -> NliExamples:
    import datasets

    try:
        table = (datasets.load_dataset("nyu-mll/glue", "mnli", split=split) if name == "mnli"
                 else datasets.load_dataset("facebook/xnli", language, split=split))
    except Exception as error:  # offline, or the hub refused
        raise FileNotFoundError(f"could not load {name} {language or ''} {split} from the hub ({error}); offline, pass "
                                f"--train-file/--test-file, or use --protocol xnli-dev-split") from error
    return NliExamples(list(table["premise"]), list(table["hypothesis"]), list(table["label"]), list(range(len(table))))


def load_splits(config: XnliConfig) -> tuple[NliExamples, NliExamples | None, dict[str, NliExamples]]:
    """(English train, English dev or None, {language: test}) for the chosen protocol."""
    protocol = resolve_protocol(config)
    if protocol == "offline":
        root = data_root(config.data_dir)
        train = None
        for relative in ENGLISH_TRAIN[config.english_train]:
            part = load_nli_tsv(root / relative, language="en")
            train = part if train is None else train.concat(part)
        tests = {lang: load_nli_tsv(root / "xnli" / "test" / f"{lang}.tsv") for lang in config.languages}
        return train, None, tests
    if protocol == "xnli-dev-split":
        root = data_root(config.data_dir) / "xnli" / "dev"
        english = load_nli_tsv(root / "en.tsv")
        if len(english) != 2 * XNLI_DEV_SPLIT:
            raise ValueError(f"{root / 'en.tsv'} has {len(english)} rows; the xnli-dev-split protocol expects XNLI dev (2490)")
        tests = {lang: load_nli_tsv(root / f"{lang}.tsv").select(XNLI_DEV_SPLIT) for lang in config.languages}
        return english.select(0, XNLI_DEV_SPLIT), None, tests
    train = load_nli_tsv(config.train_file) if config.train_file else _hub_split("mnli", None, "train")
    if config.dev_file:
        dev = load_nli_tsv(config.dev_file, language="en")
    else:
        dev = None
    if config.test_file:
        tests = {lang: load_nli_tsv(config.test_file, language=lang) for lang in config.languages}
    elif config.test_dir:
        tests = {lang: load_nli_tsv(Path(config.test_dir) / f"{lang}.tsv") for lang in config.languages}
    else:
        tests = {lang: _hub_split("xnli", lang, "test") for lang in config.languages}
    return train, dev, tests


def _encode(tokenizer, examples: NliExamples, max_length: int, with_labels: bool) -> dict[str, torch.Tensor]:
    encoded = tokenizer(examples.premises, examples.hypotheses, truncation=True, max_length=max_length,
                        padding="max_length", return_tensors="pt")
    features = {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
    if with_labels:
        features["labels"] = torch.tensor(examples.labels, dtype=torch.long)
    return features


def run_xnli(config: XnliConfig) -> dict:
    """Fine-tune on English, predict every language, write report.json and predictions/{lang}.jsonl.

    Runs OUT/xnli already holds with this model and configuration are kept (`eval.previous`): asking
    for more `--runs` only fine-tunes the seeds that are missing."""
    protocol = resolve_protocol(config)
    if config.runs < 1:
        raise ValueError(f"--runs must be at least 1, got {config.runs}")
    unknown = sorted(set(config.languages) - set(XNLI_LANGUAGES))
    if unknown:
        raise ValueError(f"--languages {unknown} are not XNLI languages ({' '.join(XNLI_LANGUAGES)})")
    model_dir = require_model_dir(config.model)
    out = Path(config.output_dir) / "xnli"
    fingerprint, device = model_fingerprint(model_dir), resolve_device(config.device)
    precision = precision_used(device, config.precision)
    previous = previous_report(out, config, fingerprint, precision, reusable=frozenset({"runs"}))
    seeds = [config.seed + run for run in range(config.runs)]
    finished = saved_runs(out, previous) if previous else {}
    if len(finished) > len(seeds):
        raise ValueError(f"{out / 'report.json'} holds {len(finished)} runs (seeds {list(finished)}), more than "
                         f"--runs {config.runs}: ask for --runs {len(finished)} to keep them, or --overwrite")
    if previous and list(finished) == seeds:
        print(f"already evaluated: {out / 'report.json'} (same model and options)", file=sys.stderr)
        return previous
    missing = [seed for seed in seeds if seed not in finished]
    if finished:
        print(f"{out / 'report.json'}: keeping the finished runs with seeds {[s for s in seeds if s in finished]}, "
              f"fine-tuning seeds {missing}", file=sys.stderr)
    train, dev, tests = load_splits(config)
    if config.max_train_examples:
        train = train.select(0, config.max_train_examples)
    if config.max_eval_examples:
        tests = {lang: ex.select(0, config.max_eval_examples) for lang, ex in tests.items()}
    (out / "predictions").mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    started = time.time()
    if missing:  # tokenized once, whatever the number of runs
        train_features = _encode(tokenizer, train, config.max_length, with_labels=True)
        encoded = {name: (examples, _encode(tokenizer, examples, config.max_length, with_labels=False))
                   for name, examples in ([("dev", dev)] if dev is not None else []) + list(tests.items())}
        for seed in missing:
            finished[seed] = _fine_tune_and_test(
                config, model_dir, device, train_features, encoded, seed,
                out / ("train_log.jsonl" if seed == config.seed else f"train_log.seed{seed}.jsonl"))
    runs = [finished[seed] for seed in seeds]
    results = {}
    for lang, examples in tests.items():
        scores = [run["accuracy"][lang] for run in runs]
        results[lang] = {"accuracy": sum(scores) / len(scores), "n": len(examples),
                         **({"runs": scores} if len(runs) > 1 else {})}
        # the first run's labels (what a single run writes); every run's when there are several
        lines = "".join(json.dumps({"index": index, "prediction": NLI_LABELS[first],
                                    **({"predictions": [NLI_LABELS[run["predictions"][lang][row]] for run in runs]}
                                       if len(runs) > 1 else {})}) + "\n"
                        for row, (index, first) in enumerate(zip(examples.indices, runs[0]["predictions"][lang])))
        atomic_write_file(out / "predictions" / f"{lang}.jsonl", lambda tmp, text=lines: tmp.write_text(text))
    averages = [sum(run["accuracy"].values()) / len(run["accuracy"]) for run in runs]
    train_seconds = [run["train_seconds"] for run in runs]
    report = {
        "task": "xnli", "model": str(model_dir), **computed_with(fingerprint, precision, device),
        "protocol": protocol,
        "english_train": config.english_train if protocol == "offline" else None,
        "languages": results, "average": sum(averages) / len(averages),
        **({"seeds": seeds, "average_runs": averages} if len(runs) > 1 else {}),
        "train_examples": len(train), "final_train_loss": runs[-1]["final_train_loss"],
        "final_train_loss_runs": [run["final_train_loss"] for run in runs],
        "train_seconds": sum(train_seconds), "train_seconds_runs": train_seconds,
        "eval_seconds": time.time() - started - sum(finished[seed]["train_seconds"] for seed in missing),
        "config": asdict(config),
    }
    atomic_write_file(out / "report.json", lambda tmp: tmp.write_text(json.dumps(report, indent=2) + "\n"))
    return report


def saved_runs(out: Path, report: dict) -> dict[int, dict]:
    """{seed: one run's accuracy, predictions, final loss and training time} read back from a report
    and its predictions/ (reports that predate the per-run fields split what they have evenly)."""
    seeds = report.get("seeds") or [report["config"]["seed"]]
    losses = report.get("final_train_loss_runs") or [None] * (len(seeds) - 1) + [report.get("final_train_loss")]
    seconds = report.get("train_seconds_runs") or [report.get("train_seconds", 0.0) / len(seeds)] * len(seeds)
    runs = {seed: {"accuracy": {}, "predictions": {}, "final_train_loss": loss, "train_seconds": time_s}
            for seed, loss, time_s in zip(seeds, losses, seconds)}
    for lang, result in report["languages"].items():
        path = out / "predictions" / f"{lang}.jsonl"
        if not path.is_file():
            raise ValueError(f"{path} is missing, so the runs in {out / 'report.json'} cannot be kept: --overwrite "
                             "to redo them")
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        for slot, seed in enumerate(seeds):
            runs[seed]["accuracy"][lang] = result.get("runs", [result["accuracy"]])[slot]
            runs[seed]["predictions"][lang] = [NLI_LABELS.index(row.get("predictions", [row["prediction"]])[slot])
                                               for row in rows]
    return runs


def _fine_tune_and_test(config: XnliConfig, model_dir: Path, device: torch.device,
                        train_features: dict[str, torch.Tensor],
                        encoded: dict[str, tuple[NliExamples, dict[str, torch.Tensor]]], seed: int,
                        log_path: Path) -> dict:
    """One fine-tuning run from the saved model with `seed`, then accuracy and predictions for every
    test language of `encoded` (its "dev" entry, when present, selects the best epoch)."""
    seed_everything(seed)
    model = load_pretrained(
        AutoModelForSequenceClassification, str(model_dir), "--model", num_labels=len(NLI_LABELS), id2label=dict(enumerate(NLI_LABELS)),
        label2id={label: i for i, label in enumerate(NLI_LABELS)})
    settings = dataclasses.replace(config.finetune_settings(), seed=seed)

    def accuracy(name: str, description: str) -> tuple[float, list[int]]:
        examples, features = encoded[name]
        (logits,) = batched_forward(model, features, config.eval_batch_size, device, config.precision, description)
        predictions = logits.argmax(dim=-1).tolist()
        correct = sum(int(p == g) for p, g in zip(predictions, examples.labels))
        return 100.0 * correct / max(1, len(examples)), predictions

    select_on = (lambda _model: accuracy("dev", "xnli dev en")[0]) if "dev" in encoded else None
    started = time.time()
    losses = finetune(model, train_features, settings, device, log_path, f"xnli fine-tune (en, seed {seed})",
                      select_on=select_on)
    train_seconds = time.time() - started
    scores, predictions = {}, {}
    for lang in (name for name in encoded if name != "dev"):
        scores[lang], predictions[lang] = accuracy(lang, f"xnli test {lang}")
    return {"accuracy": scores, "predictions": predictions, "final_train_loss": losses[-1],
            "train_seconds": train_seconds}


def main(argv: list[str] | None = None) -> int:
    config = parse_config(argv, XnliConfig, prog="python -m eval.xnli", description=__doc__)
    try:
        report = run_xnli(config)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({"average": report["average"], **{k: v["accuracy"] for k, v in report["languages"].items()}}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
