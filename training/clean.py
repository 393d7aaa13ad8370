"""Filter parallel training pairs: empty sides, over-long sentences, odd length ratios, duplicates.

Filters run in a fixed order and a pair is counted against the first filter that rejects it, so
the per-filter counts in :class:`CleanReport` add up to the number of pairs removed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

logger = logging.getLogger(__name__)

Pair = tuple[str, str]
LengthUnit = Literal["words", "chars"]

FILTERS = ("empty", "too_long", "ratio", "duplicate")


@dataclass(frozen=True)
class CleanOptions:
    """What to filter. ``None`` (or ``False`` for ``dedup``) switches a filter off.

    Attributes:
        drop_empty: remove pairs where either side is empty or only whitespace; such a side
            teaches the model to translate something into nothing.
        max_len: remove pairs where either side is longer than this, in ``len_unit``.
        len_unit: ``"words"`` (whitespace-separated) or ``"chars"``. Words are cheap and close
            to the subword count; characters suit languages written without spaces.
        max_ratio: remove pairs where the longer side is more than this many times the shorter
            one (in ``len_unit``); these are usually misalignments.
        dedup: keep only the first occurrence of an exact (source, target) duplicate.
    """

    drop_empty: bool = True
    max_len: int | None = 100
    len_unit: LengthUnit = "words"
    max_ratio: float | None = 3.0
    dedup: bool = True

    def __post_init__(self) -> None:
        if self.len_unit not in ("words", "chars"):
            raise ValueError(f"len_unit must be 'words' or 'chars', got {self.len_unit!r}")
        if self.max_len is not None and self.max_len < 1:
            raise ValueError(f"max_len must be at least 1 or None, got {self.max_len}")
        if self.max_ratio is not None and self.max_ratio < 1.0:
            raise ValueError(f"max_ratio must be at least 1.0 or None, got {self.max_ratio}")


@dataclass
class CleanReport:
    """How many pairs each filter removed and how many were kept."""

    total: int = 0
    kept: int = 0
    removed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FILTERS, 0))

    def log(self, log: logging.Logger = logger) -> None:
        """Log one ``key=value`` line per filter, then the totals."""
        for name in FILTERS:
            log.info("clean filter=%s removed=%d", name, self.removed[name])
        log.info("clean total=%d kept=%d", self.total, self.kept)


def _length(text: str, unit: LengthUnit) -> int:
    return len(text.split()) if unit == "words" else len(text)


def _rejected_by(pair: Pair, opts: CleanOptions, seen: set[Pair]) -> str | None:
    """Name of the first filter that rejects ``pair``, or ``None`` to keep it."""
    src, tgt = pair
    if opts.drop_empty and (not src.strip() or not tgt.strip()):
        return "empty"
    src_len, tgt_len = _length(src, opts.len_unit), _length(tgt, opts.len_unit)
    if opts.max_len is not None and max(src_len, tgt_len) > opts.max_len:
        return "too_long"
    # max(..., 1) keeps an empty side (when drop_empty is off) from dividing by zero.
    if opts.max_ratio is not None:
        ratio = max(src_len, tgt_len) / max(min(src_len, tgt_len), 1)
        if ratio > opts.max_ratio:
            return "ratio"
    if opts.dedup:
        if pair in seen:
            return "duplicate"
        seen.add(pair)
    return None


def clean_pairs(
    pairs: Iterable[Pair], options: CleanOptions | None = None
) -> tuple[list[Pair], CleanReport]:
    """Filter ``pairs`` and log what each filter removed.

    Args:
        pairs: ``(source, target)`` sentence pairs.
        options: which filters to apply; the defaults of :class:`CleanOptions` when ``None``.

    Returns:
        The kept pairs in their original order, and the report (already logged).
    """
    opts = options or CleanOptions()
    report = CleanReport()
    kept: list[Pair] = []
    seen: set[Pair] = set()
    for pair in pairs:
        report.total += 1
        reason = _rejected_by(pair, opts, seen)
        if reason is None:
            kept.append(pair)
        else:
            report.removed[reason] += 1
    report.kept = len(kept)
    report.log()
    return kept, report
