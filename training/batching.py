"""Token-budget batches within length buckets, deterministic shuffling, DDP shards, collation.

Shapes: B batch, S source length, T target length (incl. BOS in ``tgt_in`` / EOS in ``tgt_out``).

An epoch's batches are a pure function of (lengths, settings, seed, epoch), so a run resumed from
``BatchIterator.state_dict()`` sees exactly the batches it would have seen without stopping, and
every DDP rank computes the same plan without talking to the others.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import torch

Lengths = Sequence[tuple[int, int]]
ShardMode = Literal["drop", "pad"]
Example = tuple[Sequence[int], Sequence[int]]

# The project's fixed special ids (model/tokenizer.py); defaults only, callers may pass their own.
PAD_ID, BOS_ID, EOS_ID = 0, 2, 3


class PairEncoder(Protocol):
    """What :func:`encode_pairs` needs from ``model.Tokenizer``."""

    def encode_source(self, text: str) -> list[int]: ...
    def encode_target(self, text: str) -> list[int]: ...


def encode_pairs(pairs: Iterable[tuple[str, str]], tokenizer: PairEncoder) -> list[Example]:
    """Source ids (with EOS, from the tokenizer) and target ids (no BOS/EOS) for each pair."""
    return [(tokenizer.encode_source(src), tokenizer.encode_target(tgt)) for src, tgt in pairs]


def example_lengths(examples: Sequence[Example]) -> list[tuple[int, int]]:
    """Padded lengths that :func:`collate` will produce: ``(len(src), len(tgt) + 1)``.

    The target gets one more position because ``tgt_in`` starts with BOS and ``tgt_out`` ends
    with EOS; batching on these lengths keeps the budget honest.
    """
    return [(len(src), len(tgt) + 1) for src, tgt in examples]


def make_batches(
    lengths: Lengths,
    batch_tokens: int,
    bucket_width: int = 8,
    rng: np.random.Generator | None = None,
) -> list[list[int]]:
    """Group example indices into batches of similar length under a token budget.

    An example's size is ``max(src_len, tgt_len)``. Examples whose size falls in the same
    ``bucket_width``-wide bucket are packed greedily so that ``count * largest size`` (the padded
    size of the larger of the two tensors) stays within ``batch_tokens``. An example bigger than
    the whole budget gets a batch of its own rather than being dropped.

    Args:
        lengths: ``(src_len, tgt_len)`` per example, as padded (see :func:`example_lengths`).
        batch_tokens: budget per batch, in padded tokens.
        bucket_width: lengths per bucket; wider buckets mean fuller batches but more padding.
        rng: shuffles examples within each bucket and then the batch order. ``None`` keeps
            index order within buckets and buckets in increasing length (handy for validation).

    Returns:
        Batches of example indices; every index appears exactly once.
    """
    if batch_tokens < 1 or bucket_width < 1:
        raise ValueError("batch_tokens and bucket_width must be positive")
    sizes = [max(src, tgt, 1) for src, tgt in lengths]
    buckets: dict[int, list[int]] = defaultdict(list)
    for i, size in enumerate(sizes):
        buckets[size // bucket_width].append(i)
    batches: list[list[int]] = []
    for key in sorted(buckets):
        members = buckets[key]
        if rng is not None:
            members = [members[j] for j in rng.permutation(len(members))]
        batches.extend(_pack(members, sizes, batch_tokens))
    if rng is not None:
        batches = [batches[j] for j in rng.permutation(len(batches))]
    return batches


def _pack(members: list[int], sizes: list[int], batch_tokens: int) -> list[list[int]]:
    batches: list[list[int]] = []
    batch: list[int] = []
    width = 0
    for i in members:
        new_width = max(width, sizes[i])
        if batch and new_width * (len(batch) + 1) > batch_tokens:
            batches.append(batch)
            batch, new_width = [], sizes[i]
        batch.append(i)
        width = new_width
    if batch:
        batches.append(batch)
    return batches


def epoch_batches(
    lengths: Lengths, batch_tokens: int, bucket_width: int, seed: int, epoch: int
) -> list[list[int]]:
    """The shuffled batches of one epoch: a pure function of its arguments (no global RNG)."""
    rng = np.random.default_rng([seed, epoch])
    return make_batches(lengths, batch_tokens, bucket_width, rng)


def fit_multiple(
    batches: Sequence[list[int]], multiple: int, mode: ShardMode = "drop"
) -> list[list[int]]:
    """``batches`` cut (``"drop"``) or extended from the start (``"pad"``) to a multiple."""
    n = len(batches)
    if mode == "drop":
        return list(batches[: n - n % multiple])
    if mode == "pad":
        extra = (-n) % multiple if n else 0
        return list(batches) + [batches[i % n] for i in range(extra)]
    raise ValueError(f"mode must be 'drop' or 'pad', got {mode!r}")


def shard(
    batches: Sequence[list[int]], rank: int, world_size: int, mode: ShardMode = "drop"
) -> list[list[int]]:
    """This rank's share of ``batches``; every rank gets the same number.

    DDP ranks must take the same number of steps or the gradient all-reduce hangs. Rank ``r``
    gets batches ``r, r + world_size, ...``. The remainder (``len(batches) % world_size``) is
    handled by ``mode``: ``"drop"`` leaves out the last batches (which ones changes from epoch to
    epoch since the order is shuffled); ``"pad"`` repeats batches from the start of the list.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    return fit_multiple(batches, world_size, mode)[rank::world_size]


