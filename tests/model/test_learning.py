"""The honest end-to-end check: a tiny model learns to reverse random symbol sequences.

If the encoder, attention, decoder, teacher-forced loss and greedy search do not fit together
(a shifted target, a mask the wrong way round, a state reordered wrongly) this fails, where
the unit tests with random weights might not. Ids are built directly, without SentencePiece.
About 5 s on an idle core (200 steps of batch 64); it stays fast (not marked slow).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from model import BOS_ID, EOS_ID, PAD_ID, DecodeOptions, ModelConfig, Seq2Seq, greedy_search

N_SYMBOLS, MIN_LEN, MAX_LEN = 10, 3, 8
STEPS, BATCH, LR = 200, 64, 1e-2


def reversal_batch(gen: torch.Generator, n: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Random sequences of ids 4..13 and their reversal, padded as training pads them.

    Returns:
        src (n, MAX_LEN+1) ending in EOS, src_lens (n,), tgt_in (n, MAX_LEN+1) starting with
        BOS, tgt_out (n, MAX_LEN+1) ending in EOS.
    """
    lens = torch.randint(MIN_LEN, MAX_LEN + 1, (n,), generator=gen)
    symbols = torch.randint(4, 4 + N_SYMBOLS, (n, MAX_LEN), generator=gen)
    pos = torch.arange(MAX_LEN)
    real = pos < lens[:, None]  # (n, MAX_LEN)
    rows = torch.arange(n)
    src = torch.full((n, MAX_LEN + 1), PAD_ID)
    src[:, :MAX_LEN] = symbols.masked_fill(~real, PAD_ID)
    src[rows, lens] = EOS_ID
    reversed_ = symbols.gather(1, (lens[:, None] - 1 - pos).clamp(min=0)).masked_fill(~real, PAD_ID)
    tgt_in = torch.full((n, MAX_LEN + 1), PAD_ID)
    tgt_in[:, 0] = BOS_ID
    tgt_in[:, 1:] = reversed_
    tgt_out = torch.full((n, MAX_LEN + 1), PAD_ID)
    tgt_out[:, :MAX_LEN] = reversed_
    tgt_out[rows, lens] = EOS_ID
    return src, lens + 1, tgt_in, tgt_out


@pytest.mark.usefixtures("one_thread")
def test_tiny_model_learns_to_reverse_sequences() -> None:
    torch.manual_seed(0)
    vocab = 4 + N_SYMBOLS
    config = ModelConfig(
        vocab, vocab, emb_size=16, hidden_size=32, encoder_layers=1, decoder_layers=1, dropout=0.0
    )
    model = Seq2Seq(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    gen = torch.Generator().manual_seed(0)
    first_loss = None
    for _ in range(STEPS):
        src, src_lens, tgt_in, tgt_out = reversal_batch(gen, BATCH)
        logits = model(src, src_lens, tgt_in)  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=PAD_ID)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        first_loss = first_loss if first_loss is not None else loss.item()
    assert first_loss is not None and loss.item() < 0.1 * first_loss

    model.eval()
    src, src_lens, _, tgt_out = reversal_batch(torch.Generator().manual_seed(12345), 200)
    with torch.no_grad():
        hyps = greedy_search(model, model.encode(src, src_lens), src_lens, DecodeOptions(1))
    expected = [row[: n - 1].tolist() for row, n in zip(tgt_out, src_lens.tolist(), strict=True)]
    exact = sum(h[0].token_ids == want for h, want in zip(hyps, expected, strict=True))
    assert exact / len(expected) >= 0.95, f"only {exact}/200 reversed exactly"
