"""mMiniLM: deep self-attention distillation (MiniLM, MiniLMv2) for multilingual Transformers."""

from .distillation import SelfAttentionDistillation
from .losses import minilm_loss, minilmv2_loss

__all__ = ["SelfAttentionDistillation", "minilm_loss", "minilmv2_loss"]
