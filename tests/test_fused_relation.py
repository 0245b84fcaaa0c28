"""The fused, chunked relation KL equals the reference composition: values and gradients."""

from __future__ import annotations

import pytest
import torch

from mminilm.objectives.losses import minilm_relation_losses, minilmv2_relation_losses
from mminilm.objectives.relations import relation_kl


def _inputs(dtype=torch.float32, batch=3, seq=37, teacher_hidden=48, student_hidden=24, seed=0):
    generator = torch.Generator().manual_seed(seed)
    teacher = [torch.randn(batch, seq, teacher_hidden, generator=generator, dtype=dtype) for _ in range(3)]
    student = [torch.randn(batch, seq, student_hidden, generator=generator, dtype=dtype, requires_grad=True)
               for _ in range(3)]
    mask = torch.ones(batch, seq, dtype=torch.long)
    mask[1, 20:] = 0   # padding
    mask[2, :] = 0     # a fully padded row: contributes nothing, never NaN
    return teacher, student, mask


def _value_and_grads(path, chunked_rows=None, dtype=torch.float32):
    teacher, student, mask = _inputs(dtype)
    if chunked_rows is not None:
        import mminilm.objectives.fused_relation as fused

        loss = fused.chunked_relation_kl(teacher[0], teacher[1], student[0], student[1], mask, 4, chunk=chunked_rows)
        loss = loss + fused.chunked_relation_kl(teacher[2], teacher[2], student[2], student[2], mask, 4, chunk=chunked_rows)
    else:
        loss = (relation_kl(teacher[0], teacher[1], student[0], student[1], mask, 4, path)
                + relation_kl(teacher[2], teacher[2], student[2], student[2], mask, 4, path))
    loss.backward()
    return loss.detach(), [s.grad for s in student]


@pytest.mark.parametrize("chunk", [1, 5, 16, 64])
def test_fused_equals_reference_values_and_gradients(chunk):
    reference, reference_grads = _value_and_grads("reference")
    fused, fused_grads = _value_and_grads("fused", chunked_rows=chunk)
    assert torch.isfinite(fused) and fused > 0
    torch.testing.assert_close(fused, reference, rtol=1e-5, atol=1e-6)
    for a, b in zip(fused_grads, reference_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)
    assert all(float(g[2].abs().max()) == 0.0 for g in fused_grads)  # the fully padded sequence gets no gradient


def _float64_kl(t_left, t_right, s_left, s_right, mask, heads):
    """The definition, written out independently in float64: per head softmax(x yᵀ/√d) over real keys."""
    def log_probs(left, right):
        b, n, h = left.shape
        left = left.double().view(b, n, heads, h // heads).transpose(1, 2)
        right = right.double().view(b, n, heads, h // heads).transpose(1, 2)
        scores = left @ right.transpose(-1, -2) / (h // heads) ** 0.5
        scores = scores.masked_fill(~mask.bool()[:, None, None, :], float("-inf"))
        return scores - torch.logsumexp(scores, dim=-1, keepdim=True)

    teacher, student = log_probs(t_left, t_right), log_probs(s_left, s_right)
    real = mask.bool()
    p = teacher.exp()
    kl = torch.where(p > 0, p * (teacher - student), torch.zeros_like(p)).sum(-1)  # (b, heads, n)
    kl = torch.nan_to_num(kl)  # fully padded rows: all keys masked
    return (kl.mean(1) * real).sum() / real.sum()


def test_fused_matches_a_float64_reference():
    teacher, student, mask = _inputs()
    student64 = [s.detach().double().requires_grad_(True) for s in student]
    reference = (_float64_kl(teacher[0], teacher[1], student64[0], student64[1], mask, 4)
                 + _float64_kl(teacher[2], teacher[2], student64[2], student64[2], mask, 4))
    reference.backward()
    fused, fused_grads = _value_and_grads("fused", chunked_rows=8)
    torch.testing.assert_close(fused.double(), reference.detach(), rtol=1e-5, atol=1e-6)
    for a, b in zip(fused_grads, student64):
        torch.testing.assert_close(a.double(), torch.nan_to_num(b.grad), rtol=1e-3, atol=1e-6)


def test_both_objectives_agree_between_paths():
    teacher, student, mask = _inputs()
    for relations in (minilm_relation_losses, minilmv2_relation_losses):
        fused = relations(teacher, student, mask, 4, path="fused") if relations is minilmv2_relation_losses else \
            relations(teacher, student, mask, 4, ("attention", "value"), path="fused")
        reference = relations(teacher, student, mask, 4, path="reference") if relations is minilmv2_relation_losses else \
            relations(teacher, student, mask, 4, ("attention", "value"), path="reference")
        assert fused.keys() == reference.keys()
        for name in fused:
            torch.testing.assert_close(fused[name], reference[name], rtol=1e-5, atol=1e-6)


def test_fused_is_fp32_under_bf16_autocast():
    teacher, student, mask = _inputs()
    exact = relation_kl(teacher[0], teacher[1], student[0], student[1], mask, 4, "fused")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = relation_kl(teacher[0], teacher[1], student[0], student[1], mask, 4, "fused")
    assert autocast.dtype == torch.float32
    torch.testing.assert_close(autocast, exact)


def test_fused_gradient_follows_the_upstream_gradient_and_no_grad_skips_it():
    """The gradient is formed in forward and only scaled in backward: a weighted loss (the trainer
    sums weighted relations) must scale it, and under no_grad none is formed (same value)."""
    import mminilm.objectives.fused_relation as fused

    teacher, student, mask = _inputs()
    (-2.5 * fused.chunked_relation_kl(teacher[0], teacher[1], student[0], student[1], mask, 4, chunk=7)).backward()
    expected = [s.detach().clone().requires_grad_() for s in student]
    (-2.5 * relation_kl(teacher[0], teacher[1], expected[0], expected[1], mask, 4, "reference")).backward()
    torch.testing.assert_close(student[0].grad, expected[0].grad, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(student[1].grad, expected[1].grad, rtol=1e-4, atol=1e-7)
    with torch.no_grad():
        value = fused.chunked_relation_kl(teacher[0], teacher[1], student[0], student[1], mask, 4, chunk=7)
    assert value.grad_fn is None
    torch.testing.assert_close(value, relation_kl(teacher[0], teacher[1], student[0], student[1], mask, 4,
                                                  "reference").detach(), rtol=1e-5, atol=1e-6)
