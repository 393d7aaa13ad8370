"""Cleaning filters: what each removes, the order they apply in, and the logged report."""

import logging

import pytest

from training.clean import CleanOptions, clean_pairs

PAIRS = [
    ("a b c", "x y z"),  # kept
    ("", "x"),  # empty source
    ("a", "   "),  # whitespace-only target counts as empty
    ("a " * 6, "x " * 6),  # too long (6 words > 5)
    ("a", "x y z w"),  # ratio 4 > 3
    ("a b c", "x y z"),  # duplicate of the first
    ("a b c", "x y Z"),  # not an exact duplicate: kept
]


def test_counts_per_filter_and_order_kept(caplog: pytest.LogCaptureFixture) -> None:
    opts = CleanOptions(max_len=5, max_ratio=3.0)
    with caplog.at_level(logging.INFO, logger="training.clean"):
        kept, report = clean_pairs(PAIRS, opts)
    assert kept == [("a b c", "x y z"), ("a b c", "x y Z")]
    assert report.removed == {"empty": 2, "too_long": 1, "ratio": 1, "duplicate": 1}
    assert (report.total, report.kept) == (7, 2)
    lines = [r.getMessage() for r in caplog.records]
    for name in ("empty", "too_long", "ratio", "duplicate"):
        assert sum(f"filter={name} " in line for line in lines) == 1


def test_filters_can_be_switched_off() -> None:
    opts = CleanOptions(drop_empty=False, max_len=None, max_ratio=None, dedup=False)
    kept, report = clean_pairs(PAIRS, opts)
    assert kept == PAIRS
    assert sum(report.removed.values()) == 0


def test_character_lengths() -> None:
    pairs = [("abcdef", "abc"), ("abcdefg", "abcdefg"), ("ab", "abcdefg")]
    kept, report = clean_pairs(pairs, CleanOptions(max_len=6, len_unit="chars", max_ratio=2.0))
    assert kept == [("abcdef", "abc")]
    assert (report.removed["too_long"], report.removed["ratio"]) == (2, 0)
    # In words every sentence above has length 1, so nothing is too long or lopsided.
    kept, _ = clean_pairs(pairs, CleanOptions(max_len=6, len_unit="words", max_ratio=2.0))
    assert kept == pairs


def test_rejects_nonsense_options() -> None:
    with pytest.raises(ValueError, match="max_ratio"):
        CleanOptions(max_ratio=0.5)
    with pytest.raises(ValueError, match="len_unit"):
        CleanOptions(len_unit="tokens")  # type: ignore[arg-type]
