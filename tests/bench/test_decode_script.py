"""bench/decode.py's rows on the tiny bundle: batch 1, batched, and shuffled service batches."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench_scripts import decode

from model import Translator, load_bundle

LINES = ["ba be ki", "mo na pa", "ku", "sa le de do", "ki ku"]


def test_shuffled_batches_hold_every_sentence_once_in_the_same_random_order() -> None:
    lines = [f"sentence {i}" for i in range(10)]
    batches = decode.shuffled_batches(lines, 4)
    assert [len(b) for b in batches] == [4, 4, 2]
    flat = [line for batch in batches for line in batch]
    assert sorted(flat) == sorted(lines)
    assert flat != lines  # shuffled, as concurrent clients' sentences arrive
    assert decode.shuffled_batches(lines, 4) == batches  # each run and each search alike


def test_each_search_gets_a_shuffled_row_over_all_sentences_and_its_share_of_batched(
    tiny_bundle: Path, one_thread: None
) -> None:
    translator = Translator(load_bundle(tiny_bundle), quantize="int8")
    args = argparse.Namespace(batch1_limit=2, repeats=1, beam=5, service_size=2)
    rows = decode.bench_translator(translator, "int8", LINES, args)
    assert [(r.search, r.batch, r.sentences) for r in rows] == [
        ("greedy", "1", 2),
        ("greedy", "batched", 5),
        ("greedy", "2 shuffled", 5),
        ("beam 5", "1", 2),
        ("beam 5", "batched", 5),
        ("beam 5", "2 shuffled", 5),
    ]
    batched, shuffled = rows[1], rows[2]
    shares = decode.shuffled_shares(rows)
    share = shuffled.sent_per_s / batched.sent_per_s
    assert shares[0] == f"  int8 greedy batch=2 shuffled: {share:.3f}"
    assert [line.split(":")[0] for line in shares] == [
        "  int8 greedy batch=2 shuffled",
        "  int8 beam 5 batch=2 shuffled",
    ]
