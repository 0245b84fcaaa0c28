"""An evaluation already in OUT/TASK: reused when it answers the same question, refused when not.

Re-running a recipe must neither redo a finished evaluation (minutes to an hour on a CPU) nor keep
one made with other settings: asking for `--runs 2` after a one-run XNLI report, another learning
rate, or a model that was re-trained at the same path must not silently return the old numbers.
So every evaluation CLI compares its request with the saved report's configuration and the model's
fingerprint (a hash of the files in the model dir, recorded in every report):
- identical -> the saved report is the answer (nothing is recomputed);
- different only in what can be added (XNLI's `runs`) -> the finished runs are kept, the rest run;
- anything else -> exit 2 naming the fields, unless `--overwrite` (redo it) or another --output-dir.
A report written before fingerprints existed is trusted by the model's path.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from mminilm.cli import default_of
from mminilm.training.run_dir import config_differences

from .data import data_root

FINGERPRINT_FIELD = "model_fingerprint"
# Options that never change an evaluation's numbers: where it writes, how it batches inference,
# which device runs it, and the switch that asks for a redo.
NEUTRAL_EVAL_FIELDS = {"output_dir", "eval_batch_size", "device", "overwrite"}


def model_fingerprint(model_dir: str | Path) -> str:
    """sha256 over the names and bytes of every file in the model dir (weights, config, tokenizer):
    the same path holding another model must not count as the model a report was made with."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(model_dir).rglob("*") if p.is_file()):
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


def previous_report(task_dir: Path, config: Any, fingerprint: str, reusable: frozenset[str] = frozenset()
                    ) -> dict[str, Any] | None:
    """The report in `task_dir` when it was made with this model and configuration (fields in
    `reusable` may differ: the caller reconciles them), None when there is none or --overwrite is
    given; ValueError naming the differences otherwise. A field the saved configuration lacks (an
    option added since) counts as its default."""
    path = task_dir / "report.json"
    if config.overwrite or not path.is_file():
        return None
    report = json.loads(path.read_text())
    differences = config_differences(_comparable(report.get("config", {})), _comparable(dataclasses.asdict(config)),
                                     allowed=NEUTRAL_EVAL_FIELDS | set(reusable),
                                     defaults={field.name: default_of(field) for field in dataclasses.fields(config)})
    if report.get(FINGERPRINT_FIELD, fingerprint) != fingerprint:
        differences.append(f"the files of --model {config.model} changed since it was written")
    if differences:
        raise ValueError(f"{path} was made with another configuration ({'; '.join(differences)}): use another "
                         "--output-dir, or --overwrite to redo it (recipes: REEVALUATE=1)")
    return report
