"""From documents to fixed-length training blocks `<s> … </s>`, one language per block.

Packing rule (documented in README): in "concat" mode (default) consecutive documents of one
language are concatenated, each followed by `</s>` as an explicit document separator, and cut
into blocks of `max_length` (`<s>` + max_length-2 tokens + `</s>`), so no compute is spent on
padding; in "document" mode a block never holds tokens of two documents and a document's last
block is padded. A document longer than a block continues in the next block in both modes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Any

from transformers import PreTrainedTokenizerBase

from .stream import LanguageStream

PACKING_MODES = ("concat", "document")


class BlockPacker:
    """Turns one language's document stream into blocks, keeping an exactly restorable state."""

    def __init__(self, stream: LanguageStream, tokenizer: PreTrainedTokenizerBase, max_length: int = 512,
                 mode: str = "concat", tokenize_batch: int = 32) -> None:
        if mode not in PACKING_MODES:
            raise ValueError(f"packing mode must be one of {PACKING_MODES}, got {mode!r}")
        if max_length < 8:
            raise ValueError(f"max_length must be at least 8 tokens, got {max_length}")
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            if getattr(tokenizer, name) is None:
                raise ValueError(f"tokenizer has no {name.replace('_id', '')}: an XLM-R/RoBERTa tokenizer is expected")
        self.stream = stream
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.mode = mode
        self.tokenize_batch = tokenize_batch
        self._pending: deque[list[int]] = deque()  # tokenized documents not yet fully emitted
        # Resume state is a position, never tokens: the stream state before the pending batch was
        # read, and how many of its tokens were emitted (a 5 MB one-line document must not end up
        # pickled into every checkpoint).
        self._batch_start: dict[str, Any] | None = None
        self._consumed = 0

    def _refill(self) -> None:
        self._batch_start, self._consumed = self.stream.state_dict(), 0
        documents = [" ".join(lines) for lines in self.stream.take(self.tokenize_batch)]
        encoded = self.tokenizer(documents, add_special_tokens=False, verbose=False)["input_ids"]  # documents are cut into blocks below
        separator = [self.tokenizer.eos_token_id] if self.mode == "concat" else []
        self._pending.extend(ids + separator for ids in encoded if ids)

    def next_block(self) -> tuple[list[int], list[int]]:
        """(input_ids, attention_mask), each of length max_length."""
        budget = self.max_length - 2
        body: list[int] = []
        while len(body) < budget:
            if not self._pending:
                self._refill()
                continue
            document = self._pending[0]
            take = document[: budget - len(body)]
            body.extend(take)
            self._consumed += len(take)
            if len(take) == len(document):
                self._pending.popleft()
            else:
                self._pending[0] = document[len(take):]
            if self.mode == "document":
                break
        if self.mode == "concat" and body and body[-1] == self.tokenizer.eos_token_id:
            body.pop()  # the block's own </s> closes the document
        ids = [self.tokenizer.bos_token_id, *body, self.tokenizer.eos_token_id]
        mask = [1] * len(ids)
        padding = self.max_length - len(ids)
        return ids + [self.tokenizer.pad_token_id] * padding, mask + [0] * padding

    def state_dict(self) -> dict[str, Any]:
        if not self._pending:
            return {"stream": self.stream.state_dict(), "consumed": None}
        return {"stream": self._batch_start, "consumed": self._consumed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Re-read and re-tokenize the pending batch from its start, then skip what was emitted."""
        self.stream.load_state_dict(state["stream"])
        self._pending = deque()
        if state.get("consumed") is None:
            return
        self._refill()
        skip = self._consumed = int(state["consumed"])
        while skip:
            document = self._pending[0]
            if len(document) <= skip:
                skip -= len(self._pending.popleft())
            else:
                self._pending[0], skip = document[skip:], 0

    def __iter__(self) -> Iterator[tuple[list[int], list[int]]]:
        while True:
            yield self.next_block()
