"""Atomic, resumable training checkpoints.

Layout: `OUT/checkpoints/step-0000100/` holds `trainer.pt` (student, optimizer, scheduler, step)
and one `rank{r}.pt` per process (its RNG states and data-stream position, which differ by
rank); `OUT/checkpoints/latest` names the newest complete one. A checkpoint dir is assembled
under a temporary name and renamed into place only when every rank has written its file, and
`latest` is replaced atomically, so a SIGKILL at any moment leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mminilm.training.atomic import atomic_write_file
from mminilm.training.distributed import DistributedContext, barrier

KEEP_LAST = 2


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _torch_save(obj: Any, path: Path) -> None:
    atomic_write_file(path, lambda tmp: torch.save(obj, tmp))


def save_checkpoint(root: Path, step: int, trainer_state: dict[str, Any], rank_state: dict[str, Any],
                    context: DistributedContext) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:07d}"
    staging = root / f".step-{step:07d}.partial"
    if context.is_main:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    barrier(context)
    _torch_save(rank_state, staging / f"rank{context.rank}.pt")
    barrier(context)
    if context.is_main:
        _torch_save(trainer_state, staging / "trainer.pt")
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
        atomic_write_file(root / "latest", lambda tmp: tmp.write_text(final.name + "\n"))
        older = [p for p in complete_checkpoints(root) if p != final]  # never the one just written
        for old in older[: len(older) - (KEEP_LAST - 1)]:
            shutil.rmtree(old, ignore_errors=True)
    barrier(context)
    return final


def _step_of(path: Path) -> int | None:
    try:
        return int(path.name.removeprefix("step-"))
    except ValueError:
        return None


def complete_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoint dirs (trainer.pt is written last), oldest first by step number."""
    found = [p for p in root.glob("step-*") if p.is_dir() and _step_of(p) is not None and (p / "trainer.pt").is_file()]
    return sorted(found, key=_step_of)


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint, found by reading the step folders themselves: the `latest`
    pointer is written for people and may be missing or stale."""
    complete = complete_checkpoints(root)
    return complete[-1] if complete else None


def load_checkpoint(path: Path, context: DistributedContext) -> tuple[dict[str, Any], dict[str, Any]]:
    rank_file = path / f"rank{context.rank}.pt"
    if not rank_file.is_file():
        raise FileNotFoundError(f"{rank_file} is missing: was the checkpoint written with a different number of processes?")
    trainer_state = torch.load(path / "trainer.pt", map_location="cpu", weights_only=False)
    rank_state = torch.load(rank_file, map_location="cpu", weights_only=False)
    return trainer_state, rank_state
