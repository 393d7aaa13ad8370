"""Greedy and beam search: the length penalty, an oracle decoder with hand-set probabilities,
beam size 1 == greedy, and batch invariance of the raw search functions.

The oracle (after fairseq's ``tests/utils.py::sequence_generator_setup``) returns, for each
prefix, a distribution written in the test, so every beam, score and n-best list below can be
worked out on paper; the expected values are computed from those same probabilities.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from model import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    DecodeOptions,
    DecoderState,
    EncoderOutput,
    Hypothesis,
    Seq2Seq,
    SpaceRule,
    Tokenizer,
    beam_search,
    greedy_search,
    length_penalty,
)

A, B_, C = 4, 5, 6  # three ordinary tokens; ids 0-3 are pad, unk, bos, eos
VOCAB = 7
Table = Callable[[int, tuple[int, ...]], dict[int, float]]


def lp(length: int, alpha: float) -> float:
    return ((5 + length) / 6) ** alpha


class Oracle:
    """A ``StepModel`` whose next-token distribution is ``table(sentence, prefix)``.

    The state keeps each row's prefix in ``h`` (one slot per step, -1 = empty), so it follows
    the beams through ``DecoderState.select``; the sentence index rides in the encoder memory,
    which has one row per sentence while ``prev_ids`` may have K (beam search).
    Tokens missing from a table's dict get probability 0 (log-prob -inf).
    """

    def __init__(self, table: Table, max_steps: int = 16) -> None:
        self.table = table
        self.max_steps = max_steps
        self.calls = 0

    def encoder_output(self, n_sentences: int, src_len: int = 4) -> EncoderOutput:
        memory = torch.arange(n_sentences, dtype=torch.float).view(-1, 1, 1)
        memory = memory.expand(n_sentences, src_len, 1).contiguous()  # (B, S, 1)
        mask = torch.ones(n_sentences, src_len, dtype=torch.bool)
        empty = torch.zeros(n_sentences, 1)
        return EncoderOutput(memory, memory, mask, empty, empty)

    def initial_state(self, enc: EncoderOutput) -> DecoderState:
        rows, src_len = enc.memory.shape[:2]
        h = torch.full((1, rows, self.max_steps), -1.0)
        attn = torch.full((rows, src_len), 1.0 / src_len)
        return DecoderState(h, h.clone(), torch.zeros(rows, 0), attn)

    def decode_step(
        self, prev_ids: Tensor, state: DecoderState, enc: EncoderOutput
    ) -> tuple[Tensor, DecoderState]:
        self.calls += 1
        h = state.h.clone()
        log_probs = torch.full((prev_ids.size(0), VOCAB), float("-inf"))
        for row, prev in enumerate(prev_ids.tolist()):
            slots = h[0, row]
            prefix = [int(x) for x in slots.tolist() if x >= 0]
            if prev != BOS_ID:
                slots[len(prefix)] = prev
                prefix.append(prev)
            sentence = int(enc.memory[row // (prev_ids.size(0) // enc.memory.size(0)), 0, 0])
            for token, p in self.table(sentence, tuple(prefix)).items():
                log_probs[row, token] = math.log(p)
        return log_probs, DecoderState(h, h.clone(), state.feed, state.attn)


def run(
    search: Callable[..., list[list[Hypothesis]]],
    table: Table,
    options: DecodeOptions,
    src_lens: list[int] | None = None,
) -> list[list[Hypothesis]]:
    lens = torch.tensor(src_lens or [4])
    oracle = Oracle(table)
    return search(oracle, oracle.encoder_output(len(lens), int(lens.max())), lens, options)


def tokens_and_scores(hyps: list[Hypothesis]) -> list[tuple[list[int], float]]:
    return [(h.token_ids, h.score) for h in hyps]


# --- length penalty ---------------------------------------------------------------------------


def test_length_penalty_alpha_zero_is_one() -> None:
    assert torch.equal(length_penalty(torch.tensor([0, 1, 7, 50]), 0.0), torch.ones(4))


def test_length_penalty_known_values() -> None:
    got = length_penalty(torch.tensor([1, 4, 7]), 1.0)
    assert torch.allclose(got, torch.tensor([1.0, 1.5, 2.0]))
    # ((5 + 13) / 6) ** 0.6 = 3 ** 0.6
    assert length_penalty(torch.tensor([13]), 0.6).item() == pytest.approx(3**0.6, rel=1e-6)
    # Integer lengths work (the search passes long tensors) and grow monotonically.
    values = length_penalty(torch.arange(1, 20), 0.6)
    assert torch.all(values[1:] > values[:-1])


def test_decode_options_max_lengths() -> None:
    lens = torch.tensor([2, 10])
    assert DecodeOptions(max_len_a=1.5, max_len_b=10).max_lengths(lens).tolist() == [13, 25]
    assert DecodeOptions(max_len_a=0, max_len_b=0).max_lengths(lens).tolist() == [1, 1]
    capped = DecodeOptions(max_len_a=1.5, max_len_b=10, max_length=20).max_lengths(lens)
    assert capped.tolist() == [13, 20]


# --- the oracle: length penalty decides between a short and a long hypothesis -----------------

# At step 1 "a </s>" ends (raw log-prob log .6 + log .4 = -1.427) but "a a" (-1.204) is the best
# candidate, so the search goes on; "a a b </s>" ends at step 3 with log .6+.5+.9+.8 = -1.532.
# Without a length penalty the short one wins; with alpha = 1 the long one does
# (-1.427 / (7/6) = -1.223 < -1.532 / (9/6) = -1.021). "b a </s>" (-2.225) also ends, at step 2.
LP_TABLE = {
    (): {A: 0.6, B_: 0.4},
    (A,): {A: 0.5, EOS_ID: 0.4, B_: 0.1},
    (B_,): {A: 0.3, B_: 0.3, EOS_ID: 0.4},
    (A, A): {B_: 0.9, EOS_ID: 0.1},
    (B_, A): {EOS_ID: 0.9, A: 0.05, B_: 0.05},
    (A, A, B_): {EOS_ID: 0.8, A: 0.1, B_: 0.1},
}


def lp_table(_sentence: int, prefix: tuple[int, ...]) -> dict[int, float]:
    return LP_TABLE.get(prefix, {EOS_ID: 0.5, A: 0.25, B_: 0.25})


def logp(*probs: float) -> float:
    return sum(math.log(p) for p in probs)


SHORT = logp(0.6, 0.4)  # a </s>
LONG = logp(0.6, 0.5, 0.9, 0.8)  # a a b </s>


def test_beam_without_length_penalty_prefers_the_short_hypothesis() -> None:
    options = DecodeOptions(beam_size=2, n_best=2, length_penalty=0.0)
    (hyps,) = run(beam_search, lp_table, options)
    got = tokens_and_scores(hyps)
    assert [t for t, _ in got] == [[A], [A, A, B_]]
    assert [s for _, s in got] == pytest.approx([SHORT, LONG], rel=1e-5)


def test_beam_with_length_penalty_lets_the_longer_hypothesis_win() -> None:
    options = DecodeOptions(beam_size=2, n_best=2, length_penalty=1.0)
    (hyps,) = run(beam_search, lp_table, options)
    got = tokens_and_scores(hyps)
    assert [t for t, _ in got] == [[A, A, B_], [A]]
    assert [s for _, s in got] == pytest.approx([LONG / lp(4, 1.0), SHORT / lp(2, 1.0)], rel=1e-5)


def test_beam_keeps_the_k_best_finished_and_stops_when_the_best_candidate_ends() -> None:
    """Beam 3: at step 1 the top three are "a a", "a </s>" and "b </s>" (log .4 + log .4), so
    "b </s>" finishes too and outranks "b a </s>" (step 2). The search stops at step 3, when
    "a a b </s>" is the best candidate, not at the 16 steps the length limit allows."""
    options = DecodeOptions(beam_size=3, n_best=3, length_penalty=0.0)
    lens = torch.tensor([4])
    oracle = Oracle(lp_table)
    (hyps,) = beam_search(oracle, oracle.encoder_output(1), lens, options)
    assert [h.token_ids for h in hyps] == [[A], [A, A, B_], [B_]]
    assert [h.score for h in hyps] == pytest.approx([SHORT, LONG, logp(0.4, 0.4)], rel=1e-5)
    assert oracle.calls == 4


def test_greedy_follows_the_arg_max_path() -> None:
    (hyps,) = run(greedy_search, lp_table, DecodeOptions(beam_size=1, length_penalty=1.0))
    assert tokens_and_scores(hyps) == [([A, A, B_], pytest.approx(LONG / lp(4, 1.0), rel=1e-5))]


# --- min_length and max length ----------------------------------------------------------------


def eos_first_table(_sentence: int, prefix: tuple[int, ...]) -> dict[int, float]:
    """EOS is always the most likely token; "b" is likelier at even positions (no ties)."""
    b = 0.08 if len(prefix) % 2 == 0 else 0.05
    return {EOS_ID: 0.7, A: 0.3 - b, B_: b}


@pytest.mark.parametrize("search", [greedy_search, beam_search])
def test_without_min_length_eos_comes_first(search: Callable[..., list[list[Hypothesis]]]) -> None:
    options = DecodeOptions(beam_size=1 if search is greedy_search else 3, length_penalty=0.0)
    (hyps,) = run(search, eos_first_table, options)
    assert tokens_and_scores(hyps) == [([], pytest.approx(math.log(0.7), rel=1e-5))]


@pytest.mark.parametrize("search", [greedy_search, beam_search])
def test_min_length_bans_eos_until_enough_tokens(
    search: Callable[..., list[list[Hypothesis]]],
) -> None:
    options = DecodeOptions(
        beam_size=1 if search is greedy_search else 3, min_length=2, length_penalty=0.6
    )
    (hyps,) = run(search, eos_first_table, options)
    # The ban does not renormalize: the score keeps the original log-probabilities.
    expected = logp(0.22, 0.25, 0.7) / lp(3, 0.6)
    assert tokens_and_scores(hyps) == [([A, A], pytest.approx(expected, rel=1e-5))]


def test_min_length_applies_to_every_hypothesis_in_the_n_best_list() -> None:
    options = DecodeOptions(beam_size=3, n_best=3, min_length=2, length_penalty=0.0)
    (hyps,) = run(beam_search, eos_first_table, options)
    assert len(hyps) == 3
    assert all(len(h.token_ids) >= 2 for h in hyps)
    # Step 2 (EOS allowed): the top three are "a a </s>" (-3.26), "b a </s>" (-4.27) and
    # "a a a" (-4.41), which beats "a b </s>" (-4.87) to the last live beam. Only two have
    # finished, fewer than n_best, so the search goes on; at step 3 "a a a </s>" (-4.77) is
    # the best candidate and completes the list.
    assert [h.token_ids for h in hyps] == [[A, A], [B_, A], [A, A, A]]
    expected = [logp(0.22, 0.25, 0.7), logp(0.08, 0.25, 0.7), logp(0.22, 0.25, 0.22, 0.7)]
    assert [h.score for h in hyps] == pytest.approx(expected, rel=1e-5)


def never_ends_table(_sentence: int, _prefix: tuple[int, ...]) -> dict[int, float]:
    return {A: 0.9, EOS_ID: 0.1}


def test_greedy_is_cut_off_at_the_length_limit() -> None:
    options = DecodeOptions(beam_size=1, max_len_a=0.0, max_len_b=3, length_penalty=1.0)
    (hyps,) = run(greedy_search, never_ends_table, options)
    assert tokens_and_scores(hyps) == [([A, A, A], pytest.approx(logp(0.9, 0.9, 0.9) / lp(3, 1)))]


def test_beam_is_cut_off_at_the_length_limit() -> None:
    """At the limit the live beams finish without EOS and compete with the ended ones."""
    options = DecodeOptions(beam_size=2, n_best=2, max_length=3, length_penalty=0.0)
    (hyps,) = run(beam_search, never_ends_table, options)
    assert [h.token_ids for h in hyps] == [[A, A, A], []]
    assert [h.score for h in hyps] == pytest.approx([logp(0.9, 0.9, 0.9), logp(0.1)], rel=1e-5)


@pytest.mark.parametrize("search", [greedy_search, beam_search])
def test_each_sentence_gets_its_own_length_limit(
    search: Callable[..., list[list[Hypothesis]]],
) -> None:
    options = DecodeOptions(beam_size=2 if search is beam_search else 1, max_len_a=1, max_len_b=0)
    results = run(search, never_ends_table, options, src_lens=[2, 5, 3])
    assert [len(hyps[0].token_ids) for hyps in results] == [2, 5, 3]


# --- what may follow the bare "▁" piece ------------------------------------------------------

# The oracle's ids as SentencePiece pieces: "a" starts a word, "▁" is the bare boundary piece
# and "b" continues a word.
PIECES = ("<pad>", "<unk>", "<s>", "</s>", "▁a", "▁", "b")
SPACE = SpaceRule.for_pieces(PIECES)
WORD, BARE, PART = A, B_, C


def space_table(_sentence: int, prefix: tuple[int, ...]) -> dict[int, float]:
    """The bare "▁" first; then a word start or the end are likelier than a continuation."""
    if prefix == ():
        return {BARE: 0.9, WORD: 0.1}
    if prefix == (BARE,):
        return {WORD: 0.5, EOS_ID: 0.3, PART: 0.2}
    return {EOS_ID: 0.9, WORD: 0.1}


def test_space_rule_bans_word_starts_the_bare_piece_and_eos() -> None:
    assert SPACE is not None
    assert SPACE.space_id == BARE
    assert SPACE.banned.tolist() == [False, False, False, True, True, True, False]
    assert SpaceRule.for_pieces(("<pad>", "<unk>", "<s>", "</s>", "▁a", "b")) is None


@pytest.mark.parametrize("search", [greedy_search, beam_search])
def test_after_the_bare_piece_search_takes_a_continuation(
    search: Callable[..., list[list[Hypothesis]]],
) -> None:
    options = DecodeOptions(beam_size=1 if search is greedy_search else 3, length_penalty=0.0)
    lens = torch.tensor([4])
    oracle = Oracle(space_table)
    without = search(oracle, oracle.encoder_output(1), lens, options)
    ruled = search(oracle, oracle.encoder_output(1), lens, options, SPACE)

    assert without[0][0].token_ids == [BARE, WORD]  # a gap: "▁" then a new word
    assert ruled[0][0].token_ids == [BARE, PART]
    assert ruled[0][0].score == pytest.approx(math.log(0.9 * 0.2 * 0.9))


def test_no_hypothesis_in_the_n_best_list_ends_on_the_bare_piece() -> None:
    options = DecodeOptions(beam_size=3, n_best=3, length_penalty=0.0)
    lens = torch.tensor([4])
    oracle = Oracle(space_table)
    without = beam_search(oracle, oracle.encoder_output(1), lens, options)
    ruled = beam_search(oracle, oracle.encoder_output(1), lens, options, SPACE)

    assert [BARE] in [h.token_ids for h in without[0]]  # "▁" then the end
    for hyp in ruled[0]:
        pairs = zip(hyp.token_ids, [*hyp.token_ids[1:], EOS_ID], strict=True)
        assert all(nxt == PART for prev, nxt in pairs if prev == BARE)


# --- batches of sentences on the oracle -------------------------------------------------------


def per_sentence_table(sentence: int, prefix: tuple[int, ...]) -> dict[int, float]:
    """Sentence 0 is the length-penalty table; sentence 1 prefers c c </s>; 2 never ends."""
    if sentence == 0:
        return lp_table(sentence, prefix)
    if sentence == 1:
        return {C: 0.7, EOS_ID: 0.3} if len(prefix) < 2 else {EOS_ID: 0.6, C: 0.4}
    return never_ends_table(sentence, prefix)


@pytest.mark.parametrize("search", [greedy_search, beam_search])
def test_oracle_batch_equals_sentences_alone(
    search: Callable[..., list[list[Hypothesis]]],
) -> None:
    options = DecodeOptions(beam_size=1 if search is greedy_search else 3, n_best=1)
    oracle = Oracle(per_sentence_table)
    enc = oracle.encoder_output(3)
    lens = torch.tensor([4, 4, 4])
    together = search(oracle, enc, lens, options)
    for i in range(3):
        alone = search(oracle, enc.select(torch.tensor([i])), lens[i : i + 1], options)
        assert tokens_and_scores(together[i]) == tokens_and_scores(alone[0])
    assert together[1][0].token_ids == [C, C]


# --- the real network: beam 1 == greedy, and batch invariance ---------------------------------

SENTENCES = ["ba be ki", "mo na pa ta sa de do", "ku", "de do di du da de go", "sa le"]


def encode_batch(tokenizer: Tokenizer, texts: list[str]) -> tuple[Tensor, Tensor]:
    ids = [tokenizer.encode_source(t) for t in texts]
    lens = torch.tensor([len(i) for i in ids])
    src = torch.full((len(ids), int(lens.max())), PAD_ID, dtype=torch.long)
    for row, seq in enumerate(ids):
        src[row, : len(seq)] = torch.tensor(seq)
    return src, lens


@pytest.mark.parametrize("min_length", [0, 3])
def test_beam_size_one_equals_greedy(
    tiny_model: Seq2Seq, tokenizer: Tokenizer, min_length: int
) -> None:
    src, lens = encode_batch(tokenizer, SENTENCES)
    options = DecodeOptions(beam_size=1, min_length=min_length, max_len_b=4)
    with torch.no_grad():
        enc = tiny_model.encode(src, lens)
        greedy = greedy_search(tiny_model, enc, lens, options)
        beam = beam_search(tiny_model, enc, lens, options)
    assert [h[0].token_ids for h in beam] == [h[0].token_ids for h in greedy]
    for b, g in zip(beam, greedy, strict=True):
        assert b[0].score == pytest.approx(g[0].score, abs=1e-5)
    assert len({tuple(h[0].token_ids) for h in greedy}) > 1, "outputs should depend on input"


@pytest.mark.parametrize("beam_size", [1, 4])
def test_raw_search_is_batch_invariant(
    tiny_model: Seq2Seq, tokenizer: Tokenizer, beam_size: int
) -> None:
    """A sentence decoded alone equals the same sentence in a padded batch (longer + shorter)."""
    search = greedy_search if beam_size == 1 else beam_search
    options = DecodeOptions(beam_size=beam_size, n_best=beam_size, return_attention=True)
    src, lens = encode_batch(tokenizer, SENTENCES)
    assert len(set(lens.tolist())) == len(SENTENCES)  # really padded
    with torch.no_grad():
        together = search(tiny_model, tiny_model.encode(src, lens), lens, options)
        for i, text in enumerate(SENTENCES):
            one_src, one_lens = encode_batch(tokenizer, [text])
            (alone,) = search(tiny_model, tiny_model.encode(one_src, one_lens), one_lens, options)
            assert [h.token_ids for h in together[i]] == [h.token_ids for h in alone]
            for h_batch, h_alone in zip(together[i], alone, strict=True):
                assert h_batch.score == pytest.approx(h_alone.score, abs=1e-5)
                assert h_batch.attention is not None and h_alone.attention is not None
                assert torch.allclose(
                    torch.tensor(h_batch.attention), torch.tensor(h_alone.attention), atol=1e-5
                )
