"""TrainConfig: everything a training run needs, loaded from YAML with ``--set`` overrides.

Unknown keys fail with their full path and a suggestion (``loop.max_step is not a field; did you
mean loop.max_steps?``), wrong types with the path and the expected type. Relative data paths in
a YAML file are relative to that file's directory, so a config works from any working directory;
``run_dir`` and paths given with ``--set`` are relative to the working directory, like any
command-line path. ``save_resolved`` writes the result with every path absolute.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from training.clean import CleanOptions
from training.typed_config import (
    ConfigError,
    build,
    load_yaml,
    merge,
    one_line,
    parse_overrides,
    to_plain,
)

if TYPE_CHECKING:
    from model.config import ModelConfig

__all__ = [
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "LoopConfig",
    "ModelSection",
    "OptimConfig",
    "TokenizerConfig",
    "TrainConfig",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "save_resolved",
]

SPLITS = ("train", "valid", "test")
PATH_FIELDS = tuple(f"{split}_{kind}" for split in SPLITS for kind in ("src", "tgt", "tsv"))


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


@dataclass(frozen=True)
class DataConfig:
    """Corpus files: each split is ``<split>_src`` + ``<split>_tgt`` or one ``<split>_tsv``."""

    train_src: str | None = None
    train_tgt: str | None = None
    train_tsv: str | None = None
    valid_src: str | None = None
    valid_tgt: str | None = None
    valid_tsv: str | None = None
    test_src: str | None = None
    test_tgt: str | None = None
    test_tsv: str | None = None
    source_lang: str = "en"
    target_lang: str = "de"
    clean: CleanOptions = field(default_factory=CleanOptions)  # training split only

    def __post_init__(self) -> None:
        for split in SPLITS:
            src, tgt, tsv = self.split(split).values()
            given = (src is not None, tgt is not None, tsv is not None)
            ok = given in ((True, True, False), (False, False, True))
            if split == "test":
                ok = ok or given == (False, False, False)
            _require(ok, f"set {split}_src and {split}_tgt, or {split}_tsv (not both)")

    def split(self, name: str) -> dict[str, str | None]:
        """``{"src", "tgt", "tsv"}`` of a split: the keyword arguments of ``read_pairs``."""
        return {kind: getattr(self, f"{name}_{kind}") for kind in ("src", "tgt", "tsv")}

    def has_split(self, name: str) -> bool:
        return any(v is not None for v in self.split(name).values())


@dataclass(frozen=True)
class TokenizerConfig:
    """SentencePiece settings (see ``training.spm.train_sentencepiece``)."""

    model_type: Literal["unigram", "bpe"] = "unigram"
    vocab_size: int = 8000
    joint: bool = True
    character_coverage: float = 1.0
    byte_fallback: bool = True
    input_sentence_size: int = 1_000_000

    def __post_init__(self) -> None:
        _require(self.vocab_size >= 8, f"vocab_size must be at least 8, got {self.vocab_size}")
        _require(0.0 < self.character_coverage <= 1.0, "character_coverage must be in (0, 1]")
        _require(self.input_sentence_size > 100, "input_sentence_size must be above 100")


@dataclass(frozen=True)
class ModelSection:
    """``model.ModelConfig`` without the vocabulary sizes, which the tokenizer decides."""

    emb_size: int = 256
    hidden_size: int = 512
    encoder_layers: int = 2
    decoder_layers: int = 1
    attention: Literal["general", "dot", "additive"] = "general"
    input_feeding: bool = False
    dropout: float = 0.3
    tie_embeddings: bool = True
    shared_vocab: bool = True

    def __post_init__(self) -> None:
        # ModelConfig checks these too, but only after the tokenizer is trained; fail at load.
        for name in ("emb_size", "hidden_size", "encoder_layers", "decoder_layers"):
            _require(getattr(self, name) >= 1, f"{name} must be at least 1")
        _require(self.hidden_size % 2 == 0, "hidden_size must be even (bidirectional encoder)")
        _require(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")

    def to_model_kwargs(self, src_vocab_size: int, tgt_vocab_size: int) -> dict[str, Any]:
        """Keyword arguments of ``ModelConfig``."""
        sizes = {"src_vocab_size": src_vocab_size, "tgt_vocab_size": tgt_vocab_size}
        return {**sizes, **to_plain(self)}

    def to_model_config(self, src_vocab_size: int, tgt_vocab_size: int) -> ModelConfig:
        """The ``ModelConfig`` for these vocabulary sizes."""
        # Imported here: model/ pulls in torch, which loading a config does not need.
        from model.config import ModelConfig

        return ModelConfig(**self.to_model_kwargs(src_vocab_size, tgt_vocab_size))


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser, learning-rate schedule and loss settings."""

    optimizer: Literal["adam", "adamw"] = "adam"
    lr: float = 1e-3  # peak learning rate, reached at the end of warmup
    betas: tuple[float, float] = (0.9, 0.98)
    weight_decay: float = 0.0
    schedule: Literal["constant", "warmup_inverse_sqrt", "warmup_cosine", "plateau"] = (
        "warmup_inverse_sqrt"
    )
    warmup_steps: int = 1000
    min_lr: float = 0.0
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    clip_norm: float | None = 1.0
    label_smoothing: float = 0.1
    accumulate: int = 1

    def __post_init__(self) -> None:
        _require(0 < self.lr < math.inf, f"lr must be positive and finite, got {self.lr}")
        _require(all(0.0 <= b < 1.0 for b in self.betas), "betas must be in [0, 1)")
        _require(self.weight_decay >= 0, "weight_decay must be >= 0")
        _require(0.0 <= self.min_lr <= self.lr, "min_lr must be in [0, lr]")
        _require(self.warmup_steps >= 0, "warmup_steps must be >= 0")
        _require(0.0 < self.plateau_factor < 1.0, "plateau_factor must be in (0, 1)")
        _require(self.plateau_patience >= 0, "plateau_patience must be >= 0")
        _require(self.clip_norm is None or self.clip_norm > 0, "clip_norm must be > 0 or null")
        _require(0.0 <= self.label_smoothing < 1.0, "label_smoothing must be in [0, 1)")
        _require(self.accumulate >= 1, "accumulate must be at least 1")


