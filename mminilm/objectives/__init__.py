"""What the student learns from: the relation KL (`relations`), MiniLM/MiniLMv2 losses over captured
Q/K/V (`losses`, `qkv_capture`, `distillation`, `fused_relation`), the masked-LM baselines (`mlm`),
and the one interface the trainer calls for all of them (`registry`).

The names below are what a configuration may choose; they live here, free of torch, so that
reading a config's choices and defaults (`python -m mminilm.presets env`, before every recipe)
does not import torch.
"""

OBJECTIVES = ("minilm", "minilmv2", "mlm", "logit_kd", "hidden")
NEEDS_TEACHER_MLM_HEAD = ("logit_kd",)
RELATION_KL_PATHS = ("reference", "fused")
# The default until the fused path is also faster: on 2 CPU cores it needs ~0.3x the loss's peak
# memory but ~2x its time (backward recomputes the maps; benchmarks/relation_loss.py, README).
DEFAULT_RELATION_KL = "reference"
