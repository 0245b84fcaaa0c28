"""Cheap, cached language sizes for sampling.

The sampler only needs relative sizes. For plain `.txt` the file size is exact and free; a
compressed shard must be decompressed once to know its text size, so the result is cached in a
small JSON index keyed by (file name, size on disk, mtime) — next to the corpus when it is
writable, otherwise in a cache dir (`$MMINILM_CACHE` or ~/.cache/mminilm).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .reader import discover_languages, uncompressed_size

INDEX_NAME = ".mminilm_sizes.json"


def _default_cache_dir() -> Path:
    return Path(os.environ.get("MMINILM_CACHE", Path.home() / ".cache" / "mminilm"))


def _index_path(corpus_dir: Path, cache_dir: str | os.PathLike | None) -> Path:
    if cache_dir is None and os.access(corpus_dir, os.W_OK):
        return corpus_dir / INDEX_NAME
    key = hashlib.sha1(str(corpus_dir.resolve()).encode()).hexdigest()[:16]
    return Path(cache_dir or _default_cache_dir()) / "corpus-index" / f"{corpus_dir.name}-{key}.json"


def corpus_sizes(corpus_dir: str | os.PathLike, languages: list[str] | None = None,
                 cache_dir: str | os.PathLike | None = None) -> dict[str, int]:
    """language -> uncompressed text bytes over all its shards (cached for compressed shards)."""
    directory = Path(corpus_dir)
    files = discover_languages(directory, languages)
    index_path = _index_path(directory, cache_dir)
    try:
        index = json.loads(index_path.read_text()) if index_path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        index = {}
    changed = False
    sizes: dict[str, int] = {}
    for lang, paths in files.items():
        total = 0
        for path in paths:
            stat = path.stat()
            key = f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}"
            if key not in index:
                index[key] = uncompressed_size(path)
                changed = True
            total += index[key]
        if total == 0:
            raise ValueError(f"language {lang!r} in {directory} has no text")
        sizes[lang] = total
    if changed:
        index_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = index_path.with_name(index_path.name + f".tmp-{os.getpid()}")
        tmp.write_text(json.dumps(index, indent=1, sort_keys=True))
        os.replace(tmp, index_path)
    return sizes
