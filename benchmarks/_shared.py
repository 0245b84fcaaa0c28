"""What several benchmarks share: the e5-small preset's model shapes and the JSON report they write.

The benchmarks are scripts (`python benchmarks/NAME.py`), so this module is imported by its file
name from the same folder.
"""

from __future__ import annotations

import json
import platform
from typing import Any

import torch
from transformers import BertConfig

TRIMMED_E5_VOCAB = 117_080  # the e5-small teacher trimmed to the 15 XNLI languages (README, Vocabulary trimming)


def e5_small_config(layers: int, **extra: Any) -> BertConfig:
    """multilingual-e5-small's shape (hidden 384, 12 heads, FFN 1536) with the trimmed vocabulary."""
    return BertConfig(vocab_size=TRIMMED_E5_VOCAB, hidden_size=384, num_hidden_layers=layers, num_attention_heads=12,
                      intermediate_size=1536, pad_token_id=1, **extra)


def write_report(name: str, results: dict[str, Any], output: str | None, **facts: Any) -> None:
    """Print the benchmark's JSON (torch version, threads, machine, `facts`, results) and, with
    `output`, also write it there."""
    report = {"benchmark": name, "torch": torch.__version__, "threads": torch.get_num_threads(),
              "machine": platform.processor() or platform.machine(), **facts, "results": results}
    text = json.dumps(report, indent=2)
    print(text)
    if output:
        with open(output, "w") as handle:
            handle.write(text + "\n")
