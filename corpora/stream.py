"""One language's endless document stream, partitioned across ranks/workers, resumable."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .reader import ReadStats, iter_documents


class LanguageStream:
    """Documents of one language, cycling over its shards epoch after epoch.

    Partitioning: document number d (counted over all shards in order) belongs to part
    d % num_parts, so parts are disjoint and together cover the language exactly. The state is
    (epoch, documents read in this epoch); restoring re-opens the shard and skips ahead, which
    costs a sequential read up to that point (use the binarized cache for O(1) resume at scale).
    """

    def __init__(self, language: str, files: list[Path], part: int = 0, num_parts: int = 1) -> None:
        if not files:
            raise ValueError(f"language {language!r} has no files")
        if not 0 <= part < num_parts:
            raise ValueError(f"need 0 <= part < num_parts, got {part}/{num_parts}")
        self.language = language
        self.files = list(files)
        self.part = part
        self.num_parts = num_parts
        self.stats = ReadStats()
        self.epoch = 0
        self.documents_read = 0  # in this epoch, all parts counted
        self._iterator: Iterator[list[str]] | None = None

    def _epoch_documents(self) -> Iterator[list[str]]:
        for path in self.files:
            yield from iter_documents(path, self.stats)

    def _open(self, skip: int) -> None:
        self._iterator = self._epoch_documents()
        for _ in range(skip):
            if next(self._iterator, None) is None:
                raise ValueError(f"cannot resume {self.language}: its files now hold fewer than {skip} documents")

    def next_document(self) -> list[str]:
        empty_epochs = 0
        while True:
            if self._iterator is None:
                self._open(self.documents_read)
            document = next(self._iterator, None)
            if document is None:
                empty_epochs += 1
                if empty_epochs > 2:
                    raise ValueError(f"language {self.language!r}: no documents for part {self.part} of {self.num_parts}")
                self.epoch += 1
                self.documents_read = 0
                self._iterator = None
                continue
            index = self.documents_read
            self.documents_read += 1
            if index % self.num_parts == self.part:
                return document

    def take(self, count: int) -> list[list[str]]:
        return [self.next_document() for _ in range(count)]

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "documents_read": self.documents_read, "part": self.part,
                "num_parts": self.num_parts}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = (state.get("part", self.part), state.get("num_parts", self.num_parts))
        if saved != (self.part, self.num_parts):
            raise ValueError(f"{self.language}: this state was saved by slice {saved[0]} of {saved[1]}, not "
                             f"{self.part} of {self.num_parts}: resume with the same ranks and workers")
        self.epoch = int(state["epoch"])
        self.documents_read = int(state["documents_read"])
        self._iterator = None
