"""SelfAttentionDistillation on real transformers models with the real tokenizer."""

from __future__ import annotations

import pytest
import torch
from transformers import XLMRobertaForMaskedLM, XLMRobertaModel

from conftest import small_xlmr_config
from mminilm import SelfAttentionDistillation, minilm_loss, minilmv2_loss
from mminilm.objectives.qkv_capture import evenly_spaced_layers, run_capturing

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


def test_run_capturing_stops_after_the_last_request_and_returns_real_layer_outputs(tokenizer):
    model = _masked_lm(len(tokenizer), 32, 4, 3, seed=3).eval()
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    ran: list[int] = []
    for index, layer in enumerate(model.roberta.encoder.layer):
        layer.register_forward_hook(lambda *_a, index=index: ran.append(index))
    with torch.no_grad():
        reference = model.roberta(**batch, output_hidden_states=True).hidden_states
        ran.clear()
        qkv, outputs = run_capturing(model, [0], [], batch["input_ids"], batch["attention_mask"])
        assert ran == [] and set(qkv) == {0} and outputs == {}  # stopped at layer 0's V projection
        qkv, outputs = run_capturing(model, [0, 1], [1], batch["input_ids"], batch["attention_mask"])
    assert ran == [0, 1]  # layer 1's output was wanted: it ran to its end, layer 2 never ran
    torch.testing.assert_close(outputs[1], reference[2])  # hidden_states[0] is the embedding output
    assert len(qkv[1]) == 3 and qkv[1][0].shape == reference[1].shape


def test_uniform_layer_pairs_match_each_student_layer_to_the_teacher_layer_it_was_copied_from(tokenizer):
    """A student copied from every 2nd teacher layer, fed the teacher's own input to each layer,
    would match exactly; here the mapping is checked on a student that is the teacher itself
    (every relation and hidden term zero) and on the pairs a 2-layer student gets."""
    teacher = _masked_lm(len(tokenizer), 32, 4, 4, seed=0)
    twin = _masked_lm(len(tokenizer), 32, 4, 4, seed=9)
    twin.load_state_dict(teacher.state_dict())
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    same = SelfAttentionDistillation(teacher, twin, layer_map="uniform", hidden_weight=1.0).eval()
    assert same.layer_pairs == [(0, 0), (1, 1), (2, 2), (3, 3)]
    components = same.relation_losses(batch["input_ids"], batch["attention_mask"])
    assert set(components) == {"attention", "value", "hidden"}
    assert all(value.abs().item() < 1e-5 for value in components.values()), components
    shallow = SelfAttentionDistillation(teacher, _masked_lm(len(tokenizer), 32, 4, 2, seed=1), layer_map="uniform")
    assert shallow.layer_pairs == [(1, 0), (3, 1)]
    assert evenly_spaced_layers(12, 6) == [1, 3, 5, 7, 9, 11] and evenly_spaced_layers(12, 4) == [2, 5, 8, 11]


def test_one_pair_gives_the_same_loss_under_either_layer_map(tokenizer):
    teacher, student = _masked_lm(len(tokenizer), 64, 4, 2, seed=0), _masked_lm(len(tokenizer), 32, 4, 1, seed=1)
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    last = SelfAttentionDistillation(teacher, student, teacher_layer=1).eval()(batch["input_ids"], batch["attention_mask"])
    # a 1-layer student under "uniform" is paired with the teacher's last layer: the same single pair
    uniform = SelfAttentionDistillation(teacher, student, layer_map="uniform").eval()
    assert uniform.layer_pairs == [(1, 0)]
    torch.testing.assert_close(uniform(batch["input_ids"], batch["attention_mask"]), last)


def test_hidden_weight_trains_the_last_layer_s_ffn_that_relations_never_reach(tokenizer):
    teacher = _masked_lm(len(tokenizer), 64, 4, 2, seed=0)
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    for weight in (0.0, 2.0):
        student = _masked_lm(len(tokenizer), 32, 4, 2, seed=1)
        distill = SelfAttentionDistillation(teacher, student, hidden_weight=weight).train()
        distill(batch["input_ids"], batch["attention_mask"]).backward()
        ffn = student.roberta.encoder.layer[-1].output.dense.weight.grad
        if weight:
            assert ffn is not None and ffn.abs().sum() > 0
            assert set(distill.last_components) == {"attention", "value", "hidden"}
            projection = distill.projections[0]  # widths 32 -> 64: a learned map, trained with the student
            assert isinstance(projection, torch.nn.Linear) and projection.weight.grad.abs().sum() > 0
        else:
            assert ffn is None


def test_layer_map_errors(tokenizer):
    teacher = _masked_lm(len(tokenizer), 32, 4, 2)
    with pytest.raises(ValueError, match="layer_map must be one of"):
        SelfAttentionDistillation(teacher, _masked_lm(len(tokenizer), 32, 4, 1), layer_map="every")
    with pytest.raises(ValueError, match="teacher_layer/student_layer choose the one pair"):
        SelfAttentionDistillation(teacher, _masked_lm(len(tokenizer), 32, 4, 1), layer_map="uniform", teacher_layer=0)
    with pytest.raises(ValueError, match="cannot stand for layers"):
        SelfAttentionDistillation(teacher, _masked_lm(len(tokenizer), 32, 4, 3), layer_map="uniform")
    with pytest.raises(ValueError, match="hidden_weight must be >= 0"):
        SelfAttentionDistillation(teacher, _masked_lm(len(tokenizer), 32, 4, 1), hidden_weight=-1)
