"""Language sampling with exponent smoothing: q_i ∝ p_i^α (XLM-R used α = 0.3).

With α = 1 languages are drawn in proportion to their size; as α → 0 the distribution becomes
uniform. A small α up-samples low-resource languages so the student sees them at all.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np


def smoothed_probabilities(sizes: Mapping[str, float], alpha: float) -> dict[str, float]:
    """q_i = p_i**alpha / sum_j p_j**alpha with p_i = n_i / sum_j n_j."""
    _validate(sizes, alpha)
    total = float(sum(sizes.values()))
    weights = {lang: (size / total) ** alpha for lang, size in sizes.items()}
    norm = sum(weights.values())
    return {lang: weight / norm for lang, weight in weights.items()}


def _validate(sizes: Mapping[str, float], alpha: float) -> None:
    if not sizes:
        raise ValueError("sizes is empty: give at least one language with a positive size")
    bad = {lang: size for lang, size in sizes.items() if not isinstance(size, (int, float)) or not size > 0 or math.isinf(size)}
    if bad:
        raise ValueError(f"language sizes must be positive finite numbers, got {bad}")
    if not (isinstance(alpha, (int, float)) and 0 < alpha <= 1):
        raise ValueError(f"alpha must be in (0, 1] (1 = proportional, towards 0 = uniform), got {alpha!r}")


class LanguageBalancedSampler:
    """An endless, reproducible stream of language codes drawn with smoothed probabilities.

    Each (seed, rank) pair gets its own independent stream, so distributed ranks (and data
    loader workers, via `rank`) never draw in lock-step. `state_dict()` captures the generator,
    so a restored sampler continues the stream exactly where it stopped.

    Args:
        sizes: language -> size (bytes, lines or tokens; only ratios matter).
        alpha: smoothing exponent in (0, 1].
        seed: base seed shared by all ranks.
        rank, world_size: this process's place in a distributed run.
    """

    def __init__(self, sizes: Mapping[str, float], alpha: float = 0.3, seed: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        if not (isinstance(world_size, int) and world_size >= 1 and isinstance(rank, int) and 0 <= rank < world_size):
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        self.probabilities = smoothed_probabilities(sizes, alpha)
        self.sizes = dict(sizes)
        self.alpha = alpha
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.languages = sorted(self.probabilities)
        cumulative = np.cumsum([self.probabilities[lang] for lang in self.languages])
        self._cumulative = (cumulative / cumulative[-1]).tolist()
        self._rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, rank])))
        self.num_drawn = 0

    def draw(self) -> str:
        """The next language code."""
        index = bisect.bisect_right(self._cumulative, self._rng.random())
        self.num_drawn += 1
        return self.languages[min(index, len(self.languages) - 1)]

    def __iter__(self) -> Iterator[str]:
        while True:
            yield self.draw()

    def state_dict(self) -> dict[str, Any]:
        return {"bit_generator": self._rng.bit_generator.state, "num_drawn": self.num_drawn,
                "languages": self.languages, "seed": self.seed, "rank": self.rank}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if list(state["languages"]) != self.languages:
            raise ValueError(f"sampler state is for languages {state['languages']}, this sampler has {self.languages}")
        self._rng.bit_generator.state = state["bit_generator"]
        self.num_drawn = int(state["num_drawn"])
