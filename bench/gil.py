"""How much a batch of translations slows down beside a busy Python thread (the GIL).

    python bench/gil.py --model models/en-de-multi30k \\
        --src ../shared/data/multi30k/test_2016_flickr.en.gz

In the server the model runs in one thread and the event loop in another. Every torch or
SentencePiece call the model thread makes releases the GIL; while the event loop has Python
work, getting it back can take up to the interpreter's switch interval (5 ms by default). So
a batch that makes many small calls crawls whenever the event loop is busy, and HTTP work and
model work end up taking turns instead of overlapping. This script measures that directly:
--batches random batches of --batch-size sentences, translated (greedy by default) alone and
then while a second thread spins in pure Python, and prints ms per batch for both, the
slowdown, and how much of a core the spinner got. The spinner is the worst case (it never
blocks); a real event loop gives the GIL back at every socket call. `--phases` also times the
parts of a batch (tokenizing, shortlist, encoder, search) in both conditions.
"""

from __future__ import annotations

import argparse
import functools
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from load import read_sentences  # noqa: E402  (bench/load.py, beside this script)

from model import DecodeOptions, Translator  # noqa: E402


@contextmanager
def spinner() -> Iterator[Callable[[], int]]:
    """A thread counting in pure Python while the block runs; yields a reader of its count."""
    stop, count = threading.Event(), [0]

    def spin() -> None:
        while not stop.is_set():
            for _ in range(100):
                count[0] += 1

    thread = threading.Thread(target=spin, daemon=True)
    thread.start()
    try:
        yield lambda: count[0]
    finally:
        stop.set()
        thread.join()


def spin_rate(seconds: float = 0.5) -> float:
    """Spinner counts per second with nothing else running: a whole core."""
    with spinner() as counted:
        time.sleep(seconds)
        return counted() / seconds


def time_phases(translator: Translator) -> Counter[str]:
    """Wrap the parts of a batch so that their time adds up in the returned counter."""
    spent: Counter[str] = Counter()

    def timed(owner: Any, name: str, label: str) -> None:
        inner = getattr(owner, name)

        @functools.wraps(inner)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                spent[label] += time.perf_counter() - start

        object.__setattr__(owner, name, wrapper)

    timed(translator.tokenizer, "encode_sources", "tokenize")
    timed(translator.model, "encode", "encoder")
    timed(translator, "decode_ids", "decode (all below)")
    if translator.shortlist is not None and translator.output_layer is not None:
        timed(translator.shortlist, "candidates", "shortlist")
        timed(translator.output_layer, "restrict", "output rows")
    search = translator.compiled_search
    if search is not None:
        timed(search, "search", "search")
    return spent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="models/en-de-multi30k", help="bundle directory")
    p.add_argument("--src", required=True, help="one sentence per line (.gz ok)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--batches", type=int, default=30)
    p.add_argument("--beam", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--switch-interval-ms", type=float, default=None, help="sys.setswitchinterval")
    p.add_argument("--phases", action="store_true", help="also time the parts of a batch")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    if args.switch_interval_ms is not None:
        sys.setswitchinterval(args.switch_interval_ms / 1000)
    sentences = read_sentences(Path(args.src), limit=100_000)
    rng = random.Random(0)
    batches = [rng.sample(sentences, args.batch_size) for _ in range(args.batches)]
    translator = Translator.from_dir(args.model, device="cpu", quantize="auto")
    options = DecodeOptions(beam_size=args.beam)
    spent = time_phases(translator) if args.phases else Counter()
    for batch in batches[:3]:  # warm-up, and TorchScript's profiling runs
        translator.translate(batch, options)

    def run_all() -> float:
        spent.clear()
        start = time.perf_counter()
        for batch in batches:
            translator.translate(batch, options)
        return (time.perf_counter() - start) / len(batches)

    full_core = spin_rate()
    alone = run_all()
    alone_phases = dict(spent)
    with spinner() as counted:
        start = time.perf_counter()
        beside = run_all()
        spinner_core = counted() / (time.perf_counter() - start) / full_core
    print(
        f"batch of {args.batch_size}, beam {args.beam}, {args.threads} thread(s), switch interval "
        f"{sys.getswitchinterval() * 1e3:g} ms: {alone * 1e3:.1f} ms alone, {beside * 1e3:.1f} ms "
        f"beside a busy Python thread ({beside / alone:.1f}x); the spinner got "
        f"{spinner_core:.2f} of a core"
    )
    for label, seconds in alone_phases.items():
        print(
            f"  {label:20s} {seconds / len(batches) * 1e3:8.2f} ms alone "
            f"{spent[label] / len(batches) * 1e3:9.2f} ms beside"
        )


if __name__ == "__main__":
    main()
