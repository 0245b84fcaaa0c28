"""`SelfAttentionDistillation`: the MiniLM / MiniLMv2 training objective as one nn.Module."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from transformers import PreTrainedModel

from mminilm.objectives.losses import MINILM_RELATIONS, minilm_relation_losses, minilmv2_relation_losses
from mminilm.objectives.qkv_capture import resolve_layer_index, run_until_qkv
from mminilm.objectives.relations import DEFAULT_RELATION_KL

METHODS = ("minilm", "minilmv2")


class SelfAttentionDistillation(nn.Module):
    """Distil `teacher`'s self-attention knowledge of one layer into one layer of `student`.

    MiniLM (v1) mimics the teacher's attention distributions and value relations and needs equal
    head counts; MiniLMv2 mimics Q-Q, K-K and V-V relations over `num_relation_heads` relation
    heads, so head counts (and widths) may differ. The teacher runs without gradients and is
    kept in eval mode; only the student receives gradients.

    Args:
        teacher, student: transformers BERT/RoBERTa/XLM-R models (base or *ForMaskedLM).
        method: "minilm" or "minilmv2".
        teacher_layer, student_layer: which layer to distil (Python indexing, -1 = last).
        num_relation_heads: MiniLMv2 relation heads (default: the teacher's attention heads).
        relations: MiniLM relations to use; ("attention",) is the attention-only ablation.
        relation_kl: "fused" (default: chunked, never materialises seq × seq maps) or "reference"
            (the plain definition).
    """

    def __init__(
        self,
        teacher: PreTrainedModel,
        student: PreTrainedModel,
        method: str = "minilm",
        teacher_layer: int = -1,
        student_layer: int = -1,
        num_relation_heads: int | None = None,
        relations: Sequence[str] = MINILM_RELATIONS,
        relation_kl: str = DEFAULT_RELATION_KL,
    ) -> None:
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        self.teacher = teacher
        self.student = student
        self.method = method
        self.relations = tuple(relations)
        self.relation_kl = relation_kl
        self.teacher_layer = resolve_layer_index(teacher, teacher_layer, "teacher")
        self.student_layer = resolve_layer_index(student, student_layer, "student")
        teacher_hidden, student_hidden = teacher.config.hidden_size, student.config.hidden_size
        teacher_heads = teacher.config.num_attention_heads
        student_heads = student.config.num_attention_heads
        if method == "minilm":
            if teacher_heads != student_heads:
                raise ValueError(
                    f"MiniLM (v1) needs equal attention head counts, but the teacher has {teacher_heads} and the "
                    f"student {student_heads}; use method='minilmv2' with num_relation_heads, or a student with "
                    f"{teacher_heads} heads"
                )
            self.num_heads = teacher_heads
        else:
            self.num_heads = num_relation_heads or teacher_heads
        for role, hidden in (("teacher", teacher_hidden), ("student", student_hidden)):
            if hidden % self.num_heads != 0:
                kind = "attention heads" if method == "minilm" else "num_relation_heads"
                raise ValueError(f"{kind}={self.num_heads} does not divide the {role} hidden size {hidden}")
        if method == "minilmv2" and relations != MINILM_RELATIONS:
            raise ValueError("`relations` selects MiniLM (v1) relations; MiniLMv2 always uses Q-Q, K-K and V-V")
        self.teacher.requires_grad_(False)
        self.teacher.eval()
        self.last_components: dict[str, torch.Tensor] = {}

    def train(self, mode: bool = True) -> "SelfAttentionDistillation":
        """Switch only the student: the teacher must stay in eval mode (no dropout noise in targets)."""
        self.training = mode
        self.student.train(mode)
        self.teacher.eval()
        return self

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Args: input_ids, attention_mask: (batch, seq). Returns the scalar distillation loss."""
        components = self.relation_losses(input_ids, attention_mask)
        # Detached tensors, not floats: reading a value is a host sync, which only a caller that logs pays.
        self.last_components = {name: value.detach() for name, value in components.items()}
        return sum(components.values())

    def relation_losses(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """The loss of each relation (attention, value / query, key, value), before summing."""
        # no_grad, not inference_mode: inference tensors cannot enter the loss's autograd graph, and
        # cloning Q/K/V out of inference mode cost three (batch, seq, hidden) copies every step.
        with torch.no_grad():
            teacher_qkv = run_until_qkv(self.teacher, self.teacher_layer, input_ids, attention_mask)
        student_qkv = run_until_qkv(self.student, self.student_layer, input_ids, attention_mask)
        if self.method == "minilm":
            return minilm_relation_losses(teacher_qkv, student_qkv, attention_mask, self.num_heads, self.relations,
                                          self.relation_kl)
        return minilmv2_relation_losses(teacher_qkv, student_qkv, attention_mask, self.num_heads, self.relation_kl)
