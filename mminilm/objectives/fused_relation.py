"""The relation KL without materialising (batch, heads, seq, seq) tensors.

`relation_log_probs` + `masked_relation_kl` build about ten fp32 tensors of B·H·T² floats
(scores, masked scores, log-probabilities of teacher and student, teacher probabilities, their
products, and what autograd keeps of them): at batch 32 × 512 tokens × 12 heads that is 400 MB
each. Here query rows are processed in chunks of `chunk` rows: forward computes teacher and
student log-softmax, the KL and its gradient one chunk at a time, using d KL / d student-scores =
(softmax(s) − p_teacher) / N on real query rows (N = real query tokens × heads); backward only
scales the kept gradient. Peak extra memory is O(B·H·chunk·T); the result is the same function as the
reference path (tests compare values and gradients, and both against float64).
"""

from __future__ import annotations

import math

import torch

# Query rows per chunk. 16, 24 and 32 measured at 8x12x512 on 2 CPU cores: 24 gave ~0.15x the
# reference's peak memory at under half its time (README, benchmarks/relation_loss.py).
DEFAULT_CHUNK = 24


def _heads(states: torch.Tensor, num_heads: int) -> torch.Tensor:
    batch, seq, hidden = states.shape
    if hidden % num_heads:
        raise ValueError(f"hidden size {hidden} is not divisible by {num_heads} heads: choose a head count that divides it")
    return states.float().view(batch, seq, num_heads, hidden // num_heads).transpose(1, 2)


def _chunk_log_probs(left: torch.Tensor, right: torch.Tensor, rows: slice, key_is_padding: torch.Tensor) -> torch.Tensor:
    # Scale the (rows x d) query chunk rather than the (rows x T) scores, and mask in place: the
    # chunk's only full-size tensors are the scores and their log-softmax.
    scores = torch.matmul(left[:, :, rows] * (1.0 / math.sqrt(left.shape[-1])), right.transpose(-1, -2))
    return torch.log_softmax(scores.masked_fill_(key_is_padding, torch.finfo(scores.dtype).min), dim=-1)


class ChunkedRelationKL(torch.autograd.Function):
    """KL(teacher ‖ student) of softmax(left·rightᵀ/√d) relations, mean over heads and real queries.

    The gradient is computed in the same chunk loop as the loss, while each chunk's student
    probabilities are at hand, and kept (O(B·T·hidden), the size of the inputs) for backward,
    which only scales it: recomputing every chunk in backward made this path ~2x the reference's
    time. Without autograd (no_grad, or inputs that need no gradient) only the loss is computed.
    """

    @staticmethod
    def forward(ctx, teacher_left, teacher_right, student_left, student_right, attention_mask, num_heads, chunk,
                want_grad):
        with torch.autocast(student_left.device.type, enabled=False):  # fp32 whatever the autocast dtype
            return ChunkedRelationKL._forward(ctx, teacher_left, teacher_right, student_left, student_right,
                                              attention_mask, num_heads, chunk, want_grad)

    @staticmethod
    def _forward(ctx, teacher_left, teacher_right, student_left, student_right, attention_mask, num_heads, chunk,
                 want_grad):
        t_left, s_left = _heads(teacher_left, num_heads), _heads(student_left, num_heads)
        # The key side is read whole by every chunk: made contiguous once (B·T·hidden floats), not
        # copied again by each chunk's batched matmul.
        t_right, s_right = (_heads(teacher_right, num_heads).contiguous(), _heads(student_right, num_heads).contiguous())
        query = attention_mask.to(torch.float32)
        key_is_padding = ~attention_mask.bool()[:, None, None, :]
        normaliser = query.sum().clamp(min=1.0) * num_heads
        if want_grad:
            grad_scale = 1.0 / (normaliser * math.sqrt(s_left.shape[-1]))  # d(scores)/d(left·rightᵀ), mean
            grad_left, grad_right = torch.zeros_like(s_left), torch.zeros_like(s_right)
        total = torch.zeros((), dtype=torch.float32, device=s_left.device)
        for start in range(0, s_left.shape[2], chunk):
            rows = slice(start, start + chunk)
            teacher = _chunk_log_probs(t_left, t_right, rows, key_is_padding)
            student = _chunk_log_probs(s_left, s_right, rows, key_is_padding)
            teacher_probs = teacher.exp()
            log_ratio = teacher.sub_(student)  # in place: the teacher's log-probabilities are not needed again
            # sum over keys of p_t · (log p_t − log p_s), as a (1 x T)·(T x 1) product: no full-size temporary
            kl = torch.matmul(teacher_probs.unsqueeze(-2), log_ratio.unsqueeze(-1)).view(teacher_probs.shape[:-1])
            total += (kl * query[:, None, rows]).sum()
            del teacher, log_ratio  # one tensor (modified in place): freed before the gradient's
            if want_grad:  # d KL / d student-scores = (softmax(s) − p_teacher) on real query rows, in place
                grad_scores = student.exp_().sub_(teacher_probs).mul_(query[:, None, rows, None] * grad_scale)
                grad_left[:, :, rows] = torch.matmul(grad_scores, s_right)
                grad_right += torch.matmul(grad_scores.transpose(-1, -2), s_left[:, :, rows])
        if want_grad:
            ctx.grads = (_merged(grad_left, student_left), _merged(grad_right, student_right))
        return total / normaliser

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        grad_left, grad_right = ctx.grads
        del ctx.grads  # the graph is freed after backward; so are these
        return (None, None, (grad_left * grad_output).to(grad_left.dtype), (grad_right * grad_output).to(grad_right.dtype),
                None, None, None, None)


def _merged(grad: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(batch, heads, seq, head_dim) back to `like`'s (batch, seq, hidden) layout and dtype."""
    return grad.transpose(1, 2).reshape(like.shape).to(like.dtype)


def chunked_relation_kl(teacher_left: torch.Tensor, teacher_right: torch.Tensor, student_left: torch.Tensor,
                        student_right: torch.Tensor, attention_mask: torch.Tensor, num_heads: int,
                        chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """The fused path of `relations.relation_kl` (same arguments); the teacher gets no gradient."""
    if chunk <= 0:
        raise ValueError(f"chunk must be positive, got {chunk}")
    # Forward runs with autograd off, so whether a gradient will be wanted is decided here.
    want_grad = torch.is_grad_enabled() and (student_left.requires_grad or student_right.requires_grad)
    return ChunkedRelationKL.apply(teacher_left.detach(), teacher_right.detach(), student_left, student_right,
                                   attention_mask, num_heads, chunk, want_grad)