@dataclass(frozen=True)
class LoopConfig:
    """When to stop, log, validate and save; batch size; precision and device."""

    max_steps: int | None = None
    max_epochs: int | None = 30
    max_minutes: float | None = None  # wall-clock budget of training steps (resumes add up)
    batch_tokens: int = 4096
    bucket_width: int = 8
    log_every: int = 100
    valid_every: int = 500
    save_every: int = 500
    keep_last: int = 3
    patience: int | None = 10
    amp: Literal["none", "bf16", "fp16"] = "none"
    device: Literal["auto", "cpu", "cuda"] = "auto"

    def __post_init__(self) -> None:
        _require(
            any(v is not None for v in (self.max_steps, self.max_epochs, self.max_minutes)),
            "set max_steps, max_epochs or max_minutes; otherwise training never stops",
        )
        _require(
            self.max_minutes is None or 0 < self.max_minutes < math.inf,
            f"max_minutes must be positive and finite or null, got {self.max_minutes}",
        )
        for name in ("max_steps", "max_epochs", "patience"):
            value = getattr(self, name)
            _require(value is None or value >= 1, f"{name} must be at least 1 or null")
        for name in ("batch_tokens", "bucket_width", "log_every", "valid_every", "save_every"):
            _require(getattr(self, name) >= 1, f"{name} must be at least 1")
        _require(self.keep_last >= 1, "keep_last must be at least 1")


@dataclass(frozen=True)
class EvalConfig:
    """Decoding for validation BLEU and the test set."""

    beam_size: int = 5
    max_valid_sentences: int | None = None
    length_penalty: float = 0.6

    def __post_init__(self) -> None:
        _require(self.beam_size >= 1, "beam_size must be at least 1")
        _require(
            self.max_valid_sentences is None or self.max_valid_sentences >= 1,
            "max_valid_sentences must be at least 1 or null",
        )
        _require(self.length_penalty >= 0, "length_penalty must be >= 0")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """A whole training run."""

    data: DataConfig
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelSection = field(default_factory=ModelSection)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run_dir: str
    seed: int = 1234

    def __post_init__(self) -> None:
        _require(
            not self.model.shared_vocab or self.tokenizer.joint,
            "model.shared_vocab needs tokenizer.joint: one vocabulary for both sides",
        )
        _require(self.seed >= 0, "seed must be >= 0")


def _absolute(value: Any, base: Path) -> Any:
    if not isinstance(value, str) or not value:
        return value  # let the type check report it
    return os.path.normpath(base / Path(value).expanduser())


def _resolve_paths(raw: Mapping[str, Any], base: Path) -> dict[str, Any]:
    """A copy of ``raw`` with relative data paths (and ``run_dir``) made absolute from ``base``."""
    out = dict(raw)
    data = out.get("data")
    if isinstance(data, Mapping):
        out["data"] = {k: _absolute(v, base) if k in PATH_FIELDS else v for k, v in data.items()}
    if "run_dir" in out:
        out["run_dir"] = _absolute(out["run_dir"], Path.cwd())
    return out


def config_from_dict(raw: Mapping[str, Any], base_dir: str | Path | None = None) -> TrainConfig:
    """Build a TrainConfig; relative data paths resolve from ``base_dir`` (default: cwd)."""
    return build(TrainConfig, _resolve_paths(raw, Path(base_dir or Path.cwd()).absolute()))


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
    """Load a YAML config and apply ``--set section.key=value`` overrides.

    Raises:
        ConfigError: unreadable YAML, or any invalid key or value (with its dotted path).
    """
    path = Path(path)
    try:
        raw = load_yaml(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot load config ({one_line(err)})") from err
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    from_file = _resolve_paths(raw, path.absolute().parent)
    from_cli = _resolve_paths(parse_overrides(overrides), Path.cwd())
    return build(TrainConfig, merge(from_file, from_cli))


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """Plain nested dict (lists for tuples), as YAML or JSON want it."""
    plain: dict[str, Any] = to_plain(cfg)
    return plain


def save_resolved(cfg: TrainConfig, path: str | Path) -> Path:
    """Write ``cfg`` as YAML (paths absolute); ``load_config`` of the file gives ``cfg`` back."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "# Resolved training config: defaults filled in, overrides applied, paths absolute.\n"
    body = yaml.safe_dump(config_to_dict(cfg), sort_keys=False, allow_unicode=True)
    path.write_text(header + body, encoding="utf-8")
    return path
