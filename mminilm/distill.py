"""`python -m mminilm.distill`: distil a teacher into a student (or train a baseline) on a CC-100 corpus.

Single process:   python -m mminilm.distill --teacher xlm-roberta-base --corpus /data/cc100 --output-dir runs/x
Many processes:   torchrun --nproc_per_node 8 -m mminilm.distill ...   (each rank reads its own slice)
"""

from __future__ import annotations

import sys

from mminilm.cli import parse_config
from mminilm.training.config import TrainConfig
from mminilm.training.trainer import train


def main(argv: list[str] | None = None) -> int:
    config = parse_config(argv, TrainConfig, prog="python -m mminilm.distill", description=__doc__)
    try:
        model_dir = train(config)
    except (ValueError, FileNotFoundError, FileExistsError, OSError, FloatingPointError, IndexError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(model_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
