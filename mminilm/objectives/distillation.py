"""`SelfAttentionDistillation`: the MiniLM / MiniLMv2 training objective as one nn.Module."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from transformers import PreTrainedModel

from mminilm.objectives import DEFAULT_LAYER_MAP, LAYER_MAPS
from mminilm.objectives.losses import (MINILM_RELATIONS, hidden_state_mse, minilm_relation_losses,
                                       minilmv2_relation_losses)
from mminilm.objectives.qkv_capture import encoder_layers, evenly_spaced_layers, resolve_layer_index, run_capturing
from mminilm.objectives.relations import DEFAULT_RELATION_KL

METHODS = ("minilm", "minilmv2")


class SelfAttentionDistillation(nn.Module):
    """Distil `teacher`'s self-attention knowledge of one layer (or each of several) into `student`.

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
        layer_map: "last" (the papers: the one pair teacher_layer/student_layer) or "uniform":
            student layer l mimics teacher layer `evenly_spaced_layers(...)[l]`, the layer a
            teacher-initialised student copied there. Relation losses are averaged over the pairs,
            so "last" and a single pair give the same number.
        hidden_weight: > 0 adds this weight × the MSE between the pairs' output hidden states over
            real tokens (TinyBERT's intermediate-layer term; a learned projection per pair when
            widths differ). Why: the relation targets never reach the last layer's attention output
            and FFN, which fine-tuning reads; the hidden term trains them.
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
        layer_map: str = DEFAULT_LAYER_MAP,
        hidden_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if layer_map not in LAYER_MAPS:
            raise ValueError(f"layer_map must be one of {LAYER_MAPS}, got {layer_map!r}")
        if hidden_weight < 0:
            raise ValueError(f"hidden_weight must be >= 0, got {hidden_weight}")
        self.teacher = teacher
        self.student = student
        self.method = method
        self.relations = tuple(relations)
        self.relation_kl = relation_kl
        if layer_map == "uniform":
            if (teacher_layer, student_layer) != (-1, -1):
                raise ValueError("layer_map 'uniform' pairs every student layer with its teacher layer; "
                                 "teacher_layer/student_layer choose the one pair of layer_map 'last'")
            student_depth = len(encoder_layers(student))
            self.layer_pairs = list(zip(evenly_spaced_layers(len(encoder_layers(teacher)), student_depth),
                                        range(student_depth)))
        else:
            self.layer_pairs = [(resolve_layer_index(teacher, teacher_layer, "teacher"),
                                 resolve_layer_index(student, student_layer, "student"))]
        self.teacher_layer, self.student_layer = self.layer_pairs[-1]
        teacher_hidden, student_hidden = teacher.config.hidden_size, student.config.hidden_size
        self.hidden_weight = hidden_weight
        self.projections = nn.ModuleList(
            nn.Identity() if student_hidden == teacher_hidden else nn.Linear(student_hidden, teacher_hidden)
            for _ in self.layer_pairs) if hidden_weight > 0 else None
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
        """The loss of each relation (attention, value / query, key, value), before summing, each the
        mean over the layer pairs; plus "hidden" (already weighted) when hidden_weight > 0."""
        teacher_layers = [t for t, _ in self.layer_pairs]
        student_layers = [s for _, s in self.layer_pairs]
        outputs_wanted = self.hidden_weight > 0
        # no_grad, not inference_mode: inference tensors cannot enter the loss's autograd graph, and
        # cloning Q/K/V out of inference mode cost three (batch, seq, hidden) copies every step.
        with torch.no_grad():
            teacher_qkv, teacher_out = run_capturing(self.teacher, teacher_layers, teacher_layers if outputs_wanted else (),
                                                     input_ids, attention_mask)
        student_qkv, student_out = run_capturing(self.student, student_layers, student_layers if outputs_wanted else (),
                                                 input_ids, attention_mask)
        totals: dict[str, torch.Tensor] = {}
        for t, s in self.layer_pairs:
            if self.method == "minilm":
                losses = minilm_relation_losses(teacher_qkv[t], student_qkv[s], attention_mask, self.num_heads,
                                                self.relations, self.relation_kl)
            else:
                losses = minilmv2_relation_losses(teacher_qkv[t], student_qkv[s], attention_mask, self.num_heads,
                                                  self.relation_kl)
            for name, value in losses.items():
                totals[name] = totals[name] + value if name in totals else value
        components = {name: value / len(self.layer_pairs) for name, value in totals.items()}
        if outputs_wanted:
            mse = sum(hidden_state_mse(teacher_out[t], student_out[s], attention_mask, projection)
                      for projection, (t, s) in zip(self.projections, self.layer_pairs))
            components["hidden"] = self.hidden_weight * mse / len(self.layer_pairs)
        return components
