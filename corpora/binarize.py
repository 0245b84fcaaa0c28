"""Pre-tokenized corpora: token ids per language in a flat uint32 file, read through numpy memmap.

For multi-epoch runs tokenizing CC-100 again every epoch is wasted work, and resuming a text
stream means re-reading it up to the saved position. Like fairseq's binarized datasets, each
language is tokenized once into `{lang}.bin` (documents concatenated, each followed by `</s>`);
blocks are then contiguous windows of it, block b going to slice b % num_parts, so resuming is
O(1): the state is an (epoch, block) pair.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from transformers import PreTrainedTokenizerBase

from .reader import ReadStats, discover_languages, iter_documents

META_NAME = "binarized.json"


def binarize_corpus(corpus_dir: str | os.PathLike, tokenizer: PreTrainedTokenizerBase, output_dir: str | os.PathLike,
                    languages: list[str] | None = None, batch_documents: int = 256) -> dict[str, Any]:
    """Tokenize every language of `corpus_dir` into `output_dir/{lang}.bin`; returns the metadata."""
    files = discover_languages(corpus_dir, languages)
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    if len(tokenizer) >= 2**32:
        raise ValueError("vocabulary too large for uint32 token files")
    meta: dict[str, Any] = {"tokenizer_vocab_size": len(tokenizer), "eos_token_id": tokenizer.eos_token_id,
                            "languages": {}}
    for lang, paths in files.items():
        stats = ReadStats()
        tmp = output / f".{lang}.bin.tmp"
        tokens = 0
        with open(tmp, "wb") as handle:
            batch: list[str] = []

            def flush() -> int:
                written = 0
                for ids in tokenizer(batch, add_special_tokens=False, verbose=False)["input_ids"]:
                    if ids:
                        np.asarray(ids + [tokenizer.eos_token_id], dtype=np.uint32).tofile(handle)
                        written += len(ids) + 1
                batch.clear()
                return written

            for path in paths:
                for document in iter_documents(path, stats):
                    batch.append(" ".join(document))
                    if len(batch) >= batch_documents:
                        tokens += flush()
            tokens += flush()
        if tokens == 0:
            tmp.unlink()
            raise ValueError(f"language {lang!r}: no tokens after tokenization")
        os.replace(tmp, output / f"{lang}.bin")
        meta["languages"][lang] = {"tokens": tokens, "documents": stats.documents,
                                   "invalid_utf8_replacements": stats.invalid_utf8_replacements,
                                   "truncated_files": stats.truncated_files}
    (output / META_NAME).write_text(json.dumps(meta, indent=1))
    return meta


class BinarizedBlockStream:
    """Blocks `<s> + (max_length - 2) tokens + </s>` cut from one language's token file."""

    def __init__(self, path: Path, bos: int, eos: int, max_length: int, part: int = 0, num_parts: int = 1) -> None:
        self.tokens = np.memmap(path, dtype=np.uint32, mode="r")
        self.body = max_length - 2
        self.num_blocks = len(self.tokens) // self.body
        if self.num_blocks < num_parts:
            raise ValueError(f"{path}: {len(self.tokens)} tokens give fewer than {num_parts} blocks of {max_length}")
        self.bos, self.eos, self.part, self.num_parts = bos, eos, part, num_parts
        self.epoch = 0
        self.block = part

    def next_block(self) -> tuple[list[int], list[int]]:
        if self.block >= self.num_blocks:
            self.epoch += 1
            self.block = self.part
        start = self.block * self.body
        body = self.tokens[start: start + self.body].tolist()
        self.block += self.num_parts
        ids = [self.bos, *body, self.eos]
        return ids, [1] * len(ids)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "block": self.block}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.block = int(state["epoch"]), int(state["block"])


def binarized_sizes(binarized_dir: str | os.PathLike, languages: list[str] | None = None) -> dict[str, int]:
    meta = json.loads((Path(binarized_dir) / META_NAME).read_text())
    available = meta["languages"]
    wanted = languages or sorted(available)
    missing = [lang for lang in wanted if lang not in available]
    if missing:
        raise FileNotFoundError(f"languages {missing} not binarized in {binarized_dir}; found: {' '.join(sorted(available))}")
    return {lang: available[lang]["tokens"] for lang in wanted}
