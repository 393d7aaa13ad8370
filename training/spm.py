"""Train the SentencePiece model(s) with the project's fixed special ids.

Special ids are pad=0, unk=1, bos=2, eos=3 (pieces ``<pad> <unk> <s> </s>``); ``model/`` refuses
models with other ids. A joint vocabulary is one model, ``<prefix>.model``, trained on both
sides; separate vocabularies are ``<prefix>.src.model`` and ``<prefix>.tgt.model``.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterable, Iterator
from itertools import chain
from pathlib import Path
from typing import Any, Literal

import sentencepiece as spm

from model.tokenizer import SPM_SPECIAL_IDS
from training.corpus import iter_lines

logger = logging.getLogger(__name__)

ModelType = Literal["unigram", "bpe"]
Texts = Iterable[str] | os.PathLike[str]

SPECIAL_PIECES = {
    "pad_piece": "<pad>",
    "unk_piece": "<unk>",
    "bos_piece": "<s>",
    "eos_piece": "</s>",
}


class SpmError(ValueError):  # the data or the tokenizer config: one line from nmt
    """SentencePiece training failed; the message says which model and why."""


def _texts(source: Texts) -> Iterator[str]:
    # A bare str would be iterated character by character, so files must come as Path objects.
    if isinstance(source, str):
        raise TypeError("pass a file as pathlib.Path; a str would be read as one sentence")
    if isinstance(source, os.PathLike):
        return iter_lines(Path(source))
    return iter(source)


def sample_sentences(texts: Iterable[str], size: int, seed: int) -> list[str]:
    """A uniform sample of at most ``size`` non-empty sentences, in corpus order.

    SentencePiece's own sampling (``shuffle_input_sentence``) gives different samples in
    different processes even with ``set_random_generator_seed``, so we sample here instead:
    reservoir sampling with a seeded ``random.Random`` keeps memory bounded by ``size``.
    """
    rng = random.Random(seed)
    reservoir: list[tuple[int, str]] = []
    for i, text in enumerate(t for t in texts if t.strip()):
        if len(reservoir) < size:
            reservoir.append((i, text))
        else:
            j = rng.randint(0, i)
            if j < size:
                reservoir[j] = (i, text)
    return [text for _, text in sorted(reservoir)]


def _train_one(
    texts: Iterable[str], prefix: Path, sample_size: int, seed: int, options: dict[str, object]
) -> Path:
    sentences = sample_sentences(texts, sample_size, seed)
    if not sentences:
        raise SpmError(f"no non-empty sentences to train {prefix}.model on")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    trainer_args: dict[str, Any] = {
        "sentence_iterator": iter(sentences),
        "model_prefix": str(prefix),
        "shuffle_input_sentence": False,  # already sampled deterministically above
        "input_sentence_size": 0,
        "hard_vocab_limit": False,  # tiny corpora get a smaller vocabulary instead of an error
        **SPM_SPECIAL_IDS,
        **SPECIAL_PIECES,
        **options,
    }
    try:
        spm.SentencePieceTrainer.train(**trainer_args)
    except RuntimeError as err:
        raise SpmError(f"training {prefix}.model failed: {err}") from err
    model = prefix.with_name(prefix.name + ".model")
    size = spm.SentencePieceProcessor(model_file=str(model)).get_piece_size()
    logger.info("spm model=%s sentences=%d vocab=%d", model, len(sentences), size)
    return model


def train_sentencepiece(
    src: Texts,
    tgt: Texts,
    out_prefix: str | Path,
    vocab_size: int,
    model_type: ModelType = "unigram",
    character_coverage: float = 1.0,
    byte_fallback: bool = True,
    joint: bool = True,
    input_sentence_size: int = 1_000_000,
    seed: int = 0,
    num_threads: int = 1,
) -> list[Path]:
    """Train a joint model or one model per side.

    Args:
        src: source sentences, or a ``Path`` to a plain or gzipped file of them.
        tgt: target sentences, or a ``Path``.
        out_prefix: e.g. ``run/spm`` gives ``run/spm.model`` (joint) or ``run/spm.src.model``
            and ``run/spm.tgt.model`` (separate), each with its ``.vocab`` beside it.
        vocab_size: the target vocabulary size; an upper bound, since tiny corpora give fewer.
            With ``byte_fallback`` it must leave room for the 256 byte pieces and every character.
        model_type: ``"unigram"`` or ``"bpe"``.
        character_coverage: share of characters covered by pieces; the rest become ``<unk>``,
            or byte pieces with ``byte_fallback``.
        byte_fallback: spell unseen characters (an emoji, a rare script) as UTF-8 byte pieces,
            so no input ever maps to ``<unk>`` and decoding gives the text back.
        joint: one model for both languages (needed for a shared embedding table).
        input_sentence_size: train on a seeded sample of at most this many sentences per model,
            which bounds memory and time on big corpora.
        seed: seed for that sample.
        num_threads: trainer threads; the pieces and scores do not depend on it.

    Returns:
        The model files, ``[joint]`` or ``[src, tgt]``: the arguments ``model.Tokenizer`` takes.

    Raises:
        SpmError: no sentences, or SentencePiece rejected the options (e.g. a vocabulary too
            small for byte fallback).
    """
    if model_type not in ("unigram", "bpe"):
        raise ValueError(f"model_type must be 'unigram' or 'bpe', got {model_type!r}")
    prefix = Path(out_prefix)
    options: dict[str, object] = {
        "vocab_size": vocab_size,
        "model_type": model_type,
        "character_coverage": character_coverage,
        "byte_fallback": byte_fallback,
        "num_threads": num_threads,
        "minloglevel": 2,  # the C++ trainer writes to stderr, not to logging; keep it to errors
    }
    src_texts, tgt_texts = _texts(src), _texts(tgt)
    if joint:
        both = chain(src_texts, tgt_texts)
        # Twice the budget: the same number of sentences per language as separate models get.
        return [_train_one(both, prefix, 2 * input_sentence_size, seed, options)]
    return [
        _train_one(texts, _side_prefix(prefix, side), input_sentence_size, seed, options)
        for side, texts in (("src", src_texts), ("tgt", tgt_texts))
    ]


def _side_prefix(prefix: Path, side: str) -> Path:
    return prefix.with_name(f"{prefix.name}.{side}")
