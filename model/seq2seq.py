"""Seq2Seq: the encoder, a bridge to the decoder's initial state, and the decoder.

Three entry points, each with one return type: ``encode`` (once per batch), ``decode_step``
(search) and ``forward`` (teacher-forced logits for training).
Shapes: B batch, S source length, T target length, H hidden size, L decoder layers, V vocabulary.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from model.config import ModelConfig
from model.decoder import Decoder, DecoderState, EncoderOutput
from model.encoder import Encoder
from model.shortlist import OutputVocabulary
from model.tokenizer import PAD_ID


class Seq2Seq(nn.Module):
    """Attention LSTM encoder-decoder described by a ``ModelConfig``."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        src_emb = nn.Embedding(config.src_vocab_size, config.emb_size, padding_idx=PAD_ID)
        tgt_emb = (
            src_emb
            if config.shared_vocab
            else nn.Embedding(config.tgt_vocab_size, config.emb_size, padding_idx=PAD_ID)
        )
        self.encoder = Encoder(config, src_emb)
        self.decoder = Decoder(config, tgt_emb)
        layers, hidden = config.decoder_layers, config.hidden_size
        self.bridge_h = nn.Linear(hidden, layers * hidden)
        self.bridge_c = nn.Linear(hidden, layers * hidden)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """PyTorch's default LSTM/Linear init; embeddings N(0, 1/emb_size), padding row zero.

        The small embedding scale keeps tied output logits near zero at the start. Uniform
        (-0.1, 0.1) everywhere (OpenNMT's default) left small models with vanishing attention
        gradients: they learned a unigram language model and never started to copy.
        """
        for module in self.modules():
            if isinstance(module, nn.LSTM | nn.Linear):
                module.reset_parameters()
        for emb in {self.encoder.embedding, self.decoder.embedding}:
            nn.init.normal_(emb.weight, 0.0, self.config.emb_size**-0.5)
            with torch.no_grad():
                emb.weight[PAD_ID].zero_()

    def encode(
        self, src_ids: Tensor, src_lens: Tensor, vocab: OutputVocabulary | None = None
    ) -> EncoderOutput:
        """(B, S) padded source ids and (B,) lengths -> encoder output for the decoder.

        ``vocab`` restricts search to a shortlist of target ids (``model.shortlist``).
        """
        memory, final_h, final_c = self.encoder(src_ids, src_lens)
        keys = self.decoder.attention.project_keys(memory)  # (B, S, A)
        return EncoderOutput(memory, keys, src_ids.ne(PAD_ID), final_h, final_c, vocab)

    def initial_state(self, enc: EncoderOutput) -> DecoderState:
        """Bridge the encoder's final states into every decoder layer's initial state."""
        batch, layers, hidden = (
            enc.final_h.size(0),
            self.config.decoder_layers,
            self.config.hidden_size,
        )
        h = torch.tanh(self.bridge_h(enc.final_h)).view(batch, layers, hidden).transpose(0, 1)
        c = self.bridge_c(enc.final_c).view(batch, layers, hidden).transpose(0, 1)  # (L, B, H)
        feed_size = self.config.out_size if self.config.input_feeding else 0
        feed = enc.memory.new_zeros(batch, feed_size)
        attn = enc.memory.new_zeros(batch, enc.memory.size(1))
        return DecoderState(h.contiguous(), c.contiguous(), feed, attn)

    def decode_step(
        self, prev_ids: Tensor, state: DecoderState, enc: EncoderOutput
    ) -> tuple[Tensor, DecoderState]:
        """(B,) previous target ids -> log-probabilities (B, V) and the next state."""
        logits, state = self.decoder.step(prev_ids, state, enc)
        return torch.log_softmax(logits.float(), dim=-1), state

    def forward(self, src_ids: Tensor, src_lens: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher forcing: logits (B, T, V) for the shifted target ``tgt_in`` (B, T)."""
        enc = self.encode(src_ids, src_lens)
        logits: Tensor = self.decoder(tgt_in, self.initial_state(enc), enc)
        return logits
