"""Batched beam search over one flat (batch x beam) dimension with fixed shapes.

Row ``b * K + k`` holds beam k of sentence b; the encoder output keeps one row per sentence
(attention groups the K rows, see ``Attention.forward``). Every step scores all K*V
continuations of each sentence, keeps the best K that do not end, and moves the ones that end
into a per-sentence buffer of finished hypotheses.

Shapes: B batch, K beam size, N = B*K rows, V vocabulary, T maximum target steps, S source
length.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from model.decoder import EncoderOutput
from model.search import (
    DecodeOptions,
    Hypothesis,
    SpaceRule,
    StepModel,
    constrain,
    length_penalty,
    to_hypothesis,
)
from model.tokenizer import BOS_ID, EOS_ID, PAD_ID


class Candidates(NamedTuple):
    """The 2K best continuations of each sentence, best first."""

    scores: Tensor  # (B, 2K) accumulated log-probabilities
    beam: Tensor  # (B, 2K) which beam each one extends
    token: Tensor  # (B, 2K) the token it appends


class Finished(NamedTuple):
    """Up to K finished hypotheses per sentence, kept sorted by normalized score."""

    scores: Tensor  # (B, K), -inf where empty
    tokens: Tensor  # (B, K, T)
    attn: Tensor | None  # (B, K, T, S)


def beam_rows(batch: int, beam_size: int, device: torch.device) -> Tensor:
    """(N,) = [0]*K + [1]*K + ...: the sentence of every beam row, to repeat per-sentence rows."""
    return torch.arange(batch, device=device).repeat_interleave(beam_size)


def initial_scores(batch: int, beam_size: int, device: torch.device) -> Tensor:
    """(B, K) = [0, -inf, ...]: at step 0 all beams are identical, so only beam 0 may expand."""
    scores = torch.full((batch, beam_size), float("-inf"), device=device)
    scores[:, 0] = 0.0
    return scores


def topk_flat(scores: Tensor, log_probs: Tensor, k: int) -> Candidates:
    """Best ``k`` continuations over all beams of each sentence.

    A sentence's best k of its K*V continuations are among each beam's own best k, so every
    row is cut to its top k first and only K*k sums are formed, not K*V.

    Args:
        scores: (B, K) accumulated scores of the live beams.
        log_probs: (N, V) next-token log-probabilities of every row.
    """
    batch, beam_size = scores.shape
    per_row = min(k, log_probs.size(-1))
    row_scores, row_tokens = log_probs.topk(per_row, dim=1)  # (N, k)
    flat = (scores.reshape(-1, 1) + row_scores).view(batch, beam_size * per_row)  # (B, K*k)
    top_scores, top_idx = flat.topk(min(k, beam_size * per_row), dim=1)  # (B, 2K)
    tokens = row_tokens.view(batch, beam_size * per_row).gather(1, top_idx)
    return Candidates(top_scores, top_idx // per_row, tokens)


def live_choice(cand: Candidates, beam_size: int, eos_id: int = EOS_ID) -> Tensor:
    """(B, K) positions in ``cand`` of the best K candidates that do not end the sentence."""
    positions = torch.arange(cand.token.size(1), device=cand.token.device)
    # Ending candidates sort after all others; ties keep the score order.
    order = positions + cand.token.eq(eos_id).long() * cand.token.size(1)  # (B, 2K)
    return order.topk(beam_size, dim=1, largest=False).indices


def reorder(rows: Tensor, *tensors: Tensor) -> list[Tensor]:
    """Rows ``rows`` of each per-row tensor: the history follows the beam it came from."""
    return [t.index_select(0, rows) for t in tensors]


def merge_best(
    scores: Tensor, new_scores: Tensor, tokens: Tensor, new_tokens: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """(B, K) scores and (B, K, T) tokens, old and new -> the K best of both, and where each
    came from in the old-then-new order (B, K)."""
    best_scores, keep = torch.cat([scores, new_scores], dim=1).topk(scores.size(1), dim=1)
    both = torch.cat([tokens, new_tokens], dim=1)  # (B, 2K, T)
    return best_scores, both.gather(1, keep.unsqueeze(-1).expand(-1, -1, both.size(-1))), keep


def merge_finished(
    finished: Finished,
    active: Tensor,
    new_scores: Tensor,
    new_tokens: Tensor,
    new_attn: Tensor | None,
) -> Tensor:
    """Keep, for each ``active`` sentence, the K best of its finished hypotheses and the new
    ones (-inf = not finished), in ``finished`` itself; returns how many each now has (A,)."""
    old_tokens = finished.tokens[active]
    scores, tokens, keep = merge_best(finished.scores[active], new_scores, old_tokens, new_tokens)
    finished.scores[active], finished.tokens[active] = scores, tokens
    if finished.attn is not None and new_attn is not None:
        both = torch.cat([finished.attn[active], new_attn], dim=1)  # (A, 2K, T, S)
        index = keep[:, :, None, None].expand(-1, -1, *both.shape[2:])
        finished.attn[active] = both.gather(1, index)
    return torch.isfinite(scores).sum(dim=1)


def finalize(finished: Finished, src_lens: Tensor, n_best: int) -> list[list[Hypothesis]]:
    """The ``n_best`` finished hypotheses of every sentence, best first, as Python objects."""
    scores, tokens = finished.scores.tolist(), finished.tokens.tolist()
    results = []
    for b, src_len in enumerate(src_lens.tolist()):
        hyps = []
        for k in range(n_best):
            if scores[b][k] == float("-inf"):
                break
            attn = finished.attn[b, k] if finished.attn is not None else None
            hyps.append(to_hypothesis(tokens[b][k], scores[b][k], attn, src_len))
        results.append(hyps)
    return results


def keep_sentences(live: Tensor, beam_size: int) -> Tensor:
    """Row indices (A'*K,) of the beams of the sentences ``live`` (A',) in the flat layout."""
    offsets = torch.arange(beam_size, device=live.device)
    return (live.unsqueeze(1) * beam_size + offsets).reshape(-1)


def next_beams(
    cand: Candidates, done: Tensor, active: Tensor, beam_size: int, eos_id: int = EOS_ID
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
    """The best K candidates of each sentence that do not end become its beams, and the done
    sentences leave the batch.

    Returns the sentences still decoding (A',), their beams' scores (A', K), tokens (A'*K,) and
    the rows they extend (A'*K,), and which of ``active`` stay (None: all of them).
    """
    base = (torch.arange(active.size(0), device=active.device) * beam_size).unsqueeze(1)
    pick = live_choice(cand, beam_size, eos_id)  # (A, K)
    scores = cand.scores.gather(1, pick)
    token = cand.token.gather(1, pick).reshape(-1)  # (A*K,)
    rows = (base + cand.beam.gather(1, pick)).reshape(-1)  # (A*K,)
    live: Tensor | None = None
    if bool(done.any()):
        live = (~done).nonzero().squeeze(1)  # (A',)
        keep = keep_sentences(live, beam_size)  # (A'*K,)
        active, scores, token, rows = active[live], scores[live], token[keep], rows[keep]
    return active, scores, token, rows, live


def ending_candidates(
    cand: Candidates,
    history: Tensor,
    at_limit: Tensor,
    t: int,
    beam_size: int,
    alpha: float,
    eos_id: int = EOS_ID,
) -> tuple[Tensor, Tensor, Tensor]:
    """Step t's candidates among each sentence's top K that end the sentence (EOS, or its
    length limit: ``at_limit`` (A, 1)).

    Returns their length-normalized scores, -inf for the candidates that go on (A, K), their
    tokens with the history of the rows they extend (A, K, T), and those rows (A*K,).
    """
    n_active = cand.scores.size(0)
    base = (torch.arange(n_active, device=cand.scores.device) * beam_size).unsqueeze(1)  # (A, 1)
    top_scores = cand.scores[:, :beam_size]
    top_rows = (base + cand.beam[:, :beam_size]).reshape(-1)
    ends = (cand.token[:, :beam_size].eq(eos_id) | at_limit) & torch.isfinite(top_scores)
    normalized = top_scores / length_penalty(torch.tensor(t + 1.0), alpha)
    end_tokens = history[top_rows].view(n_active, beam_size, history.size(1))  # (A, K, T)
    end_tokens[:, :, t] = cand.token[:, :beam_size]
    return normalized.masked_fill(~ends, float("-inf")), end_tokens, top_rows


def beam_search(
    model: StepModel,
    enc: EncoderOutput,
    src_lens: Tensor,
    options: DecodeOptions,
    space: SpaceRule | None = None,
) -> list[list[Hypothesis]]:
    """Batched beam search; returns ``options.n_best`` hypotheses per sentence, best first.

    A sentence is done once its best candidate ends (and it has n_best finished hypotheses)
    or it reaches its length limit; done sentences leave the batch, and the loop stops when
    none is left. ``active`` (A,) maps the rows still decoding to their sentence.
    """
    batch, beam_size, device = src_lens.size(0), options.beam_size, enc.memory.device
    whole = enc  # all sentences: ``enc`` loses the done ones
    max_lens = options.max_lengths(src_lens).to(device)  # (B,)
    steps, src_width = int(max_lens.max()), enc.memory.size(1)
    state = model.initial_state(enc).select(beam_rows(batch, beam_size, device))  # (A*K rows)
    scores = initial_scores(batch, beam_size, device)  # (A, K)
    active = torch.arange(batch, device=device)  # (A,)
    history = torch.full((batch * beam_size, steps), PAD_ID, dtype=torch.long, device=device)
    want_attn = options.return_attention
    attn_hist = enc.memory.new_zeros(batch * beam_size, steps, src_width) if want_attn else None
    finished = Finished(
        torch.full((batch, beam_size), float("-inf"), device=device),
        torch.full((batch, beam_size, steps), PAD_ID, dtype=torch.long, device=device),
        enc.memory.new_zeros(batch, beam_size, steps, src_width) if want_attn else None,
    )
    prev = torch.full((batch * beam_size,), BOS_ID, dtype=torch.long, device=device)
    for t in range(steps):
        log_probs, state = model.decode_step(prev, state, enc)  # (A*K, V)
        log_probs = constrain(log_probs, t, prev, enc, options, space)
        cand = topk_flat(scores, log_probs, 2 * beam_size)
        n_active = active.size(0)

        # 1. Candidates among the top K that end here (or hit the length limit) are finished.
        at_limit = (t + 1 >= max_lens[active]).unsqueeze(1)  # (A, 1)
        end_scores, end_tokens, top_rows = ending_candidates(
            cand, history, at_limit, t, beam_size, options.length_penalty
        )
        end_attn = None
        if attn_hist is not None:
            end_attn = attn_hist[top_rows].view(n_active, beam_size, steps, src_width)
            end_attn[:, :, t] = state.attn[top_rows].view(n_active, beam_size, src_width)
        n_finished = merge_finished(finished, active, end_scores, end_tokens, end_attn)  # (A,)
        done = (cand.token[:, 0].eq(EOS_ID) & (n_finished >= options.n_best)) | at_limit.squeeze(1)
        if bool(done.all()):
            break

        # 2. The best K candidates that continue become the next beams of the sentences that
        # are not done; done sentences leave the batch.
        active, scores, token, rows, live = next_beams(cand, done, active, beam_size)
        if live is not None:
            enc = enc.select(live)
        state = state.select(rows)
        (history,) = reorder(rows, history)
        history[:, t] = token
        if attn_hist is not None:
            (attn_hist,) = reorder(rows, attn_hist)
            attn_hist[:, t] = state.attn
        prev = token
    finished = finished._replace(tokens=whole.target_ids(finished.tokens))
    return finalize(finished, src_lens, options.n_best)
