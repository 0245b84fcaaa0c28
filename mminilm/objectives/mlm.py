"""Masked-LM inputs and the two baseline objectives (MLM from scratch, DistilBERT-style logit KD)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase


def masked_lm_head(model: PreTrainedModel) -> torch.nn.Module | None:
    """The MLM head of a *ForMaskedLM model (`lm_head` in RoBERTa/XLM-R, `cls` in BERT), or None."""
    for name in ("lm_head", "cls"):
        head = getattr(model, name, None)
        if isinstance(head, torch.nn.Module):
            return head
    return None


def mask_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor, tokenizer: PreTrainedTokenizerBase,
                probability: float, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: choose `probability` of the real, non-special tokens; 80% <mask>, 10% random, 10% kept.

    Returns (masked_input_ids, labels) with labels = -100 where no prediction is asked.
    """
    special = torch.zeros_like(input_ids, dtype=torch.bool)
    for token_id in tokenizer.all_special_ids:
        special |= input_ids == token_id
    candidates = attention_mask.bool() & ~special
    device = input_ids.device
    draw = torch.rand(input_ids.shape, generator=generator, device="cpu").to(device)
    chosen = candidates & (draw < probability)
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, -100))
    action = torch.rand(input_ids.shape, generator=generator, device="cpu").to(device)
    masked = input_ids.clone()
    masked[chosen & (action < 0.8)] = tokenizer.mask_token_id
    random_positions = chosen & (action >= 0.8) & (action < 0.9)
    random_tokens = torch.randint(len(tokenizer), input_ids.shape, generator=generator, device="cpu").to(device)
    masked[random_positions] = random_tokens[random_positions]
    return masked, labels


def mlm_loss(student: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor,
             labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on the masked positions only (logits computed only there, to save memory)."""
    hidden = student.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    positions = labels != -100  # (batch, seq)
    logits = masked_lm_head(student)(hidden[positions])  # (masked, vocab)
    return F.cross_entropy(logits.float(), labels[positions])


def logit_kd_loss(teacher: PreTrainedModel, student: PreTrainedModel, input_ids: torch.Tensor,
                  attention_mask: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(teacher ‖ student) of the MLM distributions at masked positions, scaled by T² (Hinton et al.)."""
    positions = labels != -100
    with torch.inference_mode():
        teacher_hidden = teacher.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        teacher_logits = masked_lm_head(teacher)(teacher_hidden[positions]).float()
    teacher_logits = teacher_logits.clone()
    student_hidden = student.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    student_logits = masked_lm_head(student)(student_hidden[positions]).float()
    teacher_log_probs = F.log_softmax(teacher_logits / temperature, dim=-1)
    student_log_probs = F.log_softmax(student_logits / temperature, dim=-1)
    kl = F.kl_div(student_log_probs, teacher_log_probs, log_target=True, reduction="batchmean")
    return kl * temperature**2
