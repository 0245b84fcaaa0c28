"""Failure paths of a training run: nothing mixed, overwritten, lost or checkpointed broken.

Each test reproduces a finding of the reliability issue with real subprocesses on a real corpus.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import torch

import pytest

from mminilm.training.run_logging import read_jsonl
from test_trainer import REPO, _args, _distill, _env

pytestmark = pytest.mark.slow  # real training subprocesses, some of them racing each other


def _config(out):
    return json.loads((out / "config.json").read_text())


def test_resume_refuses_a_changed_configuration(tmp_path, small_teacher_dir, cc100_dir):
    out = tmp_path / "run"
    assert _distill(_args(small_teacher_dir, cc100_dir, out, steps=8)).returncode == 0
    saved = (out / "config.json").read_text()
    for change in (["--lr", "1e-3"], ["--batch-size", "2"], ["--objective", "minilmv2", "--relation-heads", "8"],
                   ["--student-layers", "1"]):
        result = _distill(_args(small_teacher_dir, cc100_dir, out, steps=8, extra=["--resume", *change]))
        field = change[0].removeprefix("--").replace("-", "_")
        assert result.returncode == 2 and f"{field}:" in result.stderr and "another configuration" in result.stderr, change
        assert "Traceback" not in result.stderr
    assert (out / "config.json").read_text() == saved  # the run's record is untouched
    # a field that is safe to change, allowed explicitly: the run is extended
    extended = _distill(_args(small_teacher_dir, cc100_dir, out, steps=12,
                              extra=["--resume", "--allow-config-change", "steps"]))
    assert extended.returncode == 0, extended.stderr[-2000:]
    assert [r["step"] for r in read_jsonl(out / "train_log.jsonl")] == list(range(1, 13))


def test_a_finished_model_or_log_is_never_overwritten_unasked(tmp_path, small_teacher_dir, cc100_dir):
    out = tmp_path / "run"
    assert _distill(_args(small_teacher_dir, cc100_dir, out, steps=4)).returncode == 0
    shutil.rmtree(out / "checkpoints")  # a dir with model/ and logs but no checkpoints
    log_before = (out / "train_log.jsonl").read_text()
    result = _distill(_args(small_teacher_dir, cc100_dir, out, steps=4))
    assert result.returncode == 2 and "already holds a run" in result.stderr and "--overwrite" in result.stderr
    assert (out / "train_log.jsonl").read_text() == log_before and (out / "model" / "config.json").is_file()
    replaced = _distill(_args(small_teacher_dir, cc100_dir, out, steps=4, extra=["--overwrite", "--lr", "1e-3"]))
    assert replaced.returncode == 0 and _config(out)["lr"] == 1e-3


def test_resume_finds_the_newest_checkpoint_without_the_pointer(tmp_path, small_teacher_dir, cc100_dir):
    out = tmp_path / "run"
    assert _distill(_args(small_teacher_dir, cc100_dir, out, steps=8)).returncode == 0
    (out / "checkpoints" / "latest").unlink()
    shutil.rmtree(out / "model")
    (out / "summary.json").unlink()
    resumed = _distill(_args(small_teacher_dir, cc100_dir, out, steps=12,
                             extra=["--resume", "--allow-config-change", "steps"]))
    assert resumed.returncode == 0 and "resumed from" in resumed.stderr and "step-0000008" in resumed.stderr
    kept = sorted(p.name for p in (out / "checkpoints").glob("step-*"))
    assert kept == ["step-0000008", "step-0000012"]  # the newest by step number, the one just written included


def test_two_runs_cannot_share_an_output_directory(tmp_path, small_teacher_dir, cc100_dir):
    out = tmp_path / "run"
    # The first run is given far more steps than it will ever take, so it is certainly still going while
    # the second one starts, however fast the machine (a 300-step first run once finished first on CI).
    first = subprocess.Popen([sys.executable, "-m", "mminilm.distill",
                              *_args(small_teacher_dir, cc100_dir, out, steps=1_000_000)],
                             cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not (out / "checkpoints" / "step-0000004").is_dir():
            assert first.poll() is None, first.stderr.read()[-2000:]
            time.sleep(0.05)
        second = _distill(_args(small_teacher_dir, cc100_dir, out, steps=300, extra=["--resume", "--lr", "1e-3"]))
        assert first.poll() is None, "the first run must still be going for this test to mean anything"
        assert second.returncode == 2 and "is in use by pid" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.kill()  # SIGKILL: the lock must go with the process, and the run must still resume
        first.wait(timeout=60)
    newest = max(int(p.name.removeprefix("step-")) for p in (out / "checkpoints").glob("step-*"))
    resumed = _distill(_args(small_teacher_dir, cc100_dir, out, steps=newest + 4,
                             extra=["--resume", "--allow-config-change", "steps"]))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert [r["step"] for r in read_jsonl(out / "train_log.jsonl")] == list(range(1, newest + 5))
    assert _config(out)["lr"] == 3e-3  # the refused run changed nothing


def test_a_non_finite_update_is_never_applied_or_checkpointed(tmp_path, small_teacher_dir, cc100_dir):
    out = tmp_path / "run"
    result = _distill(_args(small_teacher_dir, cc100_dir, out, steps=40, extra=["--lr", "1e6", "--max-grad-norm", "0"]))
    assert result.returncode == 2 and "non-finite" in result.stderr and "Traceback" not in result.stderr
    assert "last good checkpoint" in result.stderr or "no checkpoint was written yet" in result.stderr
    for checkpoint in (out / "checkpoints").glob("step-*"):
        state = torch.load(checkpoint / "trainer.pt", weights_only=False)["student"]
        assert all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point()), checkpoint


def test_a_lower_lr_allowed_on_resume_takes_effect(tmp_path, small_teacher_dir, cc100_dir):
    out = tmp_path / "run"
    assert _distill(_args(small_teacher_dir, cc100_dir, out, steps=8)).returncode == 0
    resumed = _distill(_args(small_teacher_dir, cc100_dir, out, steps=12,
                             extra=["--resume", "--lr", "1e-4", "--allow-config-change", "steps", "lr"]))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    log = read_jsonl(out / "train_log.jsonl")
    # after step 9 of 12 (warmup 2) the linear decay factor is (12 - 9) / (12 - 2) = 0.3, applied to
    # the new peak lr (1e-4), not the saved one (3e-3, which would give 9e-4)
    assert [r["step"] for r in log] == list(range(1, 13)) and log[8]["lr"] == pytest.approx(0.3 * 1e-4)
