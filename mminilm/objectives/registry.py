"""Training objectives behind one interface, so the trainer never branches on the objective.

Each objective is an `nn.Module` called as `objective(input_ids, attention_mask) -> (loss,
components)` (components: detached per-part losses, for logging; fairseq's criterions are the
model). Its trainable parameters are the student's plus any it owns (the hidden-state
baseline's projection); the teacher inside it is frozen and kept in eval mode.

- minilm / minilmv2: self-attention distillation (`SelfAttentionDistillation`).
- mlm: masked-LM from scratch, no teacher (the "no distillation" baseline).
- logit_kd: KL of soft MLM logits at masked positions (DistilBERT-style); needs a teacher MLM head.
- hidden: MSE between the last-layer hidden states, through a learned projection when widths
  differ (the TinyBERT/DistilBERT family); works for teachers without an MLM head.
"""

from __future__ import annotations

import abc

import torch
from torch import nn
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from mminilm.objectives.distillation import SelfAttentionDistillation
from mminilm.objectives.losses import MINILM_RELATIONS, hidden_state_mse
from mminilm.objectives.mlm import logit_kd_loss, mask_tokens, mlm_loss
from mminilm.objectives import DEFAULT_LAYER_MAP, DEFAULT_RELATION_KL, OBJECTIVES

Components = dict[str, torch.Tensor]


class Objective(nn.Module, abc.ABC):
    """Base: holds the student (trained) and optionally a teacher (frozen, always in eval mode)."""

    def __init__(self, student: PreTrainedModel, teacher: PreTrainedModel | None = None) -> None:
        super().__init__()
        self.student = student
        self.teacher = teacher
        if teacher is not None:
            teacher.requires_grad_(False)
            teacher.eval()

    def train(self, mode: bool = True) -> "Objective":
        super().train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # dropout noise in the targets would only hurt
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def extra_state(self) -> dict[str, torch.Tensor]:
        """Trained parameters outside the student (saved in checkpoints beside the student).

        The student and teacher are left out under every name they are registered under (an
        inner module such as the distiller holds them too): a checkpoint must not carry a
        second copy of either.
        """
        models = {id(model) for model in (self.student, self.teacher) if model is not None}
        prefixes = tuple(f"{name}." for name, module in self.named_modules(remove_duplicate=False)
                         if name and id(module) in models)
        return {name: tensor for name, tensor in self.state_dict().items() if not name.startswith(prefixes)}

    @abc.abstractmethod
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, Components]:
        """(scalar loss, {part: detached loss}) for one batch."""


class SelfAttentionObjective(Objective):
    def __init__(self, teacher: PreTrainedModel, student: PreTrainedModel, method: str, teacher_layer: int,
                 student_layer: int, relation_heads: int | None, relations: tuple[str, ...],
                 relation_kl: str = DEFAULT_RELATION_KL, layer_map: str = DEFAULT_LAYER_MAP,
                 hidden_weight: float = 0.0) -> None:
        super().__init__(student, teacher)
        self.distiller = SelfAttentionDistillation(teacher, student, method=method, teacher_layer=teacher_layer,
                                                   student_layer=student_layer, num_relation_heads=relation_heads,
                                                   relations=relations, relation_kl=relation_kl, layer_map=layer_map,
                                                   hidden_weight=hidden_weight)

    def forward(self, input_ids, attention_mask):
        components = self.distiller.relation_losses(input_ids, attention_mask)
        return sum(components.values()), {k: v.detach() for k, v in components.items()}


class MaskedLMObjective(Objective):
    """MLM (teacher=None) or logit KD (with a teacher): BERT masking from a seeded generator."""

    def __init__(self, student: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, probability: float,
                 generator: torch.Generator, teacher: PreTrainedModel | None = None, temperature: float = 1.0) -> None:
        super().__init__(student, teacher)
        self.tokenizer, self.probability, self.generator, self.temperature = tokenizer, probability, generator, temperature

    def forward(self, input_ids, attention_mask):
        masked, labels = mask_tokens(input_ids, attention_mask, self.tokenizer, self.probability, self.generator)
        if self.teacher is None:
            loss = mlm_loss(self.student, masked, attention_mask, labels)
            return loss, {"mlm": loss.detach()}
        loss = logit_kd_loss(self.teacher, self.student, masked, attention_mask, labels, self.temperature)
        return loss, {"logit_kd": loss.detach()}


class HiddenStateObjective(Objective):
    """MSE between teacher and student last-layer hidden states over real tokens.

    A learned linear map takes the student's width to the teacher's when they differ (TinyBERT);
    it is trained with the student and discarded afterwards.
    """

    def __init__(self, teacher: PreTrainedModel, student: PreTrainedModel) -> None:
        super().__init__(student, teacher)
        student_width, teacher_width = student.config.hidden_size, teacher.config.hidden_size
        self.projection = nn.Identity() if student_width == teacher_width else nn.Linear(student_width, teacher_width)

    def forward(self, input_ids, attention_mask):
        with torch.no_grad():
            target = self.teacher.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        hidden = self.student.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        loss = hidden_state_mse(target, hidden, attention_mask, self.projection)
        return loss, {"hidden_mse": loss.detach()}


def build_objective(name: str, student: PreTrainedModel, teacher: PreTrainedModel | None,
                    tokenizer: PreTrainedTokenizerBase, generator: torch.Generator, *, teacher_layer: int = -1,
                    student_layer: int = -1, relation_heads: int | None = None,
                    relations: tuple[str, ...] = MINILM_RELATIONS, mlm_probability: float = 0.15,
                    kd_temperature: float = 1.0, relation_kl: str = DEFAULT_RELATION_KL,
                    layer_map: str = DEFAULT_LAYER_MAP, hidden_weight: float = 0.0) -> Objective:
    """The objective called `name` (one of OBJECTIVES). layer_map and hidden_weight shape the
    self-attention objectives only (see SelfAttentionDistillation)."""
    if name not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {name!r}")
    if name != "mlm" and teacher is None:
        raise ValueError(f"objective {name} needs a teacher")
    if name in ("minilm", "minilmv2"):
        return SelfAttentionObjective(teacher, student, name, teacher_layer, student_layer, relation_heads, relations,
                                      relation_kl, layer_map, hidden_weight)
    if layer_map != DEFAULT_LAYER_MAP or hidden_weight:
        raise ValueError(f"layer_map and hidden_weight shape minilm/minilmv2 only, not objective {name}")
    if name == "hidden":
        return HiddenStateObjective(teacher, student)
    return MaskedLMObjective(student, tokenizer, mlm_probability, generator,
                             teacher=teacher if name == "logit_kd" else None, temperature=kd_temperature)
