"""Vocabulary shortlist: score only the target tokens a source sentence makes likely.

The output layer (hidden x target vocabulary) is the largest matmul of a decoder step, and the
softmax and top-k over the whole vocabulary follow it. Most of the vocabulary never has a
chance for a given source, so, as Marian's lexical shortlists and CTranslate2's vocabulary
mapping do, a sentence scores only: the most frequent target tokens, and for every one of its
source tokens the target tokens that co-occur with it most strongly in the training corpus.

A batch computes the output layer once for the union of its sentences' candidates (one
matmul), then each sentence keeps only its own columns of it: the softmax and top-k of a
sentence run over its ~200 candidates instead of the batch's thousands. Rows are padded to one
width with other sentences' columns, which score -inf: a sentence translates the same in any
batch.

Strength is the Dice coefficient over sentence pairs, 2 c(s, t) / (c(s) + c(t)), which favours
translations over tokens that are merely frequent everywhere (those are in the frequent list).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from model import step_kernels
from model.step_kernels import PackedLinear
from model.tokenizer import EOS_ID, PAD_ID

SPECIAL_IDS = EOS_ID + 1  # ids 0..EOS_ID (pad, unk, bos, eos) are always scored


@dataclass(frozen=True)
class Shortlist:
    """Target ids always scored, and the best target ids for every source id."""

    frequent: Tensor  # (F,) int64, includes every special id
    by_source: Tensor  # (source vocabulary, k) int64, -1 where a source id has fewer

    def candidates(self, src_ids: Tensor) -> BatchCandidates:
        """(B, S) source ids (PAD allowed) -> the batch's union and each sentence's columns.

        Runs in NumPy on the CPU, then moves to ``src_ids``' device: a stable sort of booleans
        is a counting sort there. With the output rows it picks, a batch of 32 takes 2.3-2.7 ms
        against 3.7-4.3 ms for the same steps in torch (``bench/decode.py --service-batches``).
        """
        src = src_ids.cpu().numpy()
        batch = src.shape[0]
        frequent, by_source = self._tables
        per_source = by_source[src]  # (B, S, k), -1: none
        per_source[src == PAD_ID] = -1  # padding brings nothing: only a batch-mate makes it
        per_source = per_source.reshape(batch, -1)  # (B, S*k)
        mine = np.zeros((batch, self._target_vocab), dtype=bool)  # (B, V)
        mine[:, frequent] = True
        # -1 becomes id 0 (PAD), which is frequent (a special id) anyway.
        np.put_along_axis(mine, np.maximum(per_source, 0), True, axis=1)
        ids = np.flatnonzero(mine.any(axis=0))  # (U,) the union, ascending
        mine = mine[:, ids]  # (B, U)
        own = mine.sum(axis=1)  # (B,)
        width = int(own.max())
        # A sentence's own columns first, ascending; the rest of the union pads to ``width``.
        own_first = np.argsort(~mine, axis=1, kind="stable")[:, :width]
        device = src_ids.device
        foreign = None
        if own.min() < width:  # some row is padded (never in a batch of one)
            foreign = torch.from_numpy(np.arange(width) >= own[:, None]).to(device)
        return BatchCandidates(
            torch.from_numpy(ids).to(device), torch.from_numpy(own_first).to(device), foreign
        )

    @cached_property
    def _tables(self) -> tuple[np.ndarray, np.ndarray]:
        return self.frequent.cpu().numpy(), self.by_source.cpu().numpy()

    @cached_property
    def _target_vocab(self) -> int:
        """Ids in the tables are below this; a batch's (B, V) mask needs no more columns."""
        return int(max(self.frequent.max(), self.by_source.max())) + 1

    def to_tensors(self) -> dict[str, Tensor]:
        return {"frequent": self.frequent.int(), "by_source": self.by_source.int()}  # ids < 2**31

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor], src_vocab: int, tgt_vocab: int) -> Shortlist:
        """Check shapes and ranges: a shortlist from another vocabulary would drop tokens."""
        frequent, by_source = tensors["frequent"].long(), tensors["by_source"].long()
        if by_source.dim() != 2 or by_source.size(0) != src_vocab:
            raise ValueError(f"by_source has shape {tuple(by_source.shape)}, not ({src_vocab}, k)")
        if int(frequent.max()) >= tgt_vocab or int(by_source.max()) >= tgt_vocab:
            raise ValueError(f"target ids out of range for a vocabulary of {tgt_vocab}")
        if not torch.isin(torch.arange(SPECIAL_IDS), frequent).all():
            raise ValueError(f"frequent must include the special ids 0..{SPECIAL_IDS - 1}")
        return cls(frequent, by_source)


