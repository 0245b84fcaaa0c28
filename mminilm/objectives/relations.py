"""Self-attention relations: masked log-softmax of scaled dot products between token vectors.

Both MiniLM objectives compare *distributions over keys* for every query token, so everything
reduces to one primitive: split a `(batch, seq, hidden)` tensor into heads, take the scaled dot
product of two such tensors, mask padded keys and log-softmax. It is computed in fp32 whatever
the input dtype, because under bf16/fp16 autocast the KL between two near-identical
distributions otherwise drowns in rounding error.
"""

from __future__ import annotations

import math

import torch

from mminilm.objectives import DEFAULT_RELATION_KL, RELATION_KL_PATHS


def split_heads(states: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(batch, seq, hidden) -> (batch, num_heads, seq, hidden // num_heads)."""
    batch, seq, hidden = states.shape
    if hidden % num_heads != 0:
        raise ValueError(
            f"hidden size {hidden} is not divisible by {num_heads} heads: choose a head count that divides it"
        )
    return states.view(batch, seq, num_heads, hidden // num_heads).transpose(1, 2)


def relation_log_probs(
    left: torch.Tensor,
    right: torch.Tensor,
    attention_mask: torch.Tensor,
    num_heads: int,
) -> torch.Tensor:
    """log softmax(left_h · right_hᵀ / √d_h) per head, with padded keys masked out.

    Args:
        left: (batch, seq, hidden) queries of the relation (Q for attention, A for A-A relations).
        right: (batch, seq, hidden) keys of the relation.
        attention_mask: (batch, seq), 1 (or True) for real tokens.
        num_heads: how many heads to split `hidden` into; d_h = hidden / num_heads.

    Returns:
        (batch, num_heads, seq, seq) fp32 log-probabilities over the key axis. Padded keys get a
        large negative *finite* value (never -inf), so a fully padded row stays finite and
        `exp(log p) * (...)` is exactly 0 there instead of NaN.
    """
    with torch.autocast(left.device.type, enabled=False):  # autocast would run the matmul in bf16/fp16
        left_heads = split_heads(left.float(), num_heads)  # (batch, heads, seq, d_h)
        right_heads = split_heads(right.float(), num_heads)  # (batch, heads, seq, d_h)
        scale = 1.0 / math.sqrt(left_heads.shape[-1])
        scores = torch.matmul(left_heads, right_heads.transpose(-1, -2)) * scale  # (batch, heads, seq, seq)
        key_is_padding = ~attention_mask.bool()[:, None, None, :]  # (batch, 1, 1, seq)
        scores = scores.masked_fill(key_is_padding, torch.finfo(scores.dtype).min)
        return torch.log_softmax(scores, dim=-1)


def masked_relation_kl(
    teacher_log_probs: torch.Tensor,
    student_log_probs: torch.Tensor,
    attention_mask: torch.Tensor,
) -> torch.Tensor:
    """KL(teacher ‖ student), mean over heads and over the batch's real query tokens.

    A token-level mean (sum over real queries / number of real queries in the whole batch) rather
    than a per-sequence mean: padding a batch further, or batching sequences of other lengths
    together, then leaves the loss unchanged.

    Args:
        teacher_log_probs, student_log_probs: (batch, heads, seq, seq) from `relation_log_probs`.
        attention_mask: (batch, seq), 1 for real tokens.
    """
    teacher_probs = teacher_log_probs.exp()
    # Masked keys have teacher prob exactly 0, so they contribute 0 (not 0 * inf).
    kl_per_query = (teacher_probs * (teacher_log_probs - student_log_probs)).sum(dim=-1)  # (batch, heads, seq)
    kl_per_token = kl_per_query.mean(dim=1)  # (batch, seq): mean over heads
    query_mask = attention_mask.to(kl_per_token.dtype)
    num_real = query_mask.sum().clamp(min=1.0)
    return (kl_per_token * query_mask).sum() / num_real


def relation_kl(teacher_left: torch.Tensor, teacher_right: torch.Tensor, student_left: torch.Tensor,
                student_right: torch.Tensor, attention_mask: torch.Tensor, num_heads: int,
                path: str = DEFAULT_RELATION_KL) -> torch.Tensor:
    """KL(teacher ‖ student) of one relation, mean over heads and real query tokens.

    "fused" (default) never materialises the (batch, heads, seq, seq) maps and forms the gradient in
    the same pass (see fused_relation.py: at 8 x 12 x 512, ~0.15x the memory and under half the time);
    "reference" is the plain composition of `relation_log_probs` and `masked_relation_kl`, the
    definition the fused path is tested against.
    """
    if path == "fused":
        from mminilm.objectives.fused_relation import chunked_relation_kl

        return chunked_relation_kl(teacher_left, teacher_right, student_left, student_right, attention_mask, num_heads)
    if path != "reference":
        raise ValueError(f"relation KL path must be one of {RELATION_KL_PATHS}, got {path!r}")
    with torch.no_grad():
        teacher = relation_log_probs(teacher_left.detach(), teacher_right.detach(), attention_mask, num_heads)
    student = relation_log_probs(student_left, student_right, attention_mask, num_heads)
    return masked_relation_kl(teacher, student, attention_mask)
