"""CC-100 reading, language-balanced sampling, tokenization and packing for distillation."""

from .dataset import CorpusDataset, collate_blocks
from .index import corpus_sizes
from .reader import ReadStats, TruncatedShardWarning, discover_languages, iter_documents
from .sampler import LanguageBalancedSampler, smoothed_probabilities

__all__ = [
    "CorpusDataset",
    "LanguageBalancedSampler",
    "ReadStats",
    "TruncatedShardWarning",
    "collate_blocks",
    "corpus_sizes",
    "discover_languages",
    "iter_documents",
    "smoothed_probabilities",
]
