"""What the student learns from: the relation KL (`relations`), MiniLM/MiniLMv2 losses over captured
Q/K/V (`losses`, `qkv_capture`, `distillation`, `fused_relation`), the masked-LM baselines (`mlm`),
and the one interface the trainer calls for all of them (`registry`)."""
