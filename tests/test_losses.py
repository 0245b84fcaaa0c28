"""MiniLM / MiniLMv2 objectives against a naive reference built from transformers' own eager attentions."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import XLMRobertaModel

from conftest import small_xlmr_config
from mminilm import minilm_loss, minilmv2_loss
from mminilm.objectives.qkv_capture import run_until_qkv

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Der schnelle braune Fuchs springt über den faulen Hund, sagte sie gestern Abend.",
    "你好",
    "Быстрая коричневая лиса прыгает через ленивую собаку.",
]


def _model(vocab_size: int, hidden: int, heads: int, layers: int = 2, seed: int = 0) -> XLMRobertaModel:
    torch.manual_seed(seed)
    # A wide init makes attention peaky, so teacher and student really differ (std 0.02 is near-uniform).
    config = small_xlmr_config(vocab_size, hidden_size=hidden, num_layers=layers, num_heads=heads, initializer_range=0.3)
    config._attn_implementation = "eager"
    return XLMRobertaModel(config).eval()


def _naive_reference(teacher, student, tokenizer, sentences, value_relation: bool = True) -> torch.Tensor:
    """The loss a user would write: per sentence, unpadded, from `output_attentions` and a V hook."""
    total, tokens = torch.tensor(0.0), 0
    for sentence in sentences:
        ids = tokenizer(sentence, return_tensors="pt")["input_ids"]
        per_model = []
        for model in (teacher, student):
            values = {}
            last = model.encoder.layer[-1].attention.self
            handle = last.value.register_forward_hook(lambda _m, _i, out: values.setdefault("v", out))
            out = model(input_ids=ids, output_attentions=True)
            handle.remove()
            attention = out.attentions[-1][0]  # (heads, seq, seq), transformers' own softmax(QKᵀ/√d)
            heads = model.config.num_attention_heads
            v = values["v"][0].view(ids.shape[1], heads, -1).transpose(0, 1)  # (heads, seq, d)
            value_relation_probs = torch.softmax(v @ v.transpose(-1, -2) / math.sqrt(v.shape[-1]), dim=-1)
            per_model.append((attention, value_relation_probs))
        (t_att, t_val), (s_att, s_val) = per_model
        kl = (t_att * (t_att.log() - s_att.log())).sum(-1).mean(0)  # (seq,)
        if value_relation:
            kl = kl + (t_val * (t_val.log() - s_val.log())).sum(-1).mean(0)
        total = total + kl.sum()
        tokens += ids.shape[1]
    return total / tokens


def _batch_qkv(model, batch):
    return run_until_qkv(model, len(model.encoder.layer) - 1, batch["input_ids"], batch["attention_mask"])


def test_minilm_matches_naive_eager_reference_on_real_tokens(tokenizer):
    teacher = _model(len(tokenizer), hidden=64, heads=4, layers=3, seed=1)
    student = _model(len(tokenizer), hidden=32, heads=4, layers=2, seed=2)
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    assert (batch["attention_mask"] == 0).any(), "the batch must contain padding for this test to mean anything"
    with torch.no_grad():
        ours = minilm_loss(_batch_qkv(teacher, batch), _batch_qkv(student, batch), batch["attention_mask"], num_heads=4)
        reference = _naive_reference(teacher, student, tokenizer, SENTENCES)
        attention_only = minilm_loss(_batch_qkv(teacher, batch), _batch_qkv(student, batch), batch["attention_mask"],
                                     num_heads=4, relations=("attention",))
        reference_attention_only = _naive_reference(teacher, student, tokenizer, SENTENCES, value_relation=False)
    assert ours.item() > 1e-3
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(attention_only, reference_attention_only, rtol=1e-4, atol=1e-6)


def test_minilmv2_matches_naive_reference_with_different_heads_and_widths(tokenizer):
    teacher = _model(len(tokenizer), hidden=64, heads=8, seed=3)
    student = _model(len(tokenizer), hidden=48, heads=3, seed=4)
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    relation_heads = 4
    with torch.no_grad():
        ours = minilmv2_loss(_batch_qkv(teacher, batch), _batch_qkv(student, batch), batch["attention_mask"], relation_heads)
        total, tokens = torch.tensor(0.0), 0
        for index in range(len(SENTENCES)):
            length = int(batch["attention_mask"][index].sum())
            t_qkv = [x[index, :length] for x in _batch_qkv(teacher, batch)]
            s_qkv = [x[index, :length] for x in _batch_qkv(student, batch)]
            for t, s in zip(t_qkv, s_qkv):
                def rel(a):
                    heads = a.view(length, relation_heads, -1).transpose(0, 1)
                    return torch.softmax(heads @ heads.transpose(-1, -2) / math.sqrt(heads.shape[-1]), dim=-1)
                pt, ps = rel(t), rel(s)
                total = total + (pt * (pt.log() - ps.log())).sum(-1).mean(0).sum()
            tokens += length
        reference = total / tokens
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-6)


def _random_qkv(batch, seq, hidden, seed, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(batch, seq, hidden, generator=generator).to(dtype) for _ in range(3))


@pytest.mark.parametrize("loss_fn,heads", [(minilm_loss, 4), (minilmv2_loss, 2)])
def test_extra_padding_never_changes_the_loss(loss_fn, heads):
    mask = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0]])
    teacher, student = _random_qkv(2, 6, 16, 0), _random_qkv(2, 6, 8, 1)
    base = loss_fn(teacher, student, mask, heads)

    def pad(qkv, extra):  # garbage in padded positions must not matter either
        return tuple(torch.cat([x, 100 * torch.randn(x.shape[0], extra, x.shape[2])], dim=1) for x in qkv)

    padded_mask = torch.cat([mask, torch.zeros(2, 5, dtype=mask.dtype)], dim=1)
    padded = loss_fn(pad(teacher, 5), pad(student, 5), padded_mask, heads)
    torch.testing.assert_close(base, padded, rtol=1e-5, atol=1e-6)
    # and each sequence alone, weighted by its real tokens, gives the same token-level mean
    parts = [loss_fn(tuple(x[i:i + 1, :n] for x in teacher), tuple(x[i:i + 1, :n] for x in student),
                     mask[i:i + 1, :n], heads) * n for i, n in enumerate((5, 3))]
    torch.testing.assert_close(base, sum(parts) / 8, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("loss_fn,heads", [(minilm_loss, 4), (minilmv2_loss, 8)])
def test_identical_teacher_and_student_give_zero(loss_fn, heads):
    qkv = _random_qkv(3, 7, 32, 5)
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3, [1] * 2 + [0] * 5])
    assert loss_fn(qkv, qkv, mask, heads).abs().item() < 1e-6
    other = _random_qkv(3, 7, 32, 6)
    assert loss_fn(qkv, other, mask, heads).item() > 1e-2


def test_gradients_reach_the_student_only():
    teacher = tuple(x.requires_grad_() for x in _random_qkv(2, 5, 16, 0))
    student = tuple(x.requires_grad_() for x in _random_qkv(2, 5, 8, 1))
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]])
    for loss in (minilm_loss(teacher, student, mask, 4), minilmv2_loss(teacher, student, mask, 2)):
        loss.backward()
    assert all(t.grad is None for t in teacher)
    assert all(s.grad is not None and s.grad.abs().sum() > 0 for s in student)
    # padded student positions receive no gradient
    assert all(s.grad[1, 2:].abs().sum() == 0 for s in student)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_fully_masked_rows_and_half_precision_stay_finite(dtype):
    teacher, student = _random_qkv(2, 4, 16, 0, dtype), _random_qkv(2, 4, 16, 1, dtype)
    mask = torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]])  # second sequence entirely padding
    for loss in (minilm_loss(teacher, student, mask, 4), minilmv2_loss(teacher, student, mask, 4)):
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
    reference = minilm_loss(tuple(x.float() for x in teacher), tuple(x.float() for x in student), mask, 4)
    torch.testing.assert_close(minilm_loss(teacher, student, mask, 4), reference, rtol=1e-5, atol=1e-6)
    nothing = torch.zeros(2, 4, dtype=torch.long)
    assert minilm_loss(teacher, student, nothing, 4).item() == 0.0


def test_bad_shapes_are_named():
    mask = torch.ones(2, 5)
    with pytest.raises(ValueError, match="not divisible by 3 heads"):
        minilm_loss(_random_qkv(2, 5, 16, 0), _random_qkv(2, 5, 16, 1), mask, 3)
    with pytest.raises(ValueError, match="does not match attention_mask"):
        minilm_loss(_random_qkv(2, 5, 16, 0), _random_qkv(2, 4, 16, 1), mask, 4)
    with pytest.raises(ValueError, match="subset"):
        minilm_loss(_random_qkv(2, 5, 16, 0), _random_qkv(2, 5, 16, 1), mask, 4, relations=("query",))
