"""mMiniLM: deep self-attention distillation (MiniLM, MiniLMv2) for multilingual Transformers.

The public names load on first use (PEP 562), so a light submodule such as `mminilm.presets`,
which the recipes call before every stage, does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {"SelfAttentionDistillation": ".objectives.distillation", "minilm_loss": ".objectives.losses",
           "minilmv2_loss": ".objectives.losses"}
__all__ = list(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'mminilm' has no attribute {name!r}")
    return getattr(importlib.import_module(_PUBLIC[name], __name__), name)
