"""SelfAttentionDistillation on real transformers models with the real tokenizer."""

from __future__ import annotations

import pytest
import torch
from transformers import XLMRobertaForMaskedLM, XLMRobertaModel

from conftest import small_xlmr_config
from mminilm import SelfAttentionDistillation, minilm_loss, minilmv2_loss

SENTENCES = ["Hello world, this is a test.", "Hallo Welt.", "Привет, мир! Как дела у тебя сегодня?", "你好世界"]


def _masked_lm(vocab, hidden=64, heads=4, layers=3, seed=0):
    torch.manual_seed(seed)
    return XLMRobertaForMaskedLM(small_xlmr_config(vocab, hidden_size=hidden, num_heads=heads, num_layers=layers,
                                                   initializer_range=0.2))


def _qkv_from_full_eager_forward(model, layer, batch):
    """Q/K/V of `layer` from an ordinary full forward (eager attention, every layer and head run)."""
    attention = model.base_model.encoder.layer[layer].attention.self
    seen = {}
    handles = [getattr(attention, n).register_forward_hook(lambda _m, _i, out, n=n: seen.__setitem__(n, out))
               for n in ("query", "key", "value")]
    model.config._attn_implementation = "eager"
    with torch.no_grad():
        model(**batch)
    model.config._attn_implementation = "sdpa"
    for handle in handles:
        handle.remove()
    return seen["query"], seen["key"], seen["value"]


def test_loss_equals_functional_loss_on_full_forward(tokenizer):
    teacher, student = _masked_lm(len(tokenizer), 64, 4, 3, seed=0), _masked_lm(len(tokenizer), 32, 4, 2, seed=1)
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    distill = SelfAttentionDistillation(teacher, student, method="minilm", teacher_layer=1, student_layer=-1).eval()
    loss = distill(batch["input_ids"], batch["attention_mask"])
    expected = minilm_loss(_qkv_from_full_eager_forward(teacher, 1, batch),
                           _qkv_from_full_eager_forward(student, 1, batch), batch["attention_mask"], 4)
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-4, atol=1e-6)
    assert set(distill.last_components) == {"attention", "value"}
    assert abs(sum(distill.last_components.values()) - loss.item()) < 1e-5

    v2 = SelfAttentionDistillation(teacher, _masked_lm(len(tokenizer), 48, 3, 2, seed=2), method="minilmv2",
                                   num_relation_heads=8).eval()
    loss_v2 = v2(batch["input_ids"], batch["attention_mask"])
    expected_v2 = minilmv2_loss(_qkv_from_full_eager_forward(teacher, 2, batch),
                                _qkv_from_full_eager_forward(v2.student, 1, batch), batch["attention_mask"], 8)
    torch.testing.assert_close(loss_v2.detach(), expected_v2, rtol=1e-4, atol=1e-6)
    assert set(v2.last_components) == {"query", "key", "value"}



def test_a_packed_batch_without_padding_gives_the_masked_forward_s_loss(tokenizer):
    """Without padding the models run with no attention mask (SDPA may then use a fused kernel):
    the loss equals that of an ordinary eager forward given the all-ones mask."""
    teacher, student = _masked_lm(len(tokenizer), 64, 4, 3, seed=0), _masked_lm(len(tokenizer), 32, 4, 2, seed=1)
    batch = tokenizer(SENTENCES[:2], padding=True, return_tensors="pt")
    length = int(batch["attention_mask"].sum(1).min())  # cut to the shorter row: a block with no padding
    batch = {name: tensor[:, :length] for name, tensor in batch.items()}
    assert bool(batch["attention_mask"].all())
    loss = SelfAttentionDistillation(teacher, student).eval()(batch["input_ids"], batch["attention_mask"])
    expected = minilm_loss(_qkv_from_full_eager_forward(teacher, -1, batch),
                           _qkv_from_full_eager_forward(student, -1, batch), batch["attention_mask"], 4)
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-4, atol=1e-6)

