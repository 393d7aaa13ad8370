"""Turn the config's corpora into encoded examples: read, clean, train SentencePiece, encode."""

from __future__ import annotations

import contextlib
import fcntl
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from model import Tokenizer
from training.batching import Example, encode_pairs
from training.clean import clean_pairs
from training.config import PATH_FIELDS, ConfigError, DataConfig, TrainConfig
from training.corpus import Pair, read_pairs
from training.spm import train_sentencepiece

log = logging.getLogger(__name__)


@dataclass
class PreparedData:
    tokenizer: Tokenizer
    train: list[Example]
    valid_pairs: list[Pair]
    valid: list[Example]


def check_run_dir(run_dir: Path) -> None:
    """Fail, before anything is written, where ``run_dir`` or a folder above it is a file:
    creating it would fail with a bare ``[Errno 17] File exists``."""
    for path in (run_dir, *run_dir.parents):
        if path.is_dir():
            return
        if path.exists():
            where = f"run_dir {run_dir}" if path == run_dir else f"run_dir {run_dir}: {path}"
            raise ConfigError(
                f"{where} is a file; run_dir must be a directory, or a path that does not exist yet"
            )


@contextlib.contextmanager
def hold_run_dir(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir`` for one training process (rank 0 under torchrun) while it trains: two
    runs in one directory would interleave their checkpoints and metrics."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / ".lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"run_dir {run_dir} is in use by another nmt train: wait for it to finish, "
                "or choose another run_dir"
            ) from None
        yield  # closing the file releases the lock, also when the process dies


def check_data_files(data: DataConfig) -> None:
    """Fail, before anything is written, where a configured corpus file cannot be opened: the
    test set is read only by ``nmt export``, so a missing one failed after the whole run."""
    for key in PATH_FIELDS:
        path = getattr(data, key)
        if path is None:
            continue
        try:
            with open(path, "rb"):
                pass
        except OSError as err:
            raise ConfigError(
                f"data.{key}: cannot read {path} ({err.strerror or err}); every data file "
                "in the config must exist and be readable before training starts"
            ) from err


def spm_files(run_dir: Path, joint: bool) -> list[Path]:
    prefix = run_dir / "spm"
    return (
        [prefix.with_suffix(".model")]
        if joint
        else [
            prefix.with_name("spm.src.model"),
            prefix.with_name("spm.tgt.model"),
        ]
    )


def load_or_train_tokenizer(cfg: TrainConfig, train_pairs: list[Pair], run_dir: Path) -> Tokenizer:
    """Reuse the run's SentencePiece model(s) when present (resume), else train them."""
    files = spm_files(run_dir, cfg.tokenizer.joint)
    if not all(f.is_file() for f in files):
        log.info(
            "training SentencePiece (%s, vocab %d)",
            cfg.tokenizer.model_type,
            cfg.tokenizer.vocab_size,
        )
        files = train_sentencepiece(
            [s for s, _ in train_pairs],
            [t for _, t in train_pairs],
            run_dir / "spm",
            vocab_size=cfg.tokenizer.vocab_size,
            model_type=cfg.tokenizer.model_type,
            character_coverage=cfg.tokenizer.character_coverage,
            byte_fallback=cfg.tokenizer.byte_fallback,
            joint=cfg.tokenizer.joint,
            input_sentence_size=cfg.tokenizer.input_sentence_size,
            seed=cfg.seed,
        )
    return Tokenizer(*files)


def prepare(cfg: TrainConfig, run_dir: Path) -> PreparedData:
    train_pairs = read_pairs(**cfg.data.split("train"))
    train_pairs, _ = clean_pairs(train_pairs, cfg.data.clean)  # logs what each filter removed
    valid_pairs = read_pairs(**cfg.data.split("valid"))
    tokenizer = load_or_train_tokenizer(cfg, train_pairs, run_dir)
    train = encode_pairs(train_pairs, tokenizer)
    log.info("train: %d pairs, valid: %d pairs", len(train), len(valid_pairs))
    return PreparedData(tokenizer, train, valid_pairs, encode_pairs(valid_pairs, tokenizer))
