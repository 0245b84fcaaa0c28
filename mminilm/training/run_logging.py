"""Run logs: a JSONL line per logged step (machine-readable), a plain log for people, optional TensorBoard."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from mminilm.training.atomic import atomic_write_file


def setup_text_logger(output_dir: Path, is_main: bool) -> logging.Logger:
    logger = logging.getLogger("mminilm")
    logger.setLevel(logging.INFO)
    for handler in logger.handlers:  # a previous run in this process (tests, notebooks): close its train.log
        handler.close()
    logger.handlers.clear()
    logger.propagate = False
    if is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
        for handler in (logging.FileHandler(output_dir / "train.log"), logging.StreamHandler()):
            handler.setFormatter(formatter)
            logger.addHandler(handler)
    else:
        logger.addHandler(logging.NullHandler())
    return logger


class JsonlLog:
    """Append-only JSONL; on resume, lines past the checkpoint's step are dropped first."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path = path
        self.enabled = enabled

    def truncate_after(self, step: int) -> None:
        if not (self.enabled and self.path.is_file()):
            return
        kept = [line for line in self.path.read_text().splitlines() if line.strip() and json.loads(line).get("step", 0) <= step]
        atomic_write_file(self.path, lambda tmp: tmp.write_text("".join(line + "\n" for line in kept)))

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a") as handle:
                handle.write(json.dumps(record) + "\n")
                handle.flush()


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def tensorboard_writer(output_dir: Path, enabled: bool):
    """A SummaryWriter when tensorboard is installed and wanted, else None."""
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(output_dir / "tensorboard"))
