"""How a run is carried out: its configuration (`config`), the loop (`trainer`), and what keeps it safe
and reproducible — checkpoints, atomic writes, one run per directory, precision, the distributed
context, the learning-rate schedule and JSONL logs."""

PRECISIONS = ("auto", "bf16", "fp16", "fp32")  # here, free of torch, for the configs' choices
