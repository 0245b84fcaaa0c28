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
# fused: chunked over query rows, the gradient formed in the same pass; at batch 8 x 512 on 2 CPU
# cores 0.18x the reference path's peak memory and 0.45x its time (benchmarks/relation_loss.py,
# README). reference: the plain definition, kept as the cross-check (--relation-kl reference).
DEFAULT_RELATION_KL = "fused"
LAYER_MAPS = ("last", "uniform")
# last: one layer pair (the papers; --teacher-layer/--student-layer). uniform: every student layer
# mimics the teacher layer it stands for (qkv_capture.evenly_spaced_layers, the layers that
# student_init=teacher copies), TinyBERT-style layer-to-layer distillation.
DEFAULT_LAYER_MAP = "last"
