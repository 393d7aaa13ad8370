"""LSTM decoder with attention, stepwise (search) and teacher-forced (training).

Shapes: B batch, N hypothesis rows (B, or B x beam size in beam search), T target length,
S source length, E embedding size, H hidden size, O attentional-vector size (E when embeddings
are tied, else H), V vocabulary, L decoder layers.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from model import step_kernels
from model.attention import Attention
from model.config import ModelConfig
from model.shortlist import OutputVocabulary


class EncoderOutput(NamedTuple):
    """Everything the decoder needs from the source, computed once per batch."""

    memory: Tensor  # (B, S, H)
    keys: Tensor  # (B, S, A) attention keys, projected once
    mask: Tensor  # (B, S) True at real tokens
    final_h: Tensor  # (B, H)
    final_c: Tensor  # (B, H)
    vocab: OutputVocabulary | None = None  # the batch's shortlist; None: all of it

    def select(self, rows: Tensor) -> EncoderOutput:
        """Rows ``rows`` of every per-sentence tensor, e.g. the sentences still decoding."""
        memory, keys, mask, final_h, final_c = (
            t.index_select(0, rows)
            for t in (self.memory, self.keys, self.mask, self.final_h, self.final_c)
        )
        vocab = None if self.vocab is None else self.vocab.select(rows)
        return EncoderOutput(memory, keys, mask, final_h, final_c, vocab)

    def target_ids(self, tokens: Tensor) -> Tensor:
        """Search's tokens (positions in the shortlist, if any) -> target vocabulary ids.

        ``tokens`` has one leading row per sentence of this output, or K per sentence.
        """
        return tokens if self.vocab is None else self.vocab.to_ids(tokens)


class DecoderState(NamedTuple):
    """Immutable decoder state: one row per hypothesis, reordered with ``select``."""

    h: Tensor  # (L, B, H)
    c: Tensor  # (L, B, H)
    feed: Tensor  # (B, O) last attentional vector; (B, 0) without input feeding
    attn: Tensor  # (B, S) attention weights of the last step

    def select(self, rows: Tensor) -> DecoderState:
        return DecoderState(
            self.h.index_select(1, rows),
            self.c.index_select(1, rows),
            self.feed.index_select(0, rows),
            self.attn.index_select(0, rows),
        )


class Decoder(nn.Module):
    """Luong-style decoder: LSTM, attention on its output, tanh(W_c[context; h]), projection."""

    def __init__(self, config: ModelConfig, embedding: nn.Embedding) -> None:
        super().__init__()
        self.input_feeding = config.input_feeding
        self.embedding = embedding
        self.dropout = nn.Dropout(config.dropout)
        feed_size = config.out_size if config.input_feeding else 0
        self.rnn = nn.LSTM(
            config.emb_size + feed_size,
            config.hidden_size,
            num_layers=config.decoder_layers,
            batch_first=True,
            dropout=config.dropout if config.decoder_layers > 1 else 0.0,
        )
        self.attention = Attention(config.attention, config.hidden_size, config.hidden_size)
        self.combine = nn.Linear(2 * config.hidden_size, config.out_size, bias=False)
        self.generator = nn.Linear(config.out_size, config.tgt_vocab_size)
        if config.tie_embeddings:
            self.generator.weight = embedding.weight
        self.step_weights: list[Any] | None = None  # per layer; see prepare_search
        self.input_gates: Tensor | None = None  # (V, 4H) first layer's input side per token

    def prepare_search(self, int8: bool = False) -> None:
        """Arrange the LSTM weights for search, which runs one step of a few rows at a time.

        Without input feeding the first layer's input is the previous token's embedding alone,
        so its input projection plus both biases is a table with one row per target id: a
        step looks its rows up and multiplies only the recurrent weights. ``int8``: the
        matmuls use int8 weights (``step_kernels.pack_int8``). Call after the last weight
        change: the table is a snapshot.
        """
        layers = [tuple(layer) for layer in self.rnn.all_weights]
        if not self.input_feeding:
            w_ih, w_hh, b_ih, b_hh = layers[0]
            with torch.no_grad():
                self.input_gates = torch.addmm(b_ih + b_hh, self.embedding.weight, w_ih.t())
        weights: list[Any] = []
        for index, (w_ih, w_hh, b_ih, b_hh) in enumerate(layers):
            if index == 0 and self.input_gates is not None:
                weights.append(step_kernels.pack_int8(w_hh, None) if int8 else w_hh)
            elif int8:
                weights.append(step_kernels.pack_lstm_cell_int8((w_ih, w_hh, b_ih, b_hh)))
            else:
                weights.append((w_ih, w_hh, b_ih, b_hh))
        self.step_weights = weights

    def _attend(self, out: Tensor, enc: EncoderOutput) -> tuple[Tensor, Tensor]:
        """(B, T, H) LSTM outputs -> attentional vectors (B, T, O) and weights (B, T, S)."""
        context, weights = self.attention(out, enc.keys, enc.memory, enc.mask)
        vec = torch.tanh(self.combine(torch.cat([context, out], dim=-1)))  # (B, T, O)
        return vec, weights

    def forward(self, tgt_in: Tensor, state: DecoderState, enc: EncoderOutput) -> Tensor:
        """Teacher forcing: (B, T) shifted target ids -> logits (B, T, V).

        Without input feeding the whole target goes through the LSTM in one call; with it,
        each step needs the previous attentional vector, so the steps run one by one.
        """
        emb = self.dropout(self.embedding(tgt_in))  # (B, T, E)
        if not self.input_feeding:
            out, _ = self.rnn(emb, (state.h, state.c))  # (B, T, H)
            vec, _ = self._attend(out, enc)
        else:
            hc, feed, vecs = (state.h, state.c), state.feed, []
            for t in range(emb.size(1)):
                x = torch.cat([emb[:, t : t + 1], feed.unsqueeze(1)], dim=-1)  # (B, 1, E+O)
                out, hc = self.rnn(x, hc)
                step_vec, _ = self._attend(out, enc)  # (B, 1, O)
                feed = step_vec.squeeze(1)
                vecs.append(step_vec)
            vec = torch.cat(vecs, dim=1)  # (B, T, O)
        logits: Tensor = self.generator(self.dropout(vec))  # (B, T, V)
        return logits

    def _cell_step(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """One time step of the stacked LSTM, one cell per layer (see ``step_kernels``).

        Same weights and arithmetic as ``self.rnn``, but nn.LSTM's sequence kernel has a fixed
        cost per call that dominates a single step of a small batch. ``x`` is the first layer's
        input, or its input gates when ``prepare_search`` made the table. No dropout: search
        runs in eval mode.
        """
        hs, cs = [], []
        for layer in range(self.rnn.num_layers):
            weights = (
                tuple(self.rnn.all_weights[layer])
                if self.step_weights is None
                else self.step_weights[layer]
            )
            if layer == 0 and self.input_gates is not None:
                x, c_next = step_kernels.recurrent_cell(x, h[0], c[0], weights)
            elif isinstance(weights, tuple):
                x, c_next = step_kernels.lstm_cell(x, h[layer], c[layer], weights)
            else:
                x, c_next = step_kernels.lstm_cell_int8(x, h[layer], c[layer], weights)
            hs.append(x)
            cs.append(c_next)
        return x, (torch.stack(hs), torch.stack(cs))  # (N, H), (L, N, H) x 2

    def step(
        self, prev_ids: Tensor, state: DecoderState, enc: EncoderOutput
    ) -> tuple[Tensor, DecoderState]:
        """One step for search: (N,) previous ids -> logits (N, V) and the next state.

        ``enc`` has one row per sentence; N may be K times that (beam search), see Attention.
        With a shortlist (``enc.vocab``), ids and logits are positions in it, V its size.
        """
        ids = enc.target_ids(prev_ids)
        if self.input_gates is not None:
            x = self.input_gates.index_select(0, ids)  # (N, 4H)
        else:
            x = self.embedding(ids)  # (N, E)
        if self.input_feeding:
            x = torch.cat([x, state.feed], dim=-1)  # (N, E+O)
        out, (h, c) = self._cell_step(x, state.h, state.c)  # (N, H)
        context, weights = self.attention(out.unsqueeze(1), enc.keys, enc.memory, enc.mask)
        both = torch.cat([context.squeeze(1), out], dim=-1)  # (N, 2H)
        vec = torch.tanh(step_kernels.linear(both, self.combine))  # (N, O)
        feed = vec if self.input_feeding else state.feed
        if enc.vocab is None:
            logits = step_kernels.linear(vec, self.generator)  # (N, V)
        else:
            logits = enc.vocab.project(vec)  # (N, C)
        return logits, DecoderState(h, c, feed, weights.squeeze(1))