class BatchCandidates(NamedTuple):
    """The target ids a batch scores: their union, and which of them each sentence keeps.

    Every row of ``columns`` lists its sentence's own candidates in ascending order, then other
    ids of the union, so that all rows have one width C; ``foreign`` marks those, which search
    scores -inf (scored, they would let a sentence's batch-mates change its translation).
    Ascending order with every special id present puts special id i at position i of every
    row, so search can keep comparing positions with EOS_ID.
    """

    ids: Tensor  # (U,) ascending target ids, the union over the batch
    columns: Tensor  # (B, C) positions in ``ids``
    foreign: Tensor | None  # (B, C) True where a row is padded; None: no row is


def int8_rows(weight: Tensor, bias: Tensor | None, ids: Tensor) -> PackedLinear:
    """The rows ``ids`` of an int8 output layer (weight (V, O), bias (V,)), prepacked for
    ``torch.ops.quantized.linear_dynamic``. TorchScript compiles it too: lanes pick their rows
    at once, each on its own core (``model.lanes``)."""
    rows = weight.index_select(0, ids)
    picked = None if bias is None else bias.index_select(0, ids)
    return torch.ops.quantized.linear_prepack(rows, picked)


class OutputVocabulary(NamedTuple):
    """A batch's shortlist: the output layer's rows for the union, and every sentence's columns.

    Search works with positions in a sentence's row of ``columns`` instead of target ids:
    logits column j of a sentence's hypotheses scores target id ``sentence_ids[b, j]``.
    ``select`` keeps the rows of the sentences still decoding, like ``EncoderOutput.select``.
    """

    columns: Tensor  # (B, C) each sentence's positions in the union (``BatchCandidates.ids``)
    sentence_ids: Tensor  # (B, C) the target ids of those positions
    foreign: Tensor | None  # (B, C) padding columns, scored -inf (``BatchCandidates.foreign``)
    weight: Tensor | None  # (U, O) float rows of the union, or None when ``packed`` has them
    bias: Tensor | None  # (U,), or None as ``weight``
    packed: Any = None  # int8 rows prepacked for torch.ops.quantized.linear_dynamic

    def project(self, vec: Tensor) -> Tensor:
        """(N, O) attentional vectors, N = B x rows per sentence -> (N, C) logits."""
        if self.packed is not None:
            union: Tensor = torch.ops.quantized.linear_dynamic(vec, self.packed, True)
        else:
            assert self.weight is not None
            union = step_kernels.matmul(vec, self.weight, self.bias)  # (N, U)
        batch, width = self.columns.shape
        rows = union.view(batch, -1, union.size(-1))  # (B, K, U)
        mine = rows.gather(2, self.columns.unsqueeze(1).expand(-1, rows.size(1), -1))
        if self.foreign is not None:
            mine.masked_fill_(self.foreign.unsqueeze(1), float("-inf"))  # gather made a copy
        return mine.view(-1, width)

    @classmethod
    def int8(cls, candidates: BatchCandidates, packed: PackedLinear) -> OutputVocabulary:
        """A batch's shortlist whose output rows ``packed`` came from ``int8_rows``."""
        ids, columns, foreign = candidates
        return cls(columns, ids[columns], foreign, None, None, packed)

    def to_ids(self, positions: Tensor) -> Tensor:
        """Positions with a leading sentence dimension (B, ...) or (B x K,) -> target ids."""
        flat = positions.reshape(self.sentence_ids.size(0), -1)
        return self.sentence_ids.gather(1, flat).view_as(positions)

    def select(self, rows: Tensor) -> OutputVocabulary:
        foreign = self.foreign
        return self._replace(
            columns=self.columns.index_select(0, rows),
            sentence_ids=self.sentence_ids.index_select(0, rows),
            foreign=None if foreign is None else foreign.index_select(0, rows),
        )