def test_layers_above_and_lm_head_never_run_and_no_attention_maps(tokenizer):
    teacher, student = _masked_lm(len(tokenizer), seed=0), _masked_lm(len(tokenizer), 32, 4, 3, seed=1)
    fired: list[str] = []
    watch = {
        "teacher.layer2": teacher.roberta.encoder.layer[2],
        "teacher.layer1.attention.output": teacher.roberta.encoder.layer[1].attention.output,
        "teacher.lm_head": teacher.lm_head,
        "student.layer2": student.roberta.encoder.layer[2],
        "student.lm_head": student.lm_head,
    }
    for name, module in watch.items():
        module.register_forward_hook(lambda *_a, name=name: fired.append(name))
    seen_kwargs = []
    for layer in (*teacher.roberta.encoder.layer, *student.roberta.encoder.layer):
        layer.attention.self.register_forward_pre_hook(lambda _m, _a, kw: seen_kwargs.append(dict(kw)), with_kwargs=True)
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    distill = SelfAttentionDistillation(teacher, student, teacher_layer=1, student_layer=1)
    distill(batch["input_ids"], batch["attention_mask"]).backward()
    assert fired == []
    assert not any(kw.get("output_attentions") for kw in seen_kwargs)
    assert teacher.config._attn_implementation == "sdpa" and student.config._attn_implementation == "sdpa"


def test_gradients_reach_student_only_and_teacher_stays_in_eval(tokenizer):
    teacher, student = _masked_lm(len(tokenizer), seed=0), _masked_lm(len(tokenizer), 32, 4, 2, seed=1)
    distill = SelfAttentionDistillation(teacher, student).train()
    assert student.training and not teacher.training
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    distill(batch["input_ids"], batch["attention_mask"]).backward()
    assert all(p.grad is None for p in teacher.parameters())
    grads = [p.grad for n, p in student.named_parameters() if "encoder.layer.1.attention.self" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_training_steps_reduce_the_loss(tokenizer):
    teacher, student = _masked_lm(len(tokenizer), seed=0), _masked_lm(len(tokenizer), 32, 4, 2, seed=1)
    distill = SelfAttentionDistillation(teacher, student).train()
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    optimizer = torch.optim.AdamW(student.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = distill(batch["input_ids"], batch["attention_mask"])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_base_models_work_too(tokenizer):
    torch.manual_seed(0)
    teacher = XLMRobertaModel(small_xlmr_config(len(tokenizer), hidden_size=64, num_heads=4))
    student = XLMRobertaModel(small_xlmr_config(len(tokenizer), hidden_size=32, num_heads=4))
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    loss = SelfAttentionDistillation(teacher, student)(batch["input_ids"], batch["attention_mask"])
    assert torch.isfinite(loss) and loss.item() > 0


def test_clear_errors(tokenizer):
    vocab = len(tokenizer)
    teacher = _masked_lm(vocab, 64, 4, 3)
    with pytest.raises(ValueError, match="equal attention head counts"):
        SelfAttentionDistillation(teacher, _masked_lm(vocab, 48, 3, 2))
    with pytest.raises(ValueError, match="num_relation_heads=5 does not divide the teacher hidden size 64"):
        SelfAttentionDistillation(teacher, _masked_lm(vocab, 40, 4, 2), method="minilmv2", num_relation_heads=5)
    with pytest.raises(IndexError, match="teacher_layer=3 is out of range for a 3-layer teacher"):
        SelfAttentionDistillation(teacher, _masked_lm(vocab, 32, 4, 2), teacher_layer=3)
    with pytest.raises(IndexError, match="student_layer=-3"):
        SelfAttentionDistillation(teacher, _masked_lm(vocab, 32, 4, 2), student_layer=-3)
    with pytest.raises(ValueError, match="method must be one of"):
        SelfAttentionDistillation(teacher, _masked_lm(vocab, 32, 4, 2), method="tinybert")
