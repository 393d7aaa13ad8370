"""Vocabulary shortlists from parallel text: built at export, or added to an existing bundle.

The tables themselves and how decoding uses them are in ``model.shortlist``; this module only
reads corpora and rewrites bundles.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model import Tokenizer, load_bundle, save_bundle
from model.shortlist import Shortlist, build_shortlist
from training.corpus import Pair, read_pairs
from training.evaluate import evaluate_pairs, translator_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShortlistSize:
    """How many target ids are always scored, and how many each source id adds.

    Defaults measured on Multi30k en-de (bench/README.md): about 200 ids per sentence and
    validation BLEU within 0.2 of the full vocabulary, greedy and beam 5.
    """

    frequent: int = 100
    per_source: int = 20

    def describe(self, built_from: str) -> dict[str, Any]:
        return {"frequent": self.frequent, "per_source": self.per_source, "built_from": built_from}


DEFAULT_SHORTLIST = ShortlistSize()


def shortlist_from_pairs(pairs: list[Pair], tokenizer: Tokenizer, size: ShortlistSize) -> Shortlist:
    """Tokenize ``pairs`` as the model sees them and count which target ids go with which."""
    ids = ((tokenizer.encode_source(s), tokenizer.encode_target(t)) for s, t in pairs)
    return build_shortlist(
        ids, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size, size.frequent, size.per_source
    )


def add_shortlist(
    bundle_dir: Path,
    train: tuple[Path, Path],
    size: ShortlistSize,
    eval_splits: dict[str, tuple[Path, Path]],
) -> Path:
    """Rewrite the bundle at ``bundle_dir`` with a shortlist built from ``train`` (src, tgt).

    The bundle's metrics would no longer describe how it decodes, so the splits in
    ``eval_splits`` (e.g. {"valid": (src, ref)}) are measured again, greedy and beam 5, and
    replace them; metrics of other splits are dropped.
    """
    bundle = load_bundle(bundle_dir)
    shortlist = shortlist_from_pairs(read_pairs(*train), bundle.tokenizer, size)
    model = bundle.build_model().eval()
    metadata = dict(bundle.metadata)
    metadata["shortlist"] = size.describe(" + ".join(p.name for p in train))
    decoding = metadata.get("decoding", {})
    translator = translator_for(
        model, bundle.tokenizer, shortlist, batch_tokens=8192, max_input_tokens=10_000
    )
    splits = {name: read_pairs(*files) for name, files in eval_splits.items()}
    metadata["metrics"] = evaluate_pairs(
        translator, splits, (1, 5), float(decoding.get("length_penalty", 0.6))
    )
    path = save_bundle(bundle_dir, model, bundle.tokenizer, metadata, bundle.dtype, shortlist)
    log.info("wrote %s with a shortlist (%s)", path, metadata["shortlist"])
    return path