class OutputLayer:
    """The full output layer's weights, read once, from which every batch takes its rows.

    Handles both a float ``nn.Linear`` and torch.ao's dynamically quantized int8 Linear; the
    int8 rows stay int8, so a shortlist never makes a quantized model slower per row.
    """

    def __init__(self, generator: nn.Module) -> None:
        self.packed = not isinstance(generator, nn.Linear)
        if self.packed:  # unpacking costs milliseconds: once here, not per batch
            self.weight, self.bias = generator._weight_bias()  # type: ignore[operator]
        else:
            self.weight, self.bias = generator.weight, generator.bias

    @property
    def int8_weights(self) -> tuple[Tensor, Tensor | None] | None:
        """(weight, bias) for ``int8_rows``; None for a float layer."""
        return (self.weight, self.bias) if self.packed else None

    def restrict(self, candidates: BatchCandidates) -> OutputVocabulary:
        ids, columns, foreign = candidates
        if self.packed:
            return OutputVocabulary.int8(candidates, int8_rows(self.weight, self.bias, ids))
        weight = self.weight.index_select(0, ids)
        bias = None if self.bias is None else self.bias.index_select(0, ids)
        return OutputVocabulary(columns, ids[columns], foreign, weight, bias)


def build_shortlist(
    pairs: Iterable[tuple[Sequence[int], Sequence[int]]],
    src_vocab: int,
    tgt_vocab: int,
    frequent: int = 100,
    per_source: int = 20,
) -> Shortlist:
    """The shortlist of a tokenized parallel corpus.

    Args:
        pairs: (source ids, target ids) per sentence pair.
        frequent: how many of the most frequent target ids are always scored.
        per_source: how many target ids each source id contributes.
    """
    counts = count_pairs(pairs, src_vocab, tgt_vocab)
    dice = 2.0 * counts.together / (counts.source[counts.src] + counts.target[counts.tgt])
    table = best_per_source(counts.src, counts.tgt, dice, src_vocab, per_source)
    ranked = np.argsort(-counts.target, kind="stable")
    top = ranked[counts.target[ranked] > 0][:frequent]
    always = np.union1d(np.arange(SPECIAL_IDS), top)
    return Shortlist(torch.from_numpy(always), torch.from_numpy(table))


class PairCounts(NamedTuple):
    """In how many sentence pairs each id, and each co-occurring (source, target) pair, occurs."""

    source: np.ndarray  # (source vocabulary,)
    target: np.ndarray  # (target vocabulary,)
    src: np.ndarray  # (P,) source id of each co-occurring pair
    tgt: np.ndarray  # (P,) its target id
    together: np.ndarray  # (P,) sentence pairs holding both


def count_pairs(
    pairs: Iterable[tuple[Sequence[int], Sequence[int]]], src_vocab: int, tgt_vocab: int
) -> PairCounts:
    source = np.zeros(src_vocab, dtype=np.int64)
    target = np.zeros(tgt_vocab, dtype=np.int64)
    keys: list[np.ndarray] = []  # source id * tgt_vocab + target id, once per sentence pair
    for src, tgt in pairs:
        s = np.unique(np.asarray(src, dtype=np.int64))
        t = np.unique(np.asarray(tgt, dtype=np.int64))
        source[s] += 1
        target[t] += 1
        keys.append((s[:, None] * tgt_vocab + t[None, :]).reshape(-1))
    all_keys = np.concatenate(keys) if keys else np.zeros(0, dtype=np.int64)
    pair_keys, together = np.unique(all_keys, return_counts=True)
    return PairCounts(source, target, pair_keys // tgt_vocab, pair_keys % tgt_vocab, together)


def best_per_source(
    src: np.ndarray, tgt: np.ndarray, strength: np.ndarray, src_vocab: int, k: int
) -> np.ndarray:
    """(source vocabulary, k) table: each source id's k strongest target ids, -1 padded."""
    order = np.lexsort((-strength, src))  # by source id, strongest first within one
    src, tgt = src[order], tgt[order]
    rank = np.arange(len(src)) - np.searchsorted(src, src)  # position within its source id
    table = np.full((src_vocab, k), -1, dtype=np.int64)
    keep = rank < k
    table[src[keep], rank[keep]] = tgt[keep]
    return table
