"""Bidirectional LSTM encoder over packed sequences.

Shapes: B batch, S source length, E embedding size, H hidden size (H/2 per direction).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from model.config import ModelConfig


class Encoder(nn.Module):
    """Reads the source in both directions; outputs have the decoder's hidden size H."""

    def __init__(self, config: ModelConfig, embedding: nn.Embedding) -> None:
        super().__init__()
        self.embedding = embedding
        self.dropout = nn.Dropout(config.dropout)
        self.rnn = nn.LSTM(
            config.emb_size,
            config.hidden_size // 2,
            num_layers=config.encoder_layers,
            bidirectional=True,
            batch_first=True,
            dropout=config.dropout if config.encoder_layers > 1 else 0.0,
        )

    def forward(self, src_ids: Tensor, src_lens: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Encode a padded batch; padding never influences real positions.

        Args:
            src_ids: (B, S) token ids, padded with PAD.
            src_lens: (B,) true lengths, any order (packing sorts internally).

        Returns:
            memory (B, S, H), and the top layer's final hidden and cell states, each (B, H),
            with the forward and backward directions concatenated.
        """
        emb = self.dropout(self.embedding(src_ids))  # (B, S, E)
        packed = pack_padded_sequence(emb, src_lens.cpu(), batch_first=True, enforce_sorted=False)
        out, (h, c) = self.rnn(packed)
        memory, _ = pad_packed_sequence(out, batch_first=True, total_length=src_ids.size(1))
        final_h = torch.cat([h[-2], h[-1]], dim=-1)  # (B, H)
        final_c = torch.cat([c[-2], c[-1]], dim=-1)  # (B, H)
        return memory, final_h, final_c
