"""The MiniLM (v1) and MiniLMv2 distillation objectives on captured Q/K/V projections.

Both objectives only ever compare (seq × seq) distributions, never hidden vectors, so teacher
and student widths are free and no projection layer is needed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mminilm.objectives.relations import DEFAULT_RELATION_KL, relation_kl

QKV = tuple[torch.Tensor, torch.Tensor, torch.Tensor]

MINILM_RELATIONS = ("attention", "value")
MINILMV2_RELATIONS = ("query", "key", "value")


def _check_qkv(name: str, qkv: Sequence[torch.Tensor], attention_mask: torch.Tensor) -> None:
    if len(qkv) != 3:
        raise ValueError(f"{name} must be a (q, k, v) tuple, got {len(qkv)} tensors")
    for tensor in qkv:
        if tensor.dim() != 3:
            raise ValueError(f"{name} tensors must be (batch, seq, hidden), got shape {tuple(tensor.shape)}")
        if tensor.shape[:2] != attention_mask.shape:
            raise ValueError(
                f"{name} tensor shape {tuple(tensor.shape)} does not match attention_mask "
                f"(batch, seq) = {tuple(attention_mask.shape)}"
            )


def minilm_relation_losses(
    teacher_qkv: QKV,
    student_qkv: QKV,
    attention_mask: torch.Tensor,
    num_heads: int,
    relations: Sequence[str] = MINILM_RELATIONS,
    path: str = DEFAULT_RELATION_KL,
) -> dict[str, torch.Tensor]:
    """Per-relation KL terms of MiniLM v1 ("attention": QKᵀ, "value": VVᵀ), unsummed, for logging.
    `path`: "reference" (default) or "fused" (chunked; see relations.relation_kl)."""
    _check_qkv("teacher_qkv", teacher_qkv, attention_mask)
    _check_qkv("student_qkv", student_qkv, attention_mask)
    unknown = set(relations) - set(MINILM_RELATIONS)
    if unknown or not relations:
        raise ValueError(f"MiniLM relations must be a non-empty subset of {MINILM_RELATIONS}, got {tuple(relations)}")
    t_q, t_k, t_v = (x.detach() for x in teacher_qkv)
    s_q, s_k, s_v = student_qkv
    teacher_pairs = {"attention": (t_q, t_k), "value": (t_v, t_v)}
    student_pairs = {"attention": (s_q, s_k), "value": (s_v, s_v)}
    return {name: relation_kl(*teacher_pairs[name], *student_pairs[name], attention_mask, num_heads, path)
            for name in relations}


def minilm_loss(
    teacher_qkv: QKV,
    student_qkv: QKV,
    attention_mask: torch.Tensor,
    num_heads: int,
    relations: Sequence[str] = MINILM_RELATIONS,
) -> torch.Tensor:
    """MiniLM: KL of per-head attention distributions + KL of per-head value relations.

    Args:
        teacher_qkv, student_qkv: (q, k, v), each (batch, seq, hidden_t) / (batch, seq, hidden_s):
            the chosen layer's linear projection outputs (before the head split).
        attention_mask: (batch, seq), 1 for real tokens.
        num_heads: the (shared) attention head count of both layers.
        relations: ("attention", "value") is the paper's objective; ("attention",) is the
            attention-only ablation.
    """
    return sum(minilm_relation_losses(teacher_qkv, student_qkv, attention_mask, num_heads, relations).values())


def minilmv2_relation_losses(
    teacher_qkv: QKV,
    student_qkv: QKV,
    attention_mask: torch.Tensor,
    num_relation_heads: int,
    path: str = DEFAULT_RELATION_KL,
) -> dict[str, torch.Tensor]:
    """Per-relation KL terms of MiniLMv2 ("query": QQᵀ, "key": KKᵀ, "value": VVᵀ)."""
    _check_qkv("teacher_qkv", teacher_qkv, attention_mask)
    _check_qkv("student_qkv", student_qkv, attention_mask)
    return {name: relation_kl(t.detach(), t.detach(), s, s, attention_mask, num_relation_heads, path)
            for name, t, s in zip(MINILMV2_RELATIONS, teacher_qkv, student_qkv)}


def minilmv2_loss(
    teacher_qkv: QKV,
    student_qkv: QKV,
    attention_mask: torch.Tensor,
    num_relation_heads: int,
) -> torch.Tensor:
    """MiniLMv2: sum of the Q-Q, K-K and V-V self-relation KLs over `num_relation_heads` heads.

    The concatenated Q (resp. K, V) of each model is re-split into `num_relation_heads` heads of
    size hidden / num_relation_heads, independently for teacher and student, so their attention
    head counts may differ.
    """
    return sum(minilmv2_relation_losses(teacher_qkv, student_qkv, attention_mask, num_relation_heads).values())


def hidden_state_mse(teacher_hidden: torch.Tensor, student_hidden: torch.Tensor, attention_mask: torch.Tensor,
                     projection: nn.Module) -> torch.Tensor:
    """MSE between (batch, seq, hidden) states over real tokens, the student's through `projection`
    (identity for equal widths, a learned linear map otherwise: TinyBERT)."""
    real = attention_mask.bool()
    return F.mse_loss(projection(student_hidden[real]).float(), teacher_hidden[real].detach().float())
