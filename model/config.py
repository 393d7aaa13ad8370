"""ModelConfig: the architecture, and nothing else (no optimiser, data or decoding settings)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

ATTENTION_TYPES = ("general", "dot", "additive")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the attention LSTM encoder-decoder.

    The encoder is a bidirectional LSTM with ``hidden_size // 2`` units per direction, so its
    outputs have the decoder's size and ``dot`` attention needs no projection.
    """

    src_vocab_size: int
    tgt_vocab_size: int
    shared_vocab: bool = True  # one joint SentencePiece model: one embedding table for both sides
    emb_size: int = 256
    hidden_size: int = 512
    encoder_layers: int = 2
    decoder_layers: int = 1
    attention: str = "general"  # "general" | "dot" (Luong) | "additive" (Bahdanau)
    input_feeding: bool = False  # feed the last attentional vector into the next step (Luong)
    dropout: float = 0.3
    tie_embeddings: bool = True  # the output projection reuses the target embedding matrix

    def __post_init__(self) -> None:
        problems = []
        if self.attention not in ATTENTION_TYPES:
            problems.append(f"attention must be one of {ATTENTION_TYPES}, got {self.attention!r}")
        if self.hidden_size % 2:
            problems.append(
                f"hidden_size must be even (bidirectional encoder), got {self.hidden_size}"
            )
        if self.shared_vocab and self.src_vocab_size != self.tgt_vocab_size:
            problems.append("shared_vocab needs src_vocab_size == tgt_vocab_size")
        for name in ("src_vocab_size", "tgt_vocab_size", "emb_size", "hidden_size"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be positive")
        if self.encoder_layers < 1 or self.decoder_layers < 1:
            problems.append("encoder_layers and decoder_layers must be at least 1")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must be in [0, 1), got {self.dropout}")
        if problems:
            raise ValueError("invalid ModelConfig: " + "; ".join(problems))

    @property
    def out_size(self) -> int:
        """Size of the attentional vector fed to the output layer.

        Tying needs it to equal the embedding size, so the combine layer projects straight to it.
        """
        return self.emb_size if self.tie_embeddings else self.hidden_size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig keys: {unknown}; known keys: {sorted(known)}")
        return cls(**data)
