"""Decoding options, hypotheses, the length penalty, what each step may not choose, and batched
greedy search.

Shapes: B batch, S source length, T target steps, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

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


class SpaceRule(NamedTuple):
    """What may follow the bare word-boundary piece "▁" of a SentencePiece target vocabulary.

    SentencePiece marks a word's start with "▁" on its first piece; a word whose first piece
    has no such form starts with the bare "▁" and continues with pieces that do not start a
    word. So "▁" is never followed by a word-initial piece or by the end: that would be two
    spaces with nothing between them. A model can still choose it, chiefly under a shortlist
    that leaves out the continuation it wanted: on the Multi30k test set 6 of 1,000 greedy
    translations had such a gap with the shortlist, none without. Search forbids those pieces
    after "▁", at no cost in BLEU; the continuation it takes instead is not always a real word
    (bench/README.md, stop 32).
    """

    space_id: int  # the bare "▁" piece
    banned: Tensor  # (V,) bool: the target ids that may not follow it (word starts, EOS)

    @classmethod
    def for_pieces(
        cls, pieces: Sequence[str], device: torch.device | str = "cpu"
    ) -> SpaceRule | None:
        """The rule of a target vocabulary given as its pieces by id; None if it has no bare "▁"."""
        if "▁" not in pieces:
            return None
        banned = torch.tensor([piece.startswith("▁") for piece in pieces], device=device)
        banned[EOS_ID] = True
        return cls(pieces.index("▁"), banned)

    def apply(self, log_probs: Tensor, prev: Tensor, enc: EncoderOutput) -> Tensor:
        """``ban_after_space`` for search's tokens ``prev`` (positions under a shortlist)."""
        vocab = enc.vocab
        sentence_ids = None if vocab is None else vocab.sentence_ids
        return ban_after_space(
            log_probs, enc.target_ids(prev), sentence_ids, self.space_id, self.banned
        )


def ban_after_space(
    log_probs: Tensor,
    prev_ids: Tensor,
    sentence_ids: Tensor | None,
    space_id: int,
    banned: Tensor,
) -> Tensor:
    """Forbid ``banned`` target ids in the rows (N,) whose previous target id is ``space_id``.

    log_probs: (N, C), column j scoring target id j or, under a shortlist, ``sentence_ids[b, j]``
    (B, C) for the rows of sentence b (N = B x K); changed in place. Most steps have no such row
    and cost one comparison; the others touch only the R rows that follow the space.
    """
    after_space = prev_ids.eq(space_id)
    if not bool(after_space.any()):
        return log_probs
    rows = after_space.nonzero().squeeze(1)  # (R,)
    if sentence_ids is None:
        rows_banned = banned.unsqueeze(0).expand(rows.size(0), -1)  # (R, V)
    else:
        beam = log_probs.size(0) // sentence_ids.size(0)
        sentences = torch.div(rows, beam, rounding_mode="floor")
        rows_banned = banned[sentence_ids.index_select(0, sentences)]  # (R, C)
    log_probs[rows] = log_probs.index_select(0, rows).masked_fill(rows_banned, float("-inf"))
    return log_probs


def constrain(
    log_probs: Tensor,
    step: int,
    prev: Tensor,
    enc: EncoderOutput,
    options: DecodeOptions,
    space: SpaceRule | None,
) -> Tensor:
    """Forbid what may not come next: EOS before ``options.min_length`` target tokens, and
    after the bare "▁" what ``space`` bans. ``prev``: search's previous tokens."""
    log_probs = ban_early_eos(log_probs, step, options.min_length)
    return log_probs if space is None else space.apply(log_probs, prev, enc)


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
    model: StepModel,
    enc: EncoderOutput,
    src_lens: Tensor,
    options: DecodeOptions,
    space: SpaceRule | None = None,
) -> list[list[Hypothesis]]:
    """Batched greedy decoding: the arg-max token at every step, for all sentences at once.

    Sentences leave the batch as soon as they end, so later steps only compute live rows.
    ``space``: the target vocabulary's rule after the bare "▁" (None: no rule).
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
        best, token = constrain(log_probs, t, prev, enc, options, space).max(dim=-1)  # (A,)
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
