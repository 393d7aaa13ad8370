"""Synthetic copy/reverse task: tiny parallel files for tests, CI and ``configs/tiny_copy.yaml``.

A model that cannot learn to copy a short sequence of made-up words has a bug, so this task
checks the whole pipeline in seconds (sockeye and JoeyNMT use the same trick).
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

logger = logging.getLogger(__name__)

# Made-up words so that SentencePiece has a few multi-character pieces to learn.
WORDS = tuple(f"{c}{v}" for c in "bdgklmnprst" for v in "aeiou")[:24]
SPLIT_SIZES = {"train": 500, "valid": 50, "test": 50}


def copy_task_pairs(
    n: int, seed: int, min_len: int = 2, max_len: int = 8, reverse: bool = False
) -> list[tuple[str, str]]:
    """``n`` random word sequences paired with themselves (or reversed)."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        words = rng.choices(WORDS, k=rng.randint(min_len, max_len))
        target = list(reversed(words)) if reverse else words
        pairs.append((" ".join(words), " ".join(target)))
    return pairs


def write_copy_task(
    out_dir: str | Path,
    sizes: dict[str, int] | None = None,
    seed: int = 0,
    reverse: bool = False,
) -> dict[str, tuple[Path, Path]]:
    """Write ``<split>.src`` and ``<split>.tgt`` for each split into ``out_dir``.

    Args:
        out_dir: created if needed; ``data/tiny_copy`` is what ``configs/tiny_copy.yaml`` reads.
        sizes: pairs per split, default :data:`SPLIT_SIZES` (train 500, valid 50, test 50).
        seed: each split uses ``seed`` plus its position, so splits differ but are repeatable.
        reverse: the target is the source reversed (harder: it needs attention far back).

    Returns:
        ``{split: (src_path, tgt_path)}``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for offset, (split, n) in enumerate((sizes or SPLIT_SIZES).items()):
        pairs = copy_task_pairs(n, seed + offset, reverse=reverse)
        paths = (out / f"{split}.src", out / f"{split}.tgt")
        for path, side in zip(paths, zip(*pairs, strict=True), strict=True):
            path.write_text("".join(line + "\n" for line in side), encoding="utf-8")
        written[split] = paths
    logger.info("copy task dir=%s sizes=%s reverse=%s", out, sizes or SPLIT_SIZES, reverse)
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m training.synthetic [OUT_DIR]``: write the copy task (``make train-tiny``)."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", nargs="?", default="data/tiny_copy", help="default: %(default)s")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reverse", action="store_true", help="target = source reversed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    write_copy_task(args.out_dir, seed=args.seed, reverse=args.reverse)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
