"""What a student costs: parameters, FLOPs per token and measured encode throughput.

Parameters are split into embeddings (the 250k-piece multilingual vocabulary dominates small
students: XLM-R-base has 192M embedding vs 86M Transformer parameters) and Transformer layers,
because only the latter set the speed.

FLOPs per token of one forward pass over a sequence of n tokens (a multiply-add counts 2):
per layer, Q/K/V/output projections 8·h², feed-forward 4·h·i, attention scores and the
weighted sum of values 4·n·h; times L layers. Embedding look-ups, LayerNorms, softmax and
biases are O(h) per token and left out.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from transformers import AutoModel, AutoTokenizer
from transformers.utils import logging as hf_logging


@dataclass
class ModelCost:
    model: str
    layers: int
    hidden: int
    heads: int
    intermediate: int
    embedding_parameters: int
    transformer_parameters: int
    flops_per_token: float
    sequence_length: int

    def as_dict(self) -> dict:
        return asdict(self)


def flops_per_token(layers: int, hidden: int, intermediate: int, sequence_length: int) -> float:
    return float(layers * (8 * hidden * hidden + 4 * hidden * intermediate + 4 * sequence_length * hidden))


def _load_encoder(model_dir: str):
    """The bare encoder; an LM head or missing pooler in the checkpoint is expected, not news."""
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return AutoModel.from_pretrained(model_dir, add_pooling_layer=False)
    finally:
        hf_logging.set_verbosity(verbosity)


def model_cost(model_dir: str, sequence_length: int = 128) -> ModelCost:
    model = _load_encoder(model_dir)
    config = model.config
    embedding = sum(p.numel() for p in model.embeddings.parameters())
    transformer = sum(p.numel() for p in model.encoder.parameters())
    return ModelCost(
        model=str(model_dir), layers=config.num_hidden_layers, hidden=config.hidden_size,
        heads=config.num_attention_heads, intermediate=config.intermediate_size, embedding_parameters=embedding,
        transformer_parameters=transformer, sequence_length=sequence_length,
        flops_per_token=flops_per_token(config.num_hidden_layers, config.hidden_size, config.intermediate_size,
                                        sequence_length),
    )


@torch.inference_mode()
def encode_throughput(model_dir: str, sentences: Sequence[str], batch_size: int = 32, max_length: int = 128,
                      repeats: int = 5, device: str = "cpu") -> dict[str, float]:
    """Sentences per second encoding `sentences` (median over `repeats` timed passes, after one warm-up)."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = _load_encoder(model_dir).to(device).eval()
    batches = [tokenizer(list(sentences[i: i + batch_size]), padding=True, truncation=True, max_length=max_length,
                         return_tensors="pt").to(device) for i in range(0, len(sentences), batch_size)]

    def one_pass() -> float:
        start = time.perf_counter()
        for batch in batches:
            model(**batch)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start

    one_pass()
    timings = [one_pass() for _ in range(repeats)]
    median = statistics.median(timings)
    return {"sentences_per_s": len(sentences) / median, "median_s": median, "runs_s": timings,
            "sentences": len(sentences), "batch_size": batch_size, "max_length": max_length,
            "threads": torch.get_num_threads()}


def compare(student_dir: str, teacher_dir: str | None, sentences: Sequence[str], repeats: int = 5) -> dict:
    """Costs of both models and the student's measured speed-up, on the same inputs and machine."""
    result = {"student": model_cost(student_dir).as_dict()}
    result["student"]["throughput"] = encode_throughput(student_dir, sentences, repeats=repeats)
    if teacher_dir:
        result["teacher"] = model_cost(teacher_dir).as_dict()
        result["teacher"]["throughput"] = encode_throughput(teacher_dir, sentences, repeats=repeats)
        result["speedup"] = (result["student"]["throughput"]["sentences_per_s"]
                             / result["teacher"]["throughput"]["sentences_per_s"])
        result["flops_ratio"] = result["teacher"]["flops_per_token"] / result["student"]["flops_per_token"]
    return result
