"""Decoding options, hypotheses, the length penalty and batched greedy search.

Shapes: B batch, S source length, T target steps, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from model.decoder import DecoderState, EncoderOutput
from model.tokenizer import BOS_ID, EOS_ID, PAD_ID


@dataclass(frozen=True)
class DecodeOptions:
    """How to search. Frozen, so equal options hash equally and requests can be grouped."""

    beam_size: int = 5  # 1 = greedy
    n_best: int = 1  # hypotheses returned per sentence, at most beam_size
    length_penalty: float = 0.6  # GNMT alpha: score = log_prob / ((5 + len) / 6) ** alpha
    max_len_a: float = 1.5  # target length limit = a * source length + b ...
    max_len_b: int = 10
    max_length: int | None = None  # ... and never more than this, when set
    min_length: int = 0  # no EOS before this many target tokens
    return_attention: bool = False

    def __post_init__(self) -> None:
        if self.beam_size < 1:
            raise ValueError(f"beam_size must be at least 1, got {self.beam_size}")
        if not 1 <= self.n_best <= self.beam_size:
            raise ValueError(
                f"n_best must be between 1 and beam_size ({self.beam_size}), got {self.n_best}"
            )
        if self.max_length is not None and self.max_length < 1:
            raise ValueError(f"max_length must be at least 1, got {self.max_length}")
        if self.length_penalty < 0 or self.min_length < 0 or self.max_len_a < 0:
            raise ValueError("length_penalty, min_length and max_len_a must not be negative")

    def max_lengths(self, src_lens: Tensor) -> Tensor:
        """(B,) source lengths -> (B,) target length limits, each at least 1."""
        limits = (src_lens.float() * self.max_len_a + self.max_len_b).long().clamp(min=1)
        if self.max_length is not None:
            limits = limits.clamp(max=self.max_length)
        return limits


@dataclass(frozen=True)
class Hypothesis:
    """One decoded target sentence."""

    token_ids: list[int]  # without BOS/EOS
    score: float  # log_prob / length_penalty(len, alpha), len counting the EOS
    attention: list[list[float]] | None = None  # (len(token_ids), source length incl. EOS)


class StepModel(Protocol):
    """What search needs from a model; tests plug in an oracle with hand-set probabilities.

    ``enc`` always has one row per sentence. ``initial_state`` gives one state row per
    sentence; beam search repeats each K times, so in ``decode_step`` rows ``b*K .. b*K+K-1``
    of ``prev_ids`` and ``state`` belong to sentence ``b`` of ``enc``. With a shortlist
    (``enc.vocab``) token ids are positions in it until ``enc.target_ids`` maps them back.
    """

    def initial_state(self, enc: EncoderOutput) -> DecoderState: ...

    def decode_step(
        self, prev_ids: Tensor, state: DecoderState, enc: EncoderOutput
    ) -> tuple[Tensor, DecoderState]: ...


def length_penalty(lengths: Tensor, alpha: float) -> Tensor:
    """GNMT length penalty ((5 + |Y|) / 6) ** alpha (Wu et al., 2016); alpha=0 disables it."""
    return ((5.0 + lengths.float()) / 6.0) ** alpha


def ban_early_eos(log_probs: Tensor, step: int, min_length: int, eos_id: int = EOS_ID) -> Tensor:
    """Forbid EOS before ``min_length`` target tokens."""
    if step < min_length:
        log_probs[:, eos_id] = float("-inf")
    return log_probs


def to_hypothesis(
    token_ids: list[int], score: float, attention: Tensor | None, src_len: int
) -> Hypothesis:
    """Cut ``token_ids`` at EOS/PAD; keep one attention row per kept token over real source."""
    kept: list[int] = []
    for token in token_ids:
        if token in (EOS_ID, PAD_ID):
            break
        kept.append(token)
    rows = None
    if attention is not None:
        rows = attention[: len(kept), :src_len].tolist()
    return Hypothesis(kept, score, rows)


def greedy_search(
    model: StepModel, enc: EncoderOutput, src_lens: Tensor, options: DecodeOptions
) -> list[list[Hypothesis]]:
    """Batched greedy decoding: the arg-max token at every step, for all sentences at once.

    Sentences leave the batch as soon as they end, so later steps only compute live rows.
    """
    batch, device = src_lens.size(0), enc.memory.device
    limits = options.max_lengths(src_lens).to(device)  # (A,) each live sentence's length limit
    steps = int(limits.max())
    state, whole = model.initial_state(enc), enc
    active = torch.arange(batch, device=device)  # (A,) sentences still decoding
    prev = torch.full((batch,), BOS_ID, dtype=torch.long, device=device)
    history: list[tuple[Tensor, Tensor, Tensor]] = []  # per step: active, token, its log-prob
    attn = (
        enc.memory.new_zeros(batch, steps, enc.memory.size(1)) if options.return_attention else None
    )
    for t in range(steps):
        log_probs, state = model.decode_step(prev, state, enc)  # (A, V)
        best, token = ban_early_eos(log_probs, t, options.min_length).max(dim=-1)  # (A,)
        history.append((active, token, best))
        if attn is not None:
            attn[active, t] = state.attn
        ended = token.eq(EOS_ID) | limits.le(t + 1)  # (A,)
        if bool(ended.any()):
            live = (~ended).nonzero().squeeze(1)  # (A',)
            if live.numel() == 0:
                break
            active, token, limits = active[live], token[live], limits[live]
            state, enc = state.select(live), enc.select(live)
        prev = token
    rows = torch.cat([active for active, _, _ in history])
    counts = torch.tensor([active.numel() for active, _, _ in history], device=device)
    steps_of = torch.arange(len(history), device=device).repeat_interleave(counts)
    tokens = torch.cat([token for _, token, _ in history])
    chosen = torch.cat([best for _, _, best in history])  # each token's log-prob
    return collect_hypotheses(rows, steps_of, tokens, chosen, whole, src_lens, options, attn)


def collect_hypotheses(
    rows: Tensor,
    steps: Tensor,
    tokens: Tensor,
    log_probs: Tensor,
    enc: EncoderOutput,
    src_lens: Tensor,
    options: DecodeOptions,
    attn: Tensor | None = None,
) -> list[list[Hypothesis]]:
    """Greedy search's record, one entry per (sentence, step) decoded: the sentence's row, the
    step, the token and its log-prob, (E,) each -> one hypothesis per sentence of ``enc``.

    The tokens go into one (B, T) table at once, not row by row every step.
    """
    batch = src_lens.size(0)
    table = torch.full((batch, int(steps.max()) + 1), PAD_ID, dtype=torch.long, device=rows.device)
    table[rows, steps] = tokens
    log_prob = log_probs.new_zeros(batch).index_add_(0, rows, log_probs)
    lengths = torch.bincount(rows, minlength=batch)
    scores = (log_prob / length_penalty(lengths, options.length_penalty)).tolist()
    token_lists, src_list = enc.target_ids(table).tolist(), src_lens.tolist()
    return [
        [
            to_hypothesis(
                token_lists[b], scores[b], attn[b] if attn is not None else None, src_list[b]
            )
        ]
        for b in range(batch)
    ]
