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
import warnings
from pathlib import Path
from typing import Any

from .reader import MAX_NON_TEXT_FRACTION, TruncatedShardWarning, discover_languages, scan_shard

INDEX_NAME = ".mminilm_sizes.json"
INDEX_VERSION = 2  # entries are scan_shard() dicts


def default_cache_dir() -> Path:
    """Where derived data is cached (size indexes, converted teachers): $MMINILM_CACHE or ~/.cache/mminilm."""
    return Path(os.environ.get("MMINILM_CACHE", Path.home() / ".cache" / "mminilm"))


def _index_path(corpus_dir: Path, cache_dir: str | os.PathLike | None) -> Path:
    if cache_dir is None and os.access(corpus_dir, os.W_OK):
        return corpus_dir / INDEX_NAME
    key = hashlib.sha1(str(corpus_dir.resolve()).encode()).hexdigest()[:16]
    return Path(cache_dir or default_cache_dir()) / "corpus-index" / f"{corpus_dir.name}-{key}.json"


def corpus_scan(corpus_dir: str | os.PathLike, languages: list[str] | None = None,
                cache_dir: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """language -> {"bytes", "invalid_utf8", "truncated_files", "shards"} over its shards (cached).

    A shard that is not text (an ELF binary named de.txt) is an error naming it; a truncated
    compressed shard is named as truncated, here and in every message that follows from it.
    """
    directory = Path(corpus_dir)
    files = discover_languages(directory, languages)
    index_path = _index_path(directory, cache_dir)
    try:
        index = json.loads(index_path.read_text()) if index_path.is_file() else {}
    except (OSError, json.JSONDecodeError):
        index = {}
    if index.get("version") != INDEX_VERSION:
        index = {"version": INDEX_VERSION}
    changed = False
    result: dict[str, dict[str, Any]] = {}
    for lang, paths in files.items():
        summary = {"bytes": 0, "invalid_utf8": 0, "truncated_files": [], "shards": len(paths)}
        for path in paths:
            stat = path.stat()
            key = f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}"
            if key not in index:
                index[key] = scan_shard(path)
                changed = True
            scan = index[key]
            if scan["non_text_fraction"] > MAX_NON_TEXT_FRACTION:
                raise ValueError(f"{path} is not UTF-8 text: {100 * scan['non_text_fraction']:.1f}% of its first MB are "
                                 f"NUL or undecodable bytes (a binary or another encoding?); remove or convert it")
            if scan["truncated"]:
                summary["truncated_files"].append(str(path))
                warnings.warn(f"{path}: compressed stream is truncated (ends before its end marker); only its first "
                              f"{scan['bytes']} bytes of text are used", TruncatedShardWarning, stacklevel=2)
            summary["bytes"] += scan["bytes"]
            summary["invalid_utf8"] += scan["invalid_utf8"]
        if summary["bytes"] == 0:
            cause = (f"its shard(s) {', '.join(summary['truncated_files'])} are truncated before any text"
                     if summary["truncated_files"] else "its files are empty")
            raise ValueError(f"language {lang!r} in {directory} has no text: {cause}")
        result[lang] = summary
    if changed:
        index_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = index_path.with_name(index_path.name + f".tmp-{os.getpid()}")
        tmp.write_text(json.dumps(index, indent=1, sort_keys=True))
        os.replace(tmp, index_path)
    return result


def corpus_sizes(corpus_dir: str | os.PathLike, languages: list[str] | None = None,
                 cache_dir: str | os.PathLike | None = None) -> dict[str, int]:
    """language -> uncompressed text bytes over all its shards (what the sampler needs)."""
    return {lang: scan["bytes"] for lang, scan in corpus_scan(corpus_dir, languages, cache_dir).items()}
