"""`CorpusDataset`: readers + language sampler + tokenizer + packer as one IterableDataset."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import IterableDataset, get_worker_info
from transformers import PreTrainedTokenizerBase

from .binarize import BinarizedBlockStream, binarized_sizes
from .index import corpus_sizes
from .packing import BlockPacker
from .reader import ReadStats, discover_languages
from .sampler import LanguageBalancedSampler
from .stream import LanguageStream


class CorpusDataset(IterableDataset):
    """An endless stream of packed `max_length` blocks, languages drawn with q_i ∝ p_i^α.

    Each yielded item is `{"input_ids": (max_length,), "attention_mask": (max_length,),
    "language": str}`. Distributed ranks and DataLoader workers each read a disjoint slice of
    every language (document d goes to slice d % (world_size × workers)) and draw languages from
    their own seeded sampler, so no block is duplicated across processes.

    Exact resume: iterate in the main process (num_workers=0) and save `state_dict()` with the
    checkpoint; a dataset given that state through `load_state_dict` continues with the very
    next block. With workers > 0 the stream is still disjoint and reproducible from the seed,
    but there is no single state to save.
    """

    def __init__(
        self,
        corpus_dir: str | os.PathLike,
        tokenizer: PreTrainedTokenizerBase,
        languages: Sequence[str] | None = None,
        alpha: float = 0.3,
        max_length: int = 512,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        sizes: Mapping[str, float] | None = None,
        cache_dir: str | os.PathLike | None = None,
        packing: str = "concat",
        binarized_dir: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        self.corpus_dir = Path(corpus_dir)
        self.binarized_dir = Path(binarized_dir) if binarized_dir else None
        if self.binarized_dir is not None:
            if sizes is None:
                sizes = binarized_sizes(self.binarized_dir, list(languages) if languages else None)
            self.files = {lang: [self.binarized_dir / f"{lang}.bin"] for lang in sizes}
        else:
            self.files = discover_languages(self.corpus_dir, list(languages) if languages else None)
        if sizes is not None:
            unknown = set(sizes) - set(self.files)
            if unknown:
                raise ValueError(f"sizes given for languages not in the corpus: {sorted(unknown)}")
            missing = set(self.files) - set(sizes)
            if missing:
                raise ValueError(f"sizes missing for languages {sorted(missing)}")
        self.sizes = dict(sizes) if sizes is not None else corpus_sizes(self.corpus_dir, list(self.files), cache_dir)
        # Validates alpha and sizes early, in the constructor, not in a worker process.
        self.probabilities = LanguageBalancedSampler(self.sizes, alpha, seed).probabilities
        self.tokenizer = tokenizer
        self.alpha = alpha
        self.max_length = max_length
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.packing = packing
        BlockPacker(LanguageStream("probe", [Path(os.devnull)]), tokenizer, max_length, packing)  # validates
        self._live: tuple[LanguageBalancedSampler, dict[str, BlockPacker]] | None = None
        self._resume_state: dict[str, Any] | None = None

    def _build(self, part: int, num_parts: int) -> tuple[LanguageBalancedSampler, dict[str, BlockPacker]]:
        sampler = LanguageBalancedSampler(self.sizes, self.alpha, self.seed, rank=part, world_size=num_parts)
        if self.binarized_dir is not None:
            packers = {lang: BinarizedBlockStream(paths[0], self.tokenizer.bos_token_id, self.tokenizer.eos_token_id,
                                                  self.max_length, part, num_parts)
                       for lang, paths in self.files.items()}
            return sampler, packers
        packers = {
            lang: BlockPacker(LanguageStream(lang, paths, part, num_parts), self.tokenizer, self.max_length, self.packing)
            for lang, paths in self.files.items()
        }
        return sampler, packers

    def __iter__(self) -> Iterator[dict[str, Any]]:
        worker = get_worker_info()
        workers, worker_id = (worker.num_workers, worker.id) if worker else (1, 0)
        part, num_parts = self.rank * workers + worker_id, self.world_size * workers
        sampler, packers = self._build(part, num_parts)
        if self._resume_state is not None:
            if workers > 1:
                raise RuntimeError("CorpusDataset state can only be restored when iterating with num_workers=0")
            sampler.load_state_dict(self._resume_state["sampler"])
            for lang, state in self._resume_state["packers"].items():
                packers[lang].load_state_dict(state)
            self._resume_state = None
        if worker is None:
            self._live = (sampler, packers)
        while True:
            language = sampler.draw()
            ids, mask = packers[language].next_block()
            yield {
                "input_ids": torch.tensor(ids, dtype=torch.long),
                "attention_mask": torch.tensor(mask, dtype=torch.long),
                "language": language,
            }

    def state_dict(self) -> dict[str, Any]:
        """Where the stream is now (after the last block yielded in this process)."""
        if self._live is None:
            if self._resume_state is not None:
                return self._resume_state
            sampler, packers = self._build(self.rank, self.world_size)
        else:
            sampler, packers = self._live
        return {
            "sampler": sampler.state_dict(),
            "packers": {lang: packer.state_dict() for lang, packer in packers.items()},
            "config": {"seed": self.seed, "rank": self.rank, "world_size": self.world_size,
                       "max_length": self.max_length, "alpha": self.alpha, "packing": self.packing},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a stream position; takes effect at the next `iter(dataset)`."""
        expected = {"seed": self.seed, "rank": self.rank, "world_size": self.world_size,
                    "max_length": self.max_length, "alpha": self.alpha, "packing": self.packing}
        if dict(state["config"]) != expected:
            raise ValueError(f"data stream state was saved with {dict(state['config'])}, this dataset has {expected}")
        self._resume_state = dict(state)
        self._live = None

    def read_stats(self) -> dict[str, ReadStats]:
        """Per-language reader statistics (lines, documents, invalid UTF-8, truncated files) so far;
        the trainer logs the invalid-UTF-8 line counts in every train_log.jsonl record."""
        if self._live is None or self.binarized_dir is not None:
            return {}
        return {lang: packer.stream.stats for lang, packer in self._live[1].items()}


def collate_blocks(blocks: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Stack blocks into {"input_ids": (B, L), "attention_mask": (B, L), "languages": [B]}."""
    return {
        "input_ids": torch.stack([b["input_ids"] for b in blocks]),
        "attention_mask": torch.stack([b["attention_mask"] for b in blocks]),
        "languages": [b["language"] for b in blocks],
    }
