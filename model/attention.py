"""Attention over the encoder memory: Luong ``general``/``dot`` or Bahdanau ``additive``.

Shapes: B batch, N query rows (B, or B x beam size), T target steps, S source length,
H query/key size, A attention size.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Attention(nn.Module):
    """Scores every query against the source and returns the attended context.

    The key-side projection depends only on the source, so ``project_keys`` runs once per batch
    (in ``encode``) instead of once per decoding step.
    """

    def __init__(self, kind: str, query_size: int, key_size: int) -> None:
        super().__init__()
        self.kind = kind
        if kind == "dot":
            if query_size != key_size:
                raise ValueError(
                    f"dot attention needs query_size == key_size ({query_size} != {key_size})"
                )
        elif kind == "general":
            self.key_proj = nn.Linear(key_size, query_size, bias=False)
        elif kind == "additive":
            self.key_proj = nn.Linear(key_size, query_size, bias=False)
            self.query_proj = nn.Linear(query_size, query_size, bias=True)
            self.energy = nn.Linear(query_size, 1, bias=False)
        else:
            raise ValueError(f"unknown attention type {kind!r}")

    def project_keys(self, memory: Tensor) -> Tensor:
        """(B, S, H) encoder memory -> (B, S, A) keys."""
        return memory if self.kind == "dot" else self.key_proj(memory)

    def forward(
        self, query: Tensor, keys: Tensor, memory: Tensor, mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Attend ``query`` (N, T, H) over the source of its sentence.

        Beam search keeps one encoder row per sentence and K query rows per sentence: query
        rows ``b*K .. b*K+K-1`` all attend over source ``b``, so the encoder output is never
        copied K times. Outside beam search N = B.

        Args:
            query: decoder outputs, (N, T, H) with N a multiple of B.
            keys: from ``project_keys``, (B, S, A).
            memory: encoder outputs, (B, S, H).
            mask: True at real source tokens, (B, S).

        Returns:
            context (N, T, H) and attention weights (N, T, S) that sum to 1 over real tokens.
        """
        rows, steps = query.shape[:2]
        grouped = query.reshape(keys.size(0), -1, query.size(-1))  # (B, K*T, H)
        if self.kind == "additive":
            hidden = self.query_proj(grouped).unsqueeze(2) + keys.unsqueeze(1)  # (B, K*T, S, A)
            scores = self.energy(torch.tanh(hidden)).squeeze(-1)  # (B, K*T, S)
        else:
            scores = torch.bmm(grouped, keys.transpose(1, 2))  # (B, K*T, S)
        scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores, dim=-1)  # (B, K*T, S)
        context = torch.bmm(weights, memory)  # (B, K*T, H)
        return context.view(rows, steps, -1), weights.view(rows, steps, -1)
