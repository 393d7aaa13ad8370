"""The network: shapes of encode/decode_step/forward, masking, and teacher forcing == stepping."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from model import PAD_ID, Seq2Seq
from model.config import ATTENTION_TYPES

# Three sources of different lengths (ids > 3 are ordinary pieces), padded to S = 5.
SOURCES = [[5, 9, 12, 7, 3], [8, 3], [11, 6, 3]]
TARGETS = [[4, 17, 9, 21], [2, 30, 30, 0], [2, 6, 0, 0]]  # decoder inputs, BOS = 2 first


def padded(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    lens = torch.tensor([len(r) for r in rows])
    ids = torch.full((len(rows), int(lens.max())), PAD_ID, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
    return ids, lens


def test_shapes_of_encode_decode_step_and_forward(make_model: Callable[..., Seq2Seq]) -> None:
    model = make_model(decoder_layers=2, input_feeding=True, tie_embeddings=False)
    cfg = model.config
    src, lens = padded(SOURCES)
    batch, width = src.shape
    with torch.no_grad():
        enc = model.encode(src, lens)
        assert enc.memory.shape == (batch, width, cfg.hidden_size)
        assert enc.keys.shape == (batch, width, cfg.hidden_size)
        assert enc.final_h.shape == enc.final_c.shape == (batch, cfg.hidden_size)
        assert torch.equal(enc.mask, src.ne(PAD_ID))
        # Padding positions of the memory are zero: packing never ran the LSTM over them.
        assert torch.all(enc.memory[~enc.mask] == 0)

        state = model.initial_state(enc)
        assert state.h.shape == state.c.shape == (2, batch, cfg.hidden_size)
        assert state.feed.shape == (batch, cfg.hidden_size)  # untied: O = H
        log_probs, state = model.decode_step(torch.full((batch,), 2), state, enc)
        assert log_probs.shape == (batch, cfg.tgt_vocab_size)
        assert torch.allclose(log_probs.exp().sum(-1), torch.ones(batch), atol=1e-5)
        assert state.attn.shape == (batch, width)
        assert torch.all(state.attn[~enc.mask] == 0)
        assert torch.allclose(state.attn.sum(-1), torch.ones(batch), atol=1e-6)

        logits = model(src, lens, torch.tensor(TARGETS))
        assert logits.shape == (batch, len(TARGETS[0]), cfg.tgt_vocab_size)


def test_state_select_reorders_every_field(make_model: Callable[..., Seq2Seq]) -> None:
    model = make_model(input_feeding=True)
    src, lens = padded(SOURCES)
    with torch.no_grad():
        enc = model.encode(src, lens)
        _, state = model.decode_step(torch.tensor([4, 5, 6]), model.initial_state(enc), enc)
    rows = torch.tensor([2, 2, 0])
    picked = state.select(rows)
    assert torch.equal(picked.h, state.h[:, rows])
    assert torch.equal(picked.c, state.c[:, rows])
    assert torch.equal(picked.feed, state.feed[rows])
    assert torch.equal(picked.attn, state.attn[rows])
    assert torch.equal(enc.select(rows).memory, enc.memory[rows])


def test_encoder_ignores_padding(make_model: Callable[..., Seq2Seq]) -> None:
    """A sentence's memory and final state do not change when padded next to longer ones."""
    model = make_model(encoder_layers=2)
    src, lens = padded(SOURCES)
    with torch.no_grad():
        batch_enc = model.encode(src, lens)
        for i, row in enumerate(SOURCES):
            alone = model.encode(torch.tensor([row]), torch.tensor([len(row)]))
            n = len(row)
            assert torch.allclose(batch_enc.memory[i, :n], alone.memory[0], atol=1e-6)
            assert torch.allclose(batch_enc.final_h[i], alone.final_h[0], atol=1e-6)
            assert torch.allclose(batch_enc.final_c[i], alone.final_c[0], atol=1e-6)


@pytest.mark.parametrize("attention", ATTENTION_TYPES)
@pytest.mark.parametrize("input_feeding", [False, True])
@pytest.mark.parametrize("prepared", [False, True])
def test_teacher_forcing_equals_stepwise_decoding(
    make_model: Callable[..., Seq2Seq], attention: str, input_feeding: bool, prepared: bool
) -> None:
    """forward() gives the same distributions as feeding the same tokens to decode_step(),
    also after prepare_search (without input feeding: the table of input gates)."""
    model = make_model(attention=attention, input_feeding=input_feeding, decoder_layers=2)
    if prepared:
        model.decoder.prepare_search()
        assert (model.decoder.input_gates is None) == input_feeding
    src, lens = padded(SOURCES)
    tgt_in = torch.tensor(TARGETS)
    with torch.no_grad():
        forced = torch.log_softmax(model(src, lens, tgt_in), dim=-1)  # (B, T, V)
        enc = model.encode(src, lens)
        state = model.initial_state(enc)
        for t in range(tgt_in.size(1)):
            log_probs, state = model.decode_step(tgt_in[:, t], state, enc)
            assert torch.allclose(forced[:, t], log_probs, atol=1e-5), f"step {t}"


def test_untied_separate_vocabularies_have_their_own_sizes() -> None:
    from model import ModelConfig

    cfg = ModelConfig(
        src_vocab_size=40,
        tgt_vocab_size=25,
        shared_vocab=False,
        tie_embeddings=False,
        emb_size=8,
        hidden_size=16,
        encoder_layers=1,
        dropout=0.0,
    )
    model = Seq2Seq(cfg).eval()
    src, lens = padded([[39, 3]])
    with torch.no_grad():
        logits = model(src, lens, torch.tensor([[2, 24]]))
    assert logits.shape == (1, 2, 25)
    assert model.encoder.embedding is not model.decoder.embedding


@pytest.mark.parametrize("input_feeding", [False, True])
def test_int8_search_steps_stay_close_to_float(
    make_model: Callable[..., Seq2Seq], input_feeding: bool
) -> None:
    """prepare_search(int8=True): every layer's int8 path (input-gate table or int8 cell)."""
    model = make_model(input_feeding=input_feeding, decoder_layers=2)
    src, lens = padded(SOURCES)
    tgt_in = torch.tensor(TARGETS)
    with torch.no_grad():
        enc = model.encode(src, lens)
        want = [model.decode_step(tgt_in[:, t], model.initial_state(enc), enc)[0] for t in (0, 1)]
        model.decoder.prepare_search(int8=True)
        got = [model.decode_step(tgt_in[:, t], model.initial_state(enc), enc)[0] for t in (0, 1)]
    for step, (float_lp, int8_lp) in enumerate(zip(want, got, strict=True)):
        # int8 weights: close to, not equal to, the float log-probabilities.
        torch.testing.assert_close(int8_lp, float_lp, rtol=0, atol=0.05, msg=f"step {step}")
        assert not torch.equal(int8_lp, float_lp)
