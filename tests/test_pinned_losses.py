"""Pinned objective values of a fixed tiny run: a silent change in any objective shows up here.

Two seeded BERT models (teacher L2-H32-A4, student L1-H16-A4: widths differ, as MiniLM allows),
one fixed batch with padding, three AdamW steps. The numbers were recorded from this code when the
objectives had been cross-checked against independent references (tests/test_losses.py); if one
changes on purpose, re-record it and say why in the commit. Tolerance: float32 kernels differ
slightly across CPUs (AVX2 vs AVX-512), never by 1e-4 relative.
"""

from __future__ import annotations

import pytest
import torch
from transformers import BertConfig, BertModel

from mminilm.objectives.registry import build_objective

PINNED = {
    "minilm": [(2.8230462, {"attention": 1.3449472, "value": 1.4780990}),
               (2.5068169, {"attention": 1.1569494, "value": 1.3498676}),
               (2.2279844, {"attention": 1.0971148, "value": 1.1308697})],
    "attention-only": [(1.3449472, {"attention": 1.3449472}), (1.1371678, {"attention": 1.1371678}),
                       (1.0587265, {"attention": 1.0587265})],
    "minilmv2": [(4.4614105, {"query": 1.4315443, "key": 1.5483134, "value": 1.4815530}),
                 (3.9417372, {"query": 1.2357556, "key": 1.3133157, "value": 1.3926659}),
                 (3.5032215, {"query": 1.0703315, "key": 1.1707964, "value": 1.2620937})],
    "hidden": [(1.1579503, {"hidden_mse": 1.1579503}), (0.9067190, {"hidden_mse": 0.9067190}),
               (0.7035179, {"hidden_mse": 0.7035179})],
}
SETTINGS = {"minilm": ("minilm", {}), "attention-only": ("minilm", {"relations": ("attention",)}),
            "minilmv2": ("minilmv2", {"relation_heads": 8}), "hidden": ("hidden", {})}


def _bert(hidden: int, layers: int) -> BertModel:
    return BertModel(BertConfig(vocab_size=50, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                                intermediate_size=2 * hidden, max_position_embeddings=32, initializer_range=0.3,
                                attn_implementation="eager"))


@pytest.mark.parametrize("variant", list(PINNED))
def test_three_steps_of_each_objective_reproduce_the_pinned_losses(variant):
    torch.manual_seed(0)
    teacher, student = _bert(32, 2), _bert(16, 1)
    input_ids = torch.randint(3, 50, (2, 12))
    attention_mask = torch.ones(2, 12, dtype=torch.long)
    attention_mask[1, 9:] = 0
    name, kwargs = SETTINGS[variant]
    objective = build_objective(name, student, teacher, None, torch.Generator().manual_seed(0), **kwargs)
    optimizer = torch.optim.AdamW(objective.trainable_parameters(), lr=1e-2)
    for expected_loss, expected_parts in PINNED[variant]:
        loss, parts = objective(input_ids, attention_mask)
        assert loss.item() == pytest.approx(expected_loss, rel=1e-4)
        assert {k: v.item() for k, v in parts.items()} == pytest.approx(expected_parts, rel=1e-4)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
