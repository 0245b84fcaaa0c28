"""The recipes' stage log as a resumed job writes it: recipes/lib.sh's `timed` in real bash processes
(one finished, one failed, one killed attempt, then a re-run that reuses), summed by the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mminilm.training.run_logging import read_jsonl

REPO = Path(__file__).resolve().parents[1]


def _bash(output: Path, script: str, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, OUTPUT=str(output), PYTHON=sys.executable)
    return subprocess.Popen(["bash", "-c", f'set -euo pipefail; source "{REPO}/recipes/lib.sh"; {script}'], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True, **kwargs)


def _summary(stages: Path) -> tuple[subprocess.CompletedProcess, dict]:
    done = subprocess.run([sys.executable, "-m", "mminilm.training.stage_log", str(stages)], capture_output=True, text=True)
    return done, (json.loads(done.stdout) if done.returncode == 0 else {})


def test_work_time_adds_the_attempts_that_did_the_work_across_invocations(tmp_path):
    out = tmp_path / 'run "odd" \\ dir'  # a quote and a backslash in the path: the lines stay JSON
    first = _bash(out, 'timed distill "$OUTPUT/student" sleep 2; timed xnli "$OUTPUT/eval" true; '
                       'timed mlqa "$OUTPUT/eval" false || echo "mlqa failed with $?"')
    stdout, stderr = first.communicate(timeout=60)
    assert first.returncode == 0, stderr
    assert stdout.strip() == "mlqa failed with 1"  # timed passes the command's exit status on
    killed = _bash(out, 'timed xnli "$OUTPUT/teacher" sleep 30')
    deadline = time.time() + 20
    while not (out / "stages.jsonl").read_text().count('"teacher"') and time.time() < deadline:
        time.sleep(0.1)
    os.killpg(killed.pid, signal.SIGKILL)  # kill -9 mid-stage: a start with no end
    killed.communicate(timeout=20)
    rerun = _bash(out, 'timed distill "$OUTPUT/student" true; timed xnli "$OUTPUT/teacher" sleep 1')
    assert rerun.wait(timeout=60) == 0

    records = read_jsonl(out / "stages.jsonl")
    assert [(r["stage"], r["event"]) for r in records][:2] == [("distill", "start"), ("distill", "end")]
    assert records[0]["target"] == f"{out}/student"
    done, summary = _summary(out / "stages.jsonl")
    assert done.returncode == 0, done.stderr
    assert summary["invocations"] == 3
    # distill: the 2 s attempt that trained, not the re-run that found it done; xnli: eval (0 s)
    # + the teacher's finished 1 s attempt; the failed mlqa attempt counts nowhere
    assert 2 <= summary["by_stage"]["distill"] <= 4 and 1 <= summary["by_stage"]["xnli"] <= 3
    assert "mlqa" not in summary["by_stage"]
    assert summary["work_seconds"] == summary["by_stage"]["distill"] + summary["by_stage"]["xnli"]
    assert summary["stopped"] == [{"stage": "xnli", "target": f"{out}/teacher", "run": records[6]["run"]}]
    assert "3 invocation(s)" in done.stderr and "1 stopped attempt(s), not counted" in done.stderr


def test_a_missing_or_foreign_log_is_refused_naming_the_file(tmp_path):
    done, _ = _summary(tmp_path / "stages.jsonl")
    assert done.returncode == 2 and "stages.jsonl: no such file" in done.stderr
    foreign = tmp_path / "train_log.jsonl"
    foreign.write_text('{"step": 10, "loss": 1.5}\n')
    done, _ = _summary(foreign)
    assert done.returncode == 2 and "train_log.jsonl: not a stage log" in done.stderr and "Traceback" not in done.stderr
