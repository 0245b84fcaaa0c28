"""`python -m mminilm.pretrain`: a small XLM-R-architecture teacher, pretrained from scratch with MLM.

Offline there is no `xlm-roberta-base` to download, so the tiny preset makes its own real (if
small) multilingual teacher: a SentencePiece vocabulary trained on the corpus with XLM-R's
special-token layout, then masked-LM pretraining through the same trainer (same data stream,
checkpoints, resume and logs) that distillation uses. The result, `OUT/model`, is a plain
transformers dir with its tokenizer, usable as `--teacher` anywhere.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaForMaskedLM

from corpora import discover_languages

from .cli import option as _field
from .cli import parse_config
from .config import TrainConfig
from .languages import XNLI_LANGUAGES
from .student import save_student
from .tokenizer import train_xlmr_tokenizer
from .trainer import train


@dataclass
class PretrainConfig:
    output_dir: str = _field("runs/teacher", "output: tokenizer/, init/, checkpoints, logs and the final model/")
    corpus: str = _field("", "CC-100-layout corpus dir")
    languages: list = _field(list(XNLI_LANGUAGES), "languages for the vocabulary and pretraining")
    alpha: float = _field(0.3, "language sampling exponent")
    vocab_size: int = _field(8000, "SentencePiece vocabulary size")
    tokenizer_model: str = _field("unigram", "SentencePiece model type", choices=("unigram", "bpe"))
    tokenizer_lines: int = _field(20000, "lines sampled per language to train SentencePiece")
    layers: int = _field(4, "Transformer layers")
    hidden: int = _field(256, "hidden size")
    heads: int = _field(4, "attention heads")
    intermediate: int = _field(0, "FFN size (0 = 4 x hidden)")
    max_length: int = _field(128, "tokens per block")
    batch_size: int = _field(32, "blocks per batch per process")
    grad_accum: int = _field(1, "micro-batches per step")
    steps: int = _field(1000, "optimizer steps")
    lr: float = _field(1e-3, "peak learning rate")
    warmup_steps: int = _field(100, "warmup steps")
    seed: int = _field(42, "seed")
    device: str = _field("auto", "auto | cpu | cuda | cuda:N | mps")
    precision: str = _field("auto", "auto | bf16 | fp16 | fp32", choices=("auto", "bf16", "fp16", "fp32"))
    save_every: int = _field(200, "checkpoint every N steps")
    log_every: int = _field(10, "log every N steps")
    resume: bool = _field(False, "continue from the latest checkpoint")
    cache_dir: str = _field("", "cache dir for corpus indexes")


def pretrain(config: PretrainConfig) -> Path:
    output = Path(config.output_dir)
    files = discover_languages(config.corpus, config.languages)  # clear error before any work
    tokenizer_dir = output / "tokenizer"
    if not (tokenizer_dir / "tokenizer.json").is_file():
        train_xlmr_tokenizer([p for paths in files.values() for p in paths], tokenizer_dir,
                             vocab_size=config.vocab_size, model_type=config.tokenizer_model,
                             max_lines_per_file=config.tokenizer_lines, seed=config.seed)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    init_dir = output / "init"
    if not (init_dir / "config.json").is_file():
        model_config = XLMRobertaConfig(
            vocab_size=len(tokenizer), hidden_size=config.hidden, num_hidden_layers=config.layers,
            num_attention_heads=config.heads, intermediate_size=config.intermediate or 4 * config.hidden,
            max_position_embeddings=514, type_vocab_size=1, pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, layer_norm_eps=1e-5,
        )
        model_config.architectures = ["XLMRobertaForMaskedLM"]
        import torch

        torch.manual_seed(config.seed)
        save_student(XLMRobertaForMaskedLM(model_config), tokenizer, init_dir)
    train_config = TrainConfig(
        output_dir=str(output), objective="mlm", teacher="", student_from=str(init_dir), corpus=config.corpus,
        languages=list(config.languages), alpha=config.alpha, max_length=config.max_length,
        batch_size=config.batch_size, grad_accum=config.grad_accum, steps=config.steps, lr=config.lr,
        warmup_steps=config.warmup_steps, seed=config.seed, device=config.device, precision=config.precision,
        save_every=config.save_every, log_every=config.log_every, resume=config.resume, cache_dir=config.cache_dir,
    )
    model_dir = train(train_config)
    (output / "pretrain_config.json").write_text(__import__("json").dumps(dataclasses.asdict(config), indent=2))
    return model_dir


def main(argv: list[str] | None = None) -> int:
    config = parse_config(argv, PretrainConfig, prog="python -m mminilm.pretrain", description=__doc__)
    if not config.corpus:
        print("error: --corpus is required (a CC-100-layout dir, e.g. $MMINILM_DATA/cc100_sample)", file=sys.stderr)
        return 2
    try:
        print(pretrain(config))
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
