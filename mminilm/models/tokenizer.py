"""Train a SentencePiece model and wrap it as an XLM-R tokenizer.

Why this exists: offline, there is no `xlm-roberta-base` tokenizer to download, yet the tiny
preset and the tests need a *real* multilingual SentencePiece tokenizer with XLM-R's exact
special-token layout (<s>=0, <pad>=1, </s>=2, <unk>=3, pieces shifted by one, <mask> last).
Training the model with SentencePiece's default ids (unk=0, bos=1, eos=2) gives the same file
layout as XLM-R's `sentencepiece.bpe.model`, so transformers' own XLM-R conversion applies.

Note (transformers 5.23): `XLMRobertaTokenizer(vocab_file=...)` silently builds a 5-token
vocabulary; a tokenizer must be loaded with `from_pretrained(directory)`.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import sentencepiece as spm
from transformers import PreTrainedTokenizerBase, XLMRobertaTokenizer

SPM_FILE_NAME = "sentencepiece.bpe.model"  # the name XLM-R's tokenizer looks for


def _sample_lines(text_files: Sequence[Path], max_lines_per_file: int, seed: int) -> Iterable[str]:
    """Up to `max_lines_per_file` random non-empty lines per file (reservoir sampling over its first
    50 × that many lines), so a 6 MB German file does not crowd a 7 KB Javanese one out of the
    vocabulary, and a 100 GB CC-100 shard is never read to the end. Compressed files are fine."""
    from corpora.reader import iter_lines

    rng = random.Random(seed)
    for path in text_files:
        reservoir: list[str] = []
        for seen, line in enumerate(line for line in iter_lines(path) if line.strip()):
            if seen >= 50 * max_lines_per_file:
                break
            if len(reservoir) < max_lines_per_file:
                reservoir.append(line.strip())
            else:
                slot = rng.randint(0, seen)
                if slot < max_lines_per_file:
                    reservoir[slot] = line.strip()
        yield from reservoir


def train_xlmr_tokenizer(
    text_files: Sequence[str | os.PathLike],
    output_dir: str | os.PathLike,
    vocab_size: int = 8000,
    model_type: str = "unigram",
    max_lines_per_file: int = 20000,
    character_coverage: float = 0.9995,
    seed: int = 0,
) -> PreTrainedTokenizerBase:
    """Train SentencePiece on `text_files` and save an XLM-R tokenizer directory.

    Each file contributes at most `max_lines_per_file` lines, a crude language balance so that
    a 6 MB German file does not crowd out a 7 KB Javanese one in the vocabulary.
    Returns the tokenizer loaded back from `output_dir` (what users and the trainer will see).
    """
    files = [Path(f) for f in text_files]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"tokenizer training files not found: {missing}")
    if model_type not in ("unigram", "bpe"):
        raise ValueError(f"model_type must be 'unigram' or 'bpe', got {model_type!r}")
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output) as work:
        prefix = os.path.join(work, "spm")
        spm.SentencePieceTrainer.train(
                    sentence_iterator=iter(_sample_lines(files, max_lines_per_file, seed)),
            model_prefix=prefix,
            vocab_size=vocab_size,
            model_type=model_type,
            character_coverage=character_coverage,
            shuffle_input_sentence=True,
            input_sentence_size=max_lines_per_file * len(files),
            num_threads=max(1, min(4, os.cpu_count() or 1)),
            minloglevel=2,
        )
        shutil.copyfile(prefix + ".model", output / SPM_FILE_NAME)
    tokenizer = XLMRobertaTokenizer.from_pretrained(str(output))
    tokenizer.save_pretrained(str(output))
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(output))
