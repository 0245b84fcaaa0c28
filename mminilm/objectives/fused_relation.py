"""The relation KL without materialising (batch, heads, seq, seq) tensors.

`relation_log_probs` + `masked_relation_kl` build about ten fp32 tensors of B·H·T² floats
(scores, masked scores, log-probabilities of teacher and student, teacher probabilities, their
products, and what autograd keeps of them): at batch 32 × 512 tokens × 12 heads that is 400 MB
each. Here query rows are processed in chunks of `chunk` rows: forward computes teacher and
student log-softmax and the KL of one chunk at a time, and backward recomputes them per chunk,
using d KL / d student-scores = (softmax(s) − p_teacher) / N on real query rows (N = real query
tokens × heads). Peak extra memory is O(B·H·chunk·T); the result is the same function as the
reference path (tests compare values and gradients, and both against float64).
"""

from __future__ import annotations

import math

import torch

DEFAULT_CHUNK = 64  # query rows per chunk: 8x less peak memory than the full map at T=512


def _heads(states: torch.Tensor, num_heads: int) -> torch.Tensor:
    batch, seq, hidden = states.shape
    if hidden % num_heads:
        raise ValueError(f"hidden size {hidden} is not divisible by {num_heads} heads: choose a head count that divides it")
    return states.float().view(batch, seq, num_heads, hidden // num_heads).transpose(1, 2)


def _chunk_log_probs(left: torch.Tensor, right: torch.Tensor, rows: slice, key_is_padding: torch.Tensor) -> torch.Tensor:
    scores = torch.matmul(left[:, :, rows], right.transpose(-1, -2)) / math.sqrt(left.shape[-1])
    return torch.log_softmax(scores.masked_fill(key_is_padding, torch.finfo(scores.dtype).min), dim=-1)


class ChunkedRelationKL(torch.autograd.Function):
    """KL(teacher ‖ student) of softmax(left·rightᵀ/√d) relations, mean over heads and real queries."""

    @staticmethod
    def forward(ctx, teacher_left, teacher_right, student_left, student_right, attention_mask, num_heads, chunk):
        with torch.autocast(student_left.device.type, enabled=False):  # fp32 whatever the autocast dtype
            return ChunkedRelationKL._forward(ctx, teacher_left, teacher_right, student_left, student_right,
                                              attention_mask, num_heads, chunk)

    @staticmethod
    def _forward(ctx, teacher_left, teacher_right, student_left, student_right, attention_mask, num_heads, chunk):
        t_left, t_right = _heads(teacher_left, num_heads), _heads(teacher_right, num_heads)
        s_left, s_right = _heads(student_left, num_heads), _heads(student_right, num_heads)
        query = attention_mask.to(torch.float32)
        key_is_padding = ~attention_mask.bool()[:, None, None, :]
        normaliser = query.sum().clamp(min=1.0) * num_heads
        total = torch.zeros((), dtype=torch.float32, device=s_left.device)
        for start in range(0, s_left.shape[2], chunk):
            rows = slice(start, start + chunk)
            teacher = _chunk_log_probs(t_left, t_right, rows, key_is_padding)
            student = _chunk_log_probs(s_left, s_right, rows, key_is_padding)
            kl = (teacher.exp() * (teacher - student)).sum(dim=-1)  # (batch, heads, rows)
            total += (kl * query[:, None, rows]).sum()
        ctx.save_for_backward(teacher_left, teacher_right, student_left, student_right, attention_mask)
        ctx.num_heads, ctx.chunk = num_heads, chunk
        return total / normaliser

    @staticmethod
    def backward(ctx, grad_output):
        with torch.autocast(grad_output.device.type, enabled=False):
            return ChunkedRelationKL._backward(ctx, grad_output)

    @staticmethod
    def _backward(ctx, grad_output):
        teacher_left, teacher_right, student_left, student_right, attention_mask = ctx.saved_tensors
        num_heads, chunk = ctx.num_heads, ctx.chunk
        t_left, t_right = _heads(teacher_left, num_heads), _heads(teacher_right, num_heads)
        s_left, s_right = _heads(student_left, num_heads), _heads(student_right, num_heads)
        query = attention_mask.to(torch.float32)
        key_is_padding = ~attention_mask.bool()[:, None, None, :]
        scale = grad_output.float() / (query.sum().clamp(min=1.0) * num_heads)
        inverse_root = 1.0 / math.sqrt(s_left.shape[-1])
        grad_left, grad_right = torch.zeros_like(s_left), torch.zeros_like(s_right)
        for start in range(0, s_left.shape[2], chunk):
            rows = slice(start, start + chunk)
            teacher = _chunk_log_probs(t_left, t_right, rows, key_is_padding).exp()
            student = _chunk_log_probs(s_left, s_right, rows, key_is_padding).exp()
            grad_scores = (student - teacher) * (query[:, None, rows, None] * scale * inverse_root)
            grad_left[:, :, rows] = torch.matmul(grad_scores, s_right)
            grad_right += torch.matmul(grad_scores.transpose(-1, -2), s_left[:, :, rows])

        def merged(grad: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
            return grad.transpose(1, 2).reshape(like.shape).to(like.dtype)

        return (None, None, merged(grad_left, student_left), merged(grad_right, student_right), None, None, None)


def chunked_relation_kl(teacher_left: torch.Tensor, teacher_right: torch.Tensor, student_left: torch.Tensor,
                        student_right: torch.Tensor, attention_mask: torch.Tensor, num_heads: int,
                        chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """The fused path of `relations.relation_kl` (same arguments); the teacher gets no gradient."""
    if chunk <= 0:
        raise ValueError(f"chunk must be positive, got {chunk}")
    return ChunkedRelationKL.apply(teacher_left.detach(), teacher_right.detach(), student_left, student_right,
                                   attention_mask, num_heads, chunk)
