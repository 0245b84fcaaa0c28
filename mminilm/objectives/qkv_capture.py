"""Capture one layer's Q/K/V projections and stop the forward pass right there.

Why not `output_attentions=True`: it forces eager attention in *every* layer, materialises
(batch, heads, seq, seq) maps for all of them, and the model still runs the layers above and
the LM head. Distillation needs only the Q, K and V projections of a single layer: we hook the
three `nn.Linear` modules of that layer and abort the forward as soon as V is computed, so
everything below keeps its fast (SDPA) attention and nothing above is computed.
"""

from __future__ import annotations

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
    attention = _self_attention(encoder_layers(model)[layer_index])
    captured = CapturedQKV()

    def keep(name: str, stop: bool):
        def hook(_module: nn.Module, _inputs, output: torch.Tensor):
            setattr(captured, name, output)
            if stop:
                raise _StopForward
        return hook

    handles = [
        attention.query.register_forward_hook(keep("query", stop=False)),
        attention.key.register_forward_hook(keep("key", stop=False)),
        attention.value.register_forward_hook(keep("value", stop=True)),
    ]
    base = getattr(model, "base_model", model)
    try:
        base(input_ids=input_ids, attention_mask=attention_mask)
    except _StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return captured.as_tuple()
