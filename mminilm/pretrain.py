"""`python -m mminilm.pretrain`: a small XLM-R-architecture teacher, pretrained from scratch with MLM.

Offline there is no `xlm-roberta-base` to download, so the tiny preset makes its own real (if
small) multilingual teacher: a SentencePiece vocabulary trained on the corpus with XLM-R's
special-token layout, then masked-LM pretraining through the same trainer (same data stream,
checkpoints, resume and logs) that distillation uses. The result, `OUT/model`, is a plain
transformers dir with its tokenizer, usable as `--teacher` anywhere.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaForMaskedLM

from corpora import discover_languages

from mminilm.cli import parse_config, passed_on_values
from mminilm.training.atomic import atomic_write_file
from mminilm.training.config import PretrainConfig, TrainConfig
from mminilm.models.student import save_student
from mminilm.models.tokenizer import train_xlmr_tokenizer
from mminilm.training.trainer import train


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
    train_config = TrainConfig(output_dir=str(output), objective="mlm", teacher="", student_from=str(init_dir),
                               **passed_on_values(config, TrainConfig))
    model_dir = train(train_config)
    settings = json.dumps(dataclasses.asdict(config), indent=2) + "\n"
    atomic_write_file(output / "pretrain_config.json", lambda tmp: tmp.write_text(settings))
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
