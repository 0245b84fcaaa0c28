"""Where a recipe's time went: the recipes append a JSONL line when a stage starts and one when it
ends (OUTPUT/stages.jsonl); this module sums them.

Why a log of its own: the main job runs for hours on a CPU and is often stopped and re-run, which
resumes it. The shell's clock sees only the last invocation, where finished stages are reused in
seconds. Per stage, the longest finished attempt is the one that did the work, so their sum is
what the job's work took, across invocations; an attempt that was stopped leaves a start without
an end, and is listed (its time is unknown, so it is not counted and the sum is then a lower bound).

    python -m mminilm.training.stage_log runs/e5-small/stages.jsonl   # prints the summary as JSON
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from mminilm.training.run_logging import read_jsonl


def summarize(path: str | os.PathLike) -> dict[str, Any]:
    """Work seconds per stage (the longest finished attempt per stage and target, summed over
    targets), their total, and the attempts that started but never ended."""
    records = read_jsonl(path)
    starts: dict[tuple[str, str, str], dict[str, Any]] = {}
    longest: dict[tuple[str, str], dict[str, Any]] = {}
    for record in records:
        attempt = (record["run"], record["stage"], record["target"])
        if record["event"] == "start":
            starts[attempt] = record
            continue
        started = starts.pop(attempt, None)
        if started is None:
            raise ValueError(f"{path}: an end without a start: {record}")
        finished = {"stage": record["stage"], "target": record["target"], "run": record["run"],
                    "seconds": record["time"] - started["time"], "exit": record["exit"]}
        key = (record["stage"], record["target"])
        if finished["exit"] == 0 and finished["seconds"] >= longest.get(key, {"seconds": -1})["seconds"]:
            longest[key] = finished
    by_stage: dict[str, int] = {}
    for finished in longest.values():
        by_stage[finished["stage"]] = by_stage.get(finished["stage"], 0) + finished["seconds"]
    return {
        "work_seconds": sum(by_stage.values()),
        "by_stage": by_stage,
        "attempts": sorted(longest.values(), key=lambda item: (item["stage"], item["target"])),
        "stopped": [{"stage": s["stage"], "target": s["target"], "run": s["run"]} for s in starts.values()],
        "invocations": len({record["run"] for record in records}),
    }


def one_line(summary: dict[str, Any]) -> str:
    """The summary for a person: '42 min of work: distill 30.5, xnli 9.1, ...' (minutes)."""
    parts = ", ".join(f"{stage} {seconds / 60:.1f}" for stage, seconds in
                      sorted(summary["by_stage"].items(), key=lambda item: -item[1]))
    text = f"{summary['work_seconds'] / 60:.1f} min of work over {summary['invocations']} invocation(s): {parts}"
    if summary["stopped"]:
        text += f" (+ {len(summary['stopped'])} stopped attempt(s), not counted: a lower bound)"
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mminilm.training.stage_log", description=__doc__.split("\n\n")[0])
    parser.add_argument("stages", help="a recipe's OUTPUT/stages.jsonl")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.stages):
        parser.error(f"{args.stages}: no such file (the recipes write OUTPUT/stages.jsonl)")
    try:
        summary = summarize(args.stages)
    except (ValueError, KeyError, TypeError) as error:  # also JSON that is not a stage record
        parser.error(f"{args.stages}: not a stage log ({error})")
    print(one_line(summary), file=sys.stderr)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
