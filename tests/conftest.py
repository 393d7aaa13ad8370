"""Session fixtures shared by every test package: a tiny SentencePiece model, a seeded tiny
Seq2Seq and a bundle written from them.

Everything here is built once per session in a temporary directory, in about a second, so the
unit tests never depend on a trained model or on files outside the repository.
"""

from __future__ import annotations

import gc
import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sentencepiece as spm
import torch

from model import ModelConfig, Seq2Seq, Tokenizer, save_bundle
from model.tokenizer import SPM_SPECIAL_IDS

# Made-up words (as in training/synthetic.py), so SentencePiece learns multi-character pieces.
WORDS = tuple(f"{c}{v}" for c in "bdgklmnprst" for v in "aeiou")[:30]


def synthetic_sentences(n: int = 200, seed: int = 0) -> list[str]:
    """``n`` sentences of 2-9 made-up words, the same for every session."""
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(2, 9))) for _ in range(n)]


def train_tiny_spm(prefix: Path, vocab_size: int = 56, seed: int = 0) -> Path:
    """A unigram model with the project's special ids (pad 0, unk 1, bos 2, eos 3).

    ``identity`` normalization keeps the file at about 1 KB: the default ``nmt_nfkc`` rule
    embeds a 240 KB character map, too big for a committed test bundle.
    """
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(synthetic_sentences(seed=seed)),
        model_prefix=str(prefix),
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        byte_fallback=False,
        normalization_rule_name="identity",
        hard_vocab_limit=False,
        **SPM_SPECIAL_IDS,
        num_threads=1,
        minloglevel=2,
    )
    return prefix.with_name(prefix.name + ".model")


def tiny_config(vocab_size: int, **overrides: Any) -> ModelConfig:
    """Embedding 8, hidden 16, one layer each side, no dropout; ``overrides`` change any field."""
    fields: dict[str, Any] = {
        "src_vocab_size": vocab_size,
        "tgt_vocab_size": vocab_size,
        "emb_size": 8,
        "hidden_size": 16,
        "encoder_layers": 1,
        "decoder_layers": 1,
        "dropout": 0.0,
    }
    fields.update(overrides)
    return ModelConfig(**fields)


def seeded_model(config: ModelConfig, seed: int = 0, emb_scale: float = 4.0) -> Seq2Seq:
    """A Seq2Seq with weights drawn from ``seed``, in eval mode.

    The embeddings (tied to the output layer) are scaled up from the training init (std
    1/sqrt(8)): at that scale an untrained tiny model emits one token for every input, and tests
    that compare translations of different inputs would prove nothing.
    """
    torch.manual_seed(seed)
    model = Seq2Seq(config).eval()
    with torch.no_grad():
        for emb in {model.encoder.embedding, model.decoder.embedding}:
            emb.weight.mul_(emb_scale)
    return model


@pytest.fixture(scope="session")
def spm_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny_spm(tmp_path_factory.mktemp("spm") / "spm")


@pytest.fixture(scope="session")
def tokenizer(spm_model: Path) -> Tokenizer:
    return Tokenizer(spm_model)


@pytest.fixture(scope="session")
def make_model(tokenizer: Tokenizer) -> Callable[..., Seq2Seq]:
    """Factory for seeded tiny models: ``make_model(attention="dot", input_feeding=True)``."""

    def make(seed: int = 0, **overrides: Any) -> Seq2Seq:
        return seeded_model(tiny_config(tokenizer.src_vocab_size, **overrides), seed)

    return make


@pytest.fixture(scope="session")
def tiny_model(make_model: Callable[..., Seq2Seq]) -> Seq2Seq:
    """The default tiny model (general attention, no input feeding). Do not modify it."""
    return make_model()


@pytest.fixture(scope="session")
def tiny_bundle(
    tmp_path_factory: pytest.TempPathFactory, tiny_model: Seq2Seq, tokenizer: Tokenizer
) -> Path:
    """A bundle directory of ``tiny_model``; tests that damage it must copy it first."""
    out = tmp_path_factory.mktemp("bundles") / "tiny"
    metadata = {"model_id": "tiny-test", "source_lang": "xx", "target_lang": "yy"}
    return save_bundle(out, tiny_model, tokenizer, metadata=metadata)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """torch on one intra-op thread for the test, then as it was: tiny models run fastest so,
    and lanes need it (model/lanes.py)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _unfreeze_gc() -> Iterator[None]:
    """A started service freezes what it loaded out of the GC's view and raises its threshold
    (service/gc_tuning.py); service and integration tests start many in this one process, so
    undo both after each test."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``gpu`` tests run only where CUDA is: CI has none, a lent GPU machine does."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA; this machine has no GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