@dataclass(frozen=True)
class ScheduledBatch:
    """One batch of example indices and where it sits: batch ``index`` of ``epoch``."""

    epoch: int
    index: int
    indices: list[int]


class BatchIterator:
    """Endless iterator over shuffled, sharded batches, epoch after epoch, that can resume.

    After it yields batch ``i`` of epoch ``e`` its position is ``(e, i + 1)``; ``state_dict()``
    saves that, and ``load_state_dict()`` on a fresh iterator continues with the very next batch.
    The position is the same on every rank, so the checkpoint of rank 0 serves all ranks.

    One optimizer update takes ``accumulate`` batches on each of ``world_size`` ranks. Each
    epoch's plan is first cut (or padded, by ``shard_mode``) to a multiple of
    ``world_size * accumulate`` batches, so an update never straddles two epochs and the
    update-by-update batches depend only on that product: K ranks accumulating A batches see
    exactly what one process accumulating K * A batches sees, epoch after epoch.
    """

    def __init__(
        self,
        lengths: Lengths,
        batch_tokens: int,
        bucket_width: int = 8,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shard_mode: ShardMode = "drop",
        accumulate: int = 1,
    ) -> None:
        if accumulate < 1:
            raise ValueError(f"accumulate must be at least 1, got {accumulate}")
        self.lengths = [(int(s), int(t)) for s, t in lengths]
        self.batch_tokens, self.bucket_width, self.seed = batch_tokens, bucket_width, seed
        self.rank, self.world_size, self.shard_mode = rank, world_size, shard_mode
        self.accumulate = accumulate
        self.epoch, self.index = 0, 0
        self._cache: tuple[int, list[list[int]]] | None = None

    def batches(self, epoch: int) -> list[list[int]]:
        """This rank's batches for ``epoch`` (cached for the current epoch)."""
        if self._cache is None or self._cache[0] != epoch:
            planned = epoch_batches(
                self.lengths, self.batch_tokens, self.bucket_width, self.seed, epoch
            )
            whole = fit_multiple(planned, self.world_size * self.accumulate, self.shard_mode)
            self._cache = (epoch, shard(whole, self.rank, self.world_size, self.shard_mode))
        return self._cache[1]

    def __iter__(self) -> BatchIterator:
        return self

    def __next__(self) -> ScheduledBatch:
        batches = self.batches(self.epoch)
        if self.index >= len(batches):
            self.epoch, self.index = self.epoch + 1, 0
            batches = self.batches(self.epoch)
            if not batches:
                raise ValueError(f"rank {self.rank} gets no batches; the corpus is too small")
        out = ScheduledBatch(self.epoch, self.index, batches[self.index])
        self.index += 1
        return out

    def _fingerprint(self) -> str:
        # Resuming with other data or settings would silently change the batch order.
        settings = [self.lengths, self.batch_tokens, self.bucket_width, self.world_size]
        # accumulate joined the settings later: left out at 1 so older checkpoints still load.
        extra = [self.accumulate] if self.accumulate != 1 else []
        blob = json.dumps([*settings, self.shard_mode, *extra]).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def state_dict(self) -> dict[str, Any]:
        """Position and the settings it is valid for (plain ints and strings)."""
        return {
            "epoch": self.epoch,
            "index": self.index,
            "seed": self.seed,
            "fingerprint": self._fingerprint(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a saved position.

        Raises:
            ValueError: the state was saved with another seed, dataset or batch settings.
        """
        if state["seed"] != self.seed or state["fingerprint"] != self._fingerprint():
            raise ValueError(
                "batch iterator state was saved for a different seed, dataset or batch "
                f"settings (saved seed {state['seed']}, this run's seed {self.seed})"
            )
        self.epoch, self.index = int(state["epoch"]), int(state["index"])


@dataclass(frozen=True)
class TensorBatch:
    """Padded tensors for teacher forcing; ``pad_id`` fills the padding."""

    src_ids: torch.Tensor  # (B, S) source ids incl. EOS
    src_lens: torch.Tensor  # (B,)
    tgt_in: torch.Tensor  # (B, T) BOS y1 .. yn
    tgt_out: torch.Tensor  # (B, T) y1 .. yn EOS

    pad_id: int = PAD_ID

    @property
    def num_tgt_tokens(self) -> int:
        """Target positions that count in the loss (non-padding in ``tgt_out``)."""
        return int((self.tgt_out != self.pad_id).sum())

    def to(self, device: torch.device | str) -> TensorBatch:
        """The same batch on ``device``."""

        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device, non_blocking=True)

        return TensorBatch(
            move(self.src_ids),
            move(self.src_lens),
            move(self.tgt_in),
            move(self.tgt_out),
            self.pad_id,
        )


def collate(
    examples: Sequence[Example], pad_id: int = PAD_ID, bos_id: int = BOS_ID, eos_id: int = EOS_ID
) -> TensorBatch:
    """Pad a batch of ``(src_ids, tgt_ids)``: source as given, target shifted with BOS/EOS.

    Args:
        examples: source ids already ending in EOS (``Tokenizer.encode_source``) and target ids
            without BOS/EOS (``Tokenizer.encode_target``).
        pad_id: padding id.
        bos_id: prepended to the decoder input.
        eos_id: appended to the decoder output.

    Returns:
        ``TensorBatch`` with LongTensors ``src_ids`` (B, S), ``src_lens`` (B,), ``tgt_in`` and
        ``tgt_out`` (B, T) where T = longest target + 1.
    """
    if not examples:
        raise ValueError("cannot collate an empty batch")
    if any(len(src) == 0 for src, _ in examples):
        raise ValueError("every source needs at least one id (its EOS)")
    batch_size = len(examples)
    src_len = max(len(src) for src, _ in examples)
    tgt_len = max(len(tgt) for _, tgt in examples) + 1
    src_ids = torch.full((batch_size, src_len), pad_id, dtype=torch.long)
    tgt_in = torch.full((batch_size, tgt_len), pad_id, dtype=torch.long)
    tgt_out = torch.full((batch_size, tgt_len), pad_id, dtype=torch.long)
    for row, (src, tgt) in enumerate(examples):
        src_ids[row, : len(src)] = torch.as_tensor(src, dtype=torch.long)
        tgt_in[row, : len(tgt) + 1] = torch.as_tensor([bos_id, *tgt], dtype=torch.long)
        tgt_out[row, : len(tgt) + 1] = torch.as_tensor([*tgt, eos_id], dtype=torch.long)
    src_lens = torch.as_tensor([len(src) for src, _ in examples], dtype=torch.long)
    return TensorBatch(src_ids, src_lens, tgt_in, tgt_out, pad_id)
