"""Token-budget bucketing, seeded shuffling, DDP shards, resumable iteration and collation."""

import random
from itertools import islice

import numpy as np
import pytest
import torch

from training.batching import (
    BatchIterator,
    collate,
    encode_pairs,
    epoch_batches,
    example_lengths,
    make_batches,
    shard,
)


def random_lengths(n: int, seed: int = 0, longest: int = 60) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    return [(rng.randint(1, longest), rng.randint(1, longest)) for _ in range(n)]


LENGTHS = random_lengths(300) + [(500, 3), (2, 450)]  # two examples bigger than the budget
BUDGET = 256


def padded_size(batch: list[int], lengths: list[tuple[int, int]]) -> int:
    return len(batch) * max(max(lengths[i]) for i in batch)


@pytest.mark.parametrize("seed", [None, 0, 7])
def test_budget_holds_except_for_single_oversized_examples(seed: int | None) -> None:
    rng = None if seed is None else np.random.default_rng(seed)
    batches = make_batches(LENGTHS, BUDGET, 8, rng)
    for batch in batches:
        if padded_size(batch, LENGTHS) > BUDGET:
            assert len(batch) == 1 and max(LENGTHS[batch[0]]) > BUDGET
    oversized = [b for b in batches if padded_size(b, LENGTHS) > BUDGET]
    assert sorted(oversized) == [[300], [301]]


def test_every_example_once_per_epoch() -> None:
    for epoch in range(3):
        flat = [i for b in epoch_batches(LENGTHS, BUDGET, 8, 1, epoch) for i in b]
        assert sorted(flat) == list(range(len(LENGTHS)))


def test_batches_group_similar_lengths() -> None:
    for batch in make_batches(LENGTHS, BUDGET, bucket_width=8):
        assert len({max(LENGTHS[i]) // 8 for i in batch}) == 1


def test_batches_are_not_tiny() -> None:
    # Greedy packing should fill batches: far fewer batches than examples.
    assert len(make_batches(LENGTHS, 1024, 8)) < len(LENGTHS) / 5


def test_shuffle_is_deterministic_and_depends_on_seed_and_epoch() -> None:
    a = epoch_batches(LENGTHS, BUDGET, 8, seed=1, epoch=0)
    assert a == epoch_batches(LENGTHS, BUDGET, 8, seed=1, epoch=0)
    assert a != epoch_batches(LENGTHS, BUDGET, 8, seed=2, epoch=0)
    assert a != epoch_batches(LENGTHS, BUDGET, 8, seed=1, epoch=1)


def test_shuffle_ignores_global_rng() -> None:
    random.seed(1)
    torch.manual_seed(1)
    a = epoch_batches(LENGTHS, BUDGET, 8, seed=3, epoch=0)
    random.seed(2)
    torch.manual_seed(2)
    assert a == epoch_batches(LENGTHS, BUDGET, 8, seed=3, epoch=0)


@pytest.mark.parametrize("n", [9, 10, 11, 12])
@pytest.mark.parametrize("mode", ["drop", "pad"])
def test_shard_gives_equal_counts(n: int, mode: str) -> None:
    batches = [[i] for i in range(n)]
    shards = [shard(batches, r, 4, mode) for r in range(4)]  # type: ignore[arg-type]
    assert len({len(s) for s in shards}) == 1
    flat = sorted(i for s in shards for b in s for i in b)
    if mode == "drop":
        assert flat == list(range(n - n % 4))  # the last n % 4 batches are left out
    else:
        assert set(flat) == set(range(n))  # everything, with a few repeats from the start
        assert len(flat) == n + (-n) % 4


def test_shard_rejects_bad_rank() -> None:
    with pytest.raises(ValueError, match="rank"):
        shard([[0]], 2, 2)


def test_iterator_crosses_epochs_and_shards_agree() -> None:
    it0 = BatchIterator(LENGTHS, BUDGET, seed=5, rank=0, world_size=2)
    it1 = BatchIterator(LENGTHS, BUDGET, seed=5, rank=1, world_size=2)
    n = len(it0.batches(0))
    assert n == len(it1.batches(0)) > 0
    first = list(islice(it0, n + 1))
    assert [b.epoch for b in first] == [0] * n + [1]
    assert [b.index for b in first] == [*range(n), 0]
    # The two ranks see disjoint examples within an epoch.
    seen0 = {i for b in first[:n] for i in b.indices}
    seen1 = {i for b in islice(it1, n) for i in b.indices}
    assert not seen0 & seen1


@pytest.mark.parametrize("stop_after", [0, 5, "end_of_epoch"])
def test_resume_continues_with_the_next_batch(stop_after: int | str) -> None:
    full = BatchIterator(LENGTHS, BUDGET, seed=9)
    n = len(full.batches(0)) if stop_after == "end_of_epoch" else int(stop_after)
    reference = [b.indices for b in islice(full, n + 30)]

    first = BatchIterator(LENGTHS, BUDGET, seed=9)
    consumed = [b.indices for b in islice(first, n)]
    state = first.state_dict()
    resumed = BatchIterator(LENGTHS, BUDGET, seed=9)
    resumed.load_state_dict(state)
    assert consumed + [b.indices for b in islice(resumed, 30)] == reference


def test_resume_refuses_other_data_or_seed() -> None:
    state = BatchIterator(LENGTHS, BUDGET, seed=9).state_dict()
    with pytest.raises(ValueError, match="different seed, dataset"):
        BatchIterator(LENGTHS, BUDGET, seed=10).load_state_dict(state)
    with pytest.raises(ValueError, match="different seed, dataset"):
        BatchIterator(LENGTHS[:-1], BUDGET, seed=9).load_state_dict(state)


def test_iterator_fails_when_a_rank_gets_nothing() -> None:
    it = BatchIterator([(3, 3)], BUDGET, world_size=2, rank=1)
    with pytest.raises(ValueError, match="no batches"):
        next(it)


def test_collate_pads_and_shifts() -> None:
    examples = [([5, 6, 3], [7, 8, 9]), ([5, 3], [7])]
    batch = collate(examples, pad_id=0)
    assert batch.src_ids.tolist() == [[5, 6, 3], [5, 3, 0]]
    assert batch.src_lens.tolist() == [3, 2]
    assert batch.tgt_in.tolist() == [[2, 7, 8, 9], [2, 7, 0, 0]]
    assert batch.tgt_out.tolist() == [[7, 8, 9, 3], [7, 3, 0, 0]]
    assert batch.src_ids.dtype == batch.tgt_in.dtype == torch.long
    assert batch.num_tgt_tokens == 6
    # The lengths batching plans with match the collated shapes.
    lengths = example_lengths(examples)
    assert max(s for s, _ in lengths) == batch.src_ids.shape[1]
    assert max(t for _, t in lengths) == batch.tgt_in.shape[1]


def test_collate_rejects_empty_inputs() -> None:
    with pytest.raises(ValueError, match="empty batch"):
        collate([], pad_id=0)
    with pytest.raises(ValueError, match="EOS"):
        collate([([], [1])], pad_id=0)


def test_encode_pairs_uses_the_tokenizer_sides() -> None:
    class FakeTokenizer:
        def encode_source(self, text: str) -> list[int]:
            return [len(w) for w in text.split()] + [3]

        def encode_target(self, text: str) -> list[int]:
            return [10 + len(w) for w in text.split()]

    assert encode_pairs([("ab c", "xyz")], FakeTokenizer()) == [([2, 1, 3], [13])]
