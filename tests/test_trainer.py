"""The trainer as users run it: its CLI in-process, and real subprocesses where the process is the point
(a real SIGKILL, real torchrun with gloo)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import XLMRobertaForMaskedLM

from mminilm.training.checkpoint import latest_checkpoint
from mminilm.training.precision import precision_used
from mminilm.training.run_logging import read_jsonl

REPO = Path(__file__).resolve().parents[1]
LANGS = ["sw", "yo", "jv", "tl"]


@pytest.fixture(scope="module")
def teacher_dir(small_teacher_dir):
    return small_teacher_dir


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    return env


def _args(teacher_dir, cc100_dir, output, steps=12, extra=()):
    return ["--teacher", str(teacher_dir), "--corpus", str(cc100_dir), "--languages", *LANGS,
            "--output-dir", str(output), "--student-layers", "2", "--student-hidden", "32", "--student-heads", "4",
            "--max-length", "32", "--batch-size", "4", "--steps", str(steps), "--warmup-steps", "2", "--lr", "3e-3",
            "--save-every", "4", "--log-every", "1", "--seed", "3", "--device", "cpu", "--no-tensorboard",
            "--cache-dir", str(output.parent / "cache"), *extra]


def _distill(args, **kwargs):
    return subprocess.run([sys.executable, "-m", "mminilm.distill", *args], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=600, **kwargs)


@pytest.mark.parametrize("objective", ["minilm", "minilmv2", "logit_kd", "mlm", "hidden"])
def test_every_objective_trains_and_saves_a_student(tmp_path, teacher_dir, cc100_dir, objective, run_cli):
    out = tmp_path / objective
    extra = ["--objective", objective] + (["--relation-heads", "8"] if objective == "minilmv2" else [])
    result = run_cli("mminilm.distill", *_args(teacher_dir, cc100_dir, out, steps=16, extra=extra))
    assert result.returncode == 0, result.stderr[-3000:]
    log = read_jsonl(out / "train_log.jsonl")
    assert [r["step"] for r in log] == list(range(1, 17))
    first, last = sum(r["loss"] for r in log[:4]) / 4, sum(r["loss"] for r in log[-4:]) / 4
    assert last < first, (objective, first, last)
    assert set().union(*(r["tokens"] for r in log)) <= set(LANGS)
    assert (out / "model" / "config.json").is_file() and (out / "model" / "tokenizer.json").is_file()
    assert json.loads((out / "config.json").read_text())["objective"] == objective
    assert (out / "train.log").read_text().count("saved") == 1


def test_layer_to_layer_distillation_trains_and_checkpoints_no_second_model_copy(tmp_path, teacher_dir, cc100_dir,
                                                                                 run_cli):
    """--distil-layers uniform --hidden-weight: every student layer has a target; the hidden term's
    projections (student width 32, teacher 64) are the only objective state a checkpoint adds."""
    out = tmp_path / "uniform"
    extra = ["--distil-layers", "uniform", "--hidden-weight", "1"]
    result = run_cli("mminilm.distill", *_args(teacher_dir, cc100_dir, out, steps=8, extra=extra))
    assert result.returncode == 0, result.stderr[-3000:]
    log = read_jsonl(out / "train_log.jsonl")
    assert set(log[0]["components"]) == {"attention", "value", "hidden"}
    assert sum(r["loss"] for r in log[-3:]) < sum(r["loss"] for r in log[:3])
    state = torch.load(latest_checkpoint(out / "checkpoints") / "trainer.pt", weights_only=False)
    assert state["objective"] and all(name.startswith("distiller.projections.") for name in state["objective"])
    made = json.loads((out / "model" / "distillation.json").read_text())
    assert (made["distil_layers"], made["hidden_weight"]) == ("uniform", 1.0)


def test_a_run_saved_before_an_option_existed_resumes_under_its_default(tmp_path, teacher_dir, cc100_dir, run_cli):
    out = tmp_path / "run"
    assert run_cli("mminilm.distill", *_args(teacher_dir, cc100_dir, out, steps=4)).returncode == 0
    saved = json.loads((out / "config.json").read_text())
    for added_later in ("distil_layers", "hidden_weight"):
        del saved[added_later]
    (out / "config.json").write_text(json.dumps(saved))
    changed = run_cli("mminilm.distill", *_args(teacher_dir, cc100_dir, out, steps=8,
                                                extra=["--resume", "--hidden-weight", "1"]))
    assert changed.returncode == 2 and "hidden_weight: 0.0 -> 1.0" in changed.stderr
    resumed = run_cli("mminilm.distill", *_args(teacher_dir, cc100_dir, out, steps=8,
                                                extra=["--resume", "--allow-config-change", "steps"]))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert [r["step"] for r in read_jsonl(out / "train_log.jsonl")] == list(range(1, 9))


@pytest.mark.slow
def test_killed_run_resumes_with_the_same_loss_sequence(tmp_path, teacher_dir, cc100_dir):
    reference = tmp_path / "reference"
    assert _distill(_args(teacher_dir, cc100_dir, reference)).returncode == 0
    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "mminilm.distill", *_args(teacher_dir, cc100_dir, killed)],
                               cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log_path = killed / "train_log.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline:  # kill between the step-4 and step-8 checkpoints
        if log_path.is_file() and len(log_path.read_text().splitlines()) >= 6:
            break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    steps_before_kill = len(log_path.read_text().splitlines())
    assert 6 <= steps_before_kill < 12, "the run must be killed mid-way for this test to mean anything"
    assert not (killed / "model").exists()
    resumed = _distill(_args(teacher_dir, cc100_dir, killed, extra=["--resume"]))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stderr
    expected = [r["loss"] for r in read_jsonl(reference / "train_log.jsonl")]
    got = [r["loss"] for r in read_jsonl(log_path)]
    assert got == expected  # bit-for-bit: weights, optimizer, RNG and data stream were all restored
    a = XLMRobertaForMaskedLM.from_pretrained(reference / "model").state_dict()
    b = XLMRobertaForMaskedLM.from_pretrained(killed / "model").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    summary = json.loads((killed / "summary.json").read_text())
    assert summary["adamw_kernel"] == "fused"  # kept through the resume
    assert summary["precision_used"] == precision_used(torch.device("cpu"), "auto")  # what auto meant here
    # starting again without --resume would silently overwrite: refused with a clear message
    again = _distill(_args(teacher_dir, cc100_dir, killed))
    assert again.returncode == 2 and "pass --resume" in again.stderr
    # resuming a finished run with the same configuration trains nothing and returns its model
    finished = _distill(_args(teacher_dir, cc100_dir, killed, extra=["--resume"]))
    assert finished.returncode == 0 and "already trained" in finished.stderr
    assert [r["loss"] for r in read_jsonl(log_path)] == expected


def test_retrieval_probe_logs_a_curve_without_changing_training(tmp_path, teacher_dir, cc100_dir, data_dir, run_cli):
    plain, probed = tmp_path / "plain", tmp_path / "probed"
    assert run_cli("mminilm.distill", *_args(teacher_dir, cc100_dir, plain, steps=8)).returncode == 0
    result = run_cli("mminilm.distill", *_args(teacher_dir, cc100_dir, probed, steps=8,
                            extra=["--probe-every", "4", "--probe-sentences", "20", "--probe-data", str(data_dir)]))
    assert result.returncode == 0, result.stderr[-3000:]
    log = read_jsonl(probed / "train_log.jsonl")
    probes = [(r["step"], r["model"]) for r in log if r.get("probe") == "retrieval"]
    assert probes == [(0, "teacher"), (0, "student"), (4, "student"), (8, "student")]
    first = next(r for r in log if r.get("probe"))
    assert set(first["languages"]) == {"sw"} and first["sentences"] == 20  # sw is the run's only XNLI language
    # probing embeds in eval mode without gradients or random numbers: the same losses and weights
    assert ([r["loss"] for r in log if "loss" in r] == [r["loss"] for r in read_jsonl(plain / "train_log.jsonl")])
    a = XLMRobertaForMaskedLM.from_pretrained(plain / "model").state_dict()
    b = XLMRobertaForMaskedLM.from_pretrained(probed / "model").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the report's curve reads exactly these records
    from eval.report import curve_chart, probe_curve

    curve = probe_curve(probed / "train_log.jsonl")
    assert [p["step"] for p in curve["student"]] == [0, 4, 8] and curve["teacher"] == first["average"]
    curve_chart(curve, tmp_path / "curve.png")
    assert (tmp_path / "curve.png").stat().st_size > 1000


@pytest.mark.slow
def test_torchrun_two_processes_stay_in_sync(tmp_path, teacher_dir, cc100_dir):
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
               "-m", "mminilm.distill", *_args(teacher_dir, cc100_dir, out, steps=8)]
    result = subprocess.run(command, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = out / "checkpoints" / (out / "checkpoints" / "latest").read_text().strip()
    rank0 = torch.load(checkpoint / "rank0.pt", weights_only=False)
    rank1 = torch.load(checkpoint / "rank1.pt", weights_only=False)
    assert rank0["param_checksum"] == rank1["param_checksum"]
    trainer_state = torch.load(checkpoint / "trainer.pt", weights_only=False)
    assert sum(float(v.double().sum()) for v in trainer_state["student"].values()) != 0
    # each rank read its own slice of the data
    assert rank0["data"]["sampler"]["rank"] != rank1["data"]["sampler"]["rank"]
    assert rank0["data"]["packers"] != rank1["data"]["packers"]
    log = read_jsonl(out / "train_log.jsonl")
    assert len(log) == 8 and log[0]["tokens_per_s"] > 0


def test_bad_options_fail_early_with_names(tmp_path, teacher_dir, cc100_dir, run_cli):
    result = run_cli("mminilm.distill", *["--teacher", str(teacher_dir), "--corpus", str(tmp_path / "missing"), "--output-dir", str(tmp_path / "o")])
    assert result.returncode == 2 and "--corpus" in result.stderr and "not a directory" in result.stderr
    result = run_cli("mminilm.distill", *_args(teacher_dir, cc100_dir, tmp_path / "o2", extra=["--languages", "xx"]))
    assert result.returncode == 2 and "languages ['xx'] not found" in result.stderr
    result = run_cli("mminilm.distill", *_args(teacher_dir, cc100_dir, tmp_path / "o3", extra=["--student-heads", "2"]))
    assert result.returncode == 2 and "equal attention head counts" in result.stderr
    result = run_cli("mminilm.distill", *_args(teacher_dir, cc100_dir, tmp_path / "o4",
                                               extra=["--objective", "mlm", "--hidden-weight", "1"]))
    assert result.returncode == 2 and "--hidden-weight shape minilm/minilmv2, not --objective mlm" in result.stderr
    result = run_cli("mminilm.distill", *_args(teacher_dir, cc100_dir, tmp_path / "o5",
                                               extra=["--distil-layers", "uniform", "--teacher-layer", "1"]))
    assert result.returncode == 2 and "--distil-layers uniform pairs every student layer" in result.stderr
