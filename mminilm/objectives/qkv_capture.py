"""Capture the Q/K/V projections (and outputs) of chosen layers and stop the forward pass right there.

Why not `output_attentions=True`: it forces eager attention in *every* layer, materialises
(batch, heads, seq, seq) maps for all of them, and the model still runs the layers above and
the LM head. Distillation needs only the Q, K and V projections of the distilled layers (and, for
the hidden-state term, their outputs): we hook those modules and abort the forward as soon as the
last of them is computed, so everything keeps its fast (SDPA) attention and nothing above runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import PreTrainedModel


class _StopForward(Exception):
    """Raised from the V-projection hook once Q, K and V are captured."""


def encoder_layers(model: PreTrainedModel) -> nn.ModuleList:
    """The Transformer layers of a BERT/RoBERTa/XLM-R model (base or with a task head)."""
    base = getattr(model, "base_model", model)
    encoder = getattr(base, "encoder", None)
    layers = getattr(encoder, "layer", None)
    if not isinstance(layers, nn.ModuleList):
        raise TypeError(
            f"{type(model).__name__} is not a BERT/RoBERTa/XLM-R-family model: no encoder.layer list found"
        )
    return layers


def resolve_layer_index(model: PreTrainedModel, layer: int, role: str) -> int:
    """Turn a Python-style index (-1 = last) into 0..L-1, with a clear error when out of range."""
    num_layers = len(encoder_layers(model))
    index = layer + num_layers if layer < 0 else layer
    if not 0 <= index < num_layers:
        raise IndexError(f"{role}_layer={layer} is out of range for a {num_layers}-layer {role} (valid: {-num_layers}..{num_layers - 1})")
    return index


def evenly_spaced_layers(teacher_layers: int, student_layers: int) -> list[int]:
    """The teacher layer each student layer stands for: every k-th, k = teacher // student layers,
    taking k-1, 2k-1, ..., so the last student layer stands for the last teacher layer when k divides.

    One mapping for both uses: `student_init=teacher` copies these layers, and
    `distil_layers=uniform` makes each student layer mimic the one it was copied from.
    """
    if not 0 < student_layers <= teacher_layers:
        raise ValueError(f"a {student_layers}-layer student cannot stand for layers of a {teacher_layers}-layer teacher "
                         "one to one: it needs 1..teacher layers")
    step = teacher_layers // student_layers
    return [(index + 1) * step - 1 for index in range(student_layers)]


def _self_attention(layer: nn.Module) -> nn.Module:
    attention = getattr(getattr(layer, "attention", None), "self", None)
    if attention is None or not all(hasattr(attention, name) for name in ("query", "key", "value")):
        raise TypeError(f"{type(layer).__name__} has no attention.self.query/key/value projections to capture")
    return attention


@dataclass
class CapturedQKV:
    """Q, K, V projection outputs of one layer, each (batch, seq, hidden)."""

    query: torch.Tensor | None = None
    key: torch.Tensor | None = None
    value: torch.Tensor | None = None
    handles: list = field(default_factory=list)

    def as_tuple(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.query is None or self.key is None or self.value is None:
            raise RuntimeError("Q/K/V were not captured: the forward pass never reached the distilled layer")
        return self.query, self.key, self.value


def run_until_qkv(model: PreTrainedModel, layer_index: int, input_ids: torch.Tensor,
                  attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run `model`'s encoder up to layer `layer_index`'s V projection and return its (q, k, v).

    Only the base model is called (no task/LM head). The forward is aborted by an exception from
    the V hook: layers above `layer_index`, and the attention/FFN of that layer itself, never run.
    """
    qkv, _ = run_capturing(model, [layer_index], (), input_ids, attention_mask)
    return qkv[layer_index]


def run_capturing(model: PreTrainedModel, qkv_layers: Sequence[int], output_layers: Sequence[int],
                  input_ids: torch.Tensor, attention_mask: torch.Tensor,
                  ) -> tuple[dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]], dict[int, torch.Tensor]]:
    """One forward of `model`'s encoder that keeps the (q, k, v) of every layer in `qkv_layers`
    and the output hidden states (batch, seq, hidden) of every layer in `output_layers`.

    The forward stops as soon as the last thing asked for is captured, so nothing above it runs
    (for a last-layer Q/K/V target, not even that layer's attention and FFN).
    """
    layers = encoder_layers(model)
    qkv = {index: CapturedQKV() for index in qkv_layers}
    outputs: dict[int, torch.Tensor] = {}
    last_qkv = max(qkv_layers, default=-1)
    last_output = max(output_layers, default=-1)
    stop_at_v = last_qkv > last_output  # else the stop is the last requested layer output

    def keep_projection(captured: CapturedQKV, name: str, stop: bool):
        def hook(_module: nn.Module, _inputs, output: torch.Tensor):
            setattr(captured, name, output)
            if stop:
                raise _StopForward
        return hook

    def keep_output(index: int):
        def hook(_module: nn.Module, _inputs, output):
            outputs[index] = output[0] if isinstance(output, tuple) else output
            if index == last_output and not stop_at_v:
                raise _StopForward
        return hook

    handles = []
    for index, captured in qkv.items():
        attention = _self_attention(layers[index])
        for name in ("query", "key", "value"):
            stop = stop_at_v and name == "value" and index == last_qkv
            handles.append(getattr(attention, name).register_forward_hook(keep_projection(captured, name, stop)))
    for index in output_layers:
        handles.append(layers[index].register_forward_hook(keep_output(index)))
    base = getattr(model, "base_model", model)
    try:
        base(input_ids=input_ids, attention_mask=attention_mask)
    except _StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
    missing = [index for index in output_layers if index not in outputs]
    if missing:
        raise RuntimeError(f"layer outputs {missing} were not captured: the forward pass never reached them")
    return {index: captured.as_tuple() for index, captured in qkv.items()}, outputs
