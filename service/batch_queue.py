"""The batcher's queue: one `Entry` per sentence, and the pure functions that take the next
batch off it and drop the entries nobody waits for (the rules are in `service.batching`)."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from model.translator import padded_tokens

if TYPE_CHECKING:
    from model import DecodeOptions, Result


class Outcome(NamedTuple):
    """What a sentence's future resolves to."""

    result: Result
    queue_s: float  # enqueued -> batch started
    compute_s: float  # duration of the batch it was in


@dataclass(eq=False)
class Entry:
    """One queued sentence."""

    text: str
    options: DecodeOptions
    future: asyncio.Future[Outcome]
    enqueued_at: float  # time.monotonic()
    deadline: float  # time.monotonic()
    source_ids: list[int]  # what the model reads (``Translator.encode``), </s> included

    @property
    def n_tokens(self) -> int:
        return len(self.source_ids)


def next_batch(queue: deque[Entry], max_size: int, max_tokens: int) -> list[Entry]:
    """Take the next batch off `queue` (in place); the rest keep their order.

    The oldest entry picks the DecodeOptions. Later entries with equal options join in arrival
    order while the batch has fewer than `max_size` sentences and its padded size
    (`padded_tokens`, as the Translator counts it) stays within `max_tokens`;
    others are skipped, not reordered. The oldest entry always goes, even alone over the
    budget, so nothing waits forever.
    """
    batch: list[Entry] = []
    skipped: list[Entry] = []
    longest = 0
    while queue and len(batch) < max_size:
        entry = queue.popleft()
        padded = padded_tokens(
            max(longest, entry.n_tokens), len(batch) + 1, entry.options.beam_size
        )
        if not batch or (entry.options == batch[0].options and padded <= max_tokens):
            batch.append(entry)
            longest = max(longest, entry.n_tokens)
        else:
            skipped.append(entry)
    queue.extendleft(reversed(skipped))
    return batch


def pop_stale(queue: deque[Entry], now: float) -> tuple[list[Entry], list[Entry]]:
    """Remove entries nobody waits for any more; return (cancelled, expired)."""
    cancelled = [e for e in queue if e.future.cancelled()]
    expired = [e for e in queue if not e.future.done() and e.deadline <= now]
    if cancelled or expired:
        keep = [e for e in queue if not e.future.done() and e.deadline > now]
        queue.clear()
        queue.extend(keep)
    return cancelled, expired
