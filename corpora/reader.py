"""Streaming CC-100 readers: `{lang}.txt[.xz|.gz|.zst]`, optionally split `{lang}.*.txt.xz` shards.

CC-100 files are tens of GB per language, so nothing here loads a file: lines are decoded one
at a time and grouped into documents at blank lines. Decoding problems are never silent:
invalid UTF-8 is replaced and counted, a truncated compressed stream ends its shard with a
warning that names the file and the last line read.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import io
import lzma
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

COMPRESSIONS = ("", ".xz", ".gz", ".zst", ".bz2")
_FILE_PATTERN = re.compile(r"^(?P<lang>[A-Za-z]{2,3}(?:[_-][A-Za-z0-9]+)?)(?:\.(?P<shard>[^.]+))?\.txt(?P<ext>\.xz|\.gz|\.zst|\.bz2)?$")
_REPLACEMENT = "\ufffd"


class TruncatedShardWarning(UserWarning):
    """A compressed shard ended before its end-of-stream marker."""


@dataclass
class ReadStats:
    """What a reader saw; reported by `python -m corpora stats` and logged by the trainer."""

    lines: int = 0
    documents: int = 0
    invalid_utf8_lines: int = 0
    invalid_utf8_replacements: int = 0
    truncated_files: list[str] = field(default_factory=list)


def discover_languages(corpus_dir: str | os.PathLike, languages: list[str] | None = None) -> dict[str, list[Path]]:
    """language -> its shard files (sorted), from the file names in `corpus_dir`."""
    directory = Path(corpus_dir)
    if not directory.is_dir():
        raise FileNotFoundError(f"corpus directory {directory} does not exist (expected one {{lang}}.txt[.xz] file per language)")
    found: dict[str, list[Path]] = {}
    for path in sorted(directory.iterdir()):
        match = _FILE_PATTERN.match(path.name)
        if match and path.is_file():
            found.setdefault(match.group("lang"), []).append(path)
    if not found:
        raise FileNotFoundError(f"no {{lang}}.txt, .txt.xz, .txt.gz or .txt.zst files in corpus directory {directory}")
    if languages is not None:
        missing = [lang for lang in languages if lang not in found]
        if missing:
            raise FileNotFoundError(
                f"languages {missing} not found in corpus directory {directory}; found: {' '.join(sorted(found))}"
            )
        found = {lang: found[lang] for lang in languages}
    for lang, paths in found.items():
        if all(p.stat().st_size == 0 for p in paths):
            raise ValueError(f"language {lang!r}: {', '.join(str(p) for p in paths)} is empty")
    return found


def open_binary(path: Path) -> BinaryIO:
    """A binary stream of the uncompressed bytes of `path`, by its extension."""
    suffix = path.suffix
    if suffix == ".xz":
        return lzma.open(path, "rb")
    if suffix == ".gz":
        return gzip.open(path, "rb")
    if suffix == ".bz2":
        return bz2.open(path, "rb")
    if suffix == ".zst":
        import zstandard

        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True))
    return open(path, "rb")


def _truncation_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [EOFError, lzma.LZMAError, gzip.BadGzipFile]
    try:
        import zstandard

        errors.append(zstandard.ZstdError)
    except ImportError:  # pragma: no cover - zstandard is in requirements
        pass
    return tuple(errors)


def iter_lines(path: Path, stats: ReadStats | None = None) -> Iterator[str]:
    """Decoded lines (without the newline) of one shard, lazily."""
    stats = stats if stats is not None else ReadStats()
    line_number = 0
    with open_binary(path) as handle:
        try:
            for raw in handle:
                line_number += 1
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    text = raw.decode("utf-8", errors="replace")
                    stats.invalid_utf8_lines += 1
                    stats.invalid_utf8_replacements += text.count(_REPLACEMENT) - raw.count(_REPLACEMENT.encode())
                stats.lines += 1
                yield text.rstrip("\r\n")
        except _truncation_errors() as error:
            stats.truncated_files.append(str(path))
            warnings.warn(
                f"{path}: compressed stream is truncated or corrupt after line {line_number} ({error}); "
                f"the rest of this shard is skipped",
                TruncatedShardWarning,
                stacklevel=2,
            )


def iter_documents(path: Path, stats: ReadStats | None = None) -> Iterator[list[str]]:
    """Documents (lists of non-empty lines) of one shard; blank lines separate documents."""
    stats = stats if stats is not None else ReadStats()
    document: list[str] = []
    for line in iter_lines(path, stats):
        if line.strip():
            document.append(line)
        elif document:
            stats.documents += 1
            yield document
            document = []
    if document:
        stats.documents += 1
        yield document


BINARY_SAMPLE_BYTES = 1 << 20  # how much of a shard is checked for being text at all
MAX_NON_TEXT_FRACTION = 0.01    # NUL or undecodable bytes above this share: not a text file


def scan_shard(path: Path) -> dict[str, Any]:
    """One pass over a shard's uncompressed bytes: its size, invalid UTF-8, truncation, and
    whether it is text at all (NUL and undecodable bytes in the first MB).

    Returns {"bytes", "invalid_utf8" (replacement characters needed), "truncated" (bool),
    "non_text_fraction" (of the first MB)}. Cached by the size index, so each shard is read once.
    """
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    total = invalid = sample_nul = sample_invalid = 0
    truncated = False
    with open_binary(path) as handle:
        # read1 hands out what has been decompressed so far, so a truncated stream loses no text
        read = getattr(handle, "read1", handle.read)
        try:
            while chunk := read(1 << 16):
                text = decoder.decode(chunk)
                bad = text.count(_REPLACEMENT) - chunk.count(_REPLACEMENT.encode())
                if total < BINARY_SAMPLE_BYTES:
                    sample_nul, sample_invalid = sample_nul + chunk.count(0), sample_invalid + bad
                total += len(chunk)
                invalid += bad
        except _truncation_errors():
            truncated = True
    sample = min(total, BINARY_SAMPLE_BYTES) or 1
    return {"bytes": total, "invalid_utf8": invalid, "truncated": truncated,
            "non_text_fraction": (sample_nul + sample_invalid) / sample}
