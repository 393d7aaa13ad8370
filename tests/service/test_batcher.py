"""The micro-batcher against a fake translator: scheduling, limits, errors, drain."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from service_fakes import FakeTranslator, wait_until

from model import DecodeOptions, DeviceError
from service.batch_queue import Entry, next_batch, pop_stale
from service.batching import Batcher, BatcherClosed, BatcherCrashed, DeadlineExceeded, QueueFull

GREEDY = DecodeOptions(beam_size=1)
BEAM = DecodeOptions(beam_size=4)


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(test())


def make_batcher(fake: FakeTranslator, **kwargs: Any) -> Batcher:
    kwargs.setdefault("max_wait_ms", 0)
    batcher = Batcher(fake.translate, **kwargs)
    batcher.start()
    return batcher


def ids(n_tokens: int) -> list[int]:
    """Source ids of a sentence of `n_tokens` tokens (the batcher only counts them)."""
    return [7] * n_tokens


async def one(batcher: Batcher, text: str, options: DecodeOptions = GREEDY, timeout: float = 5):
    (outcome,) = await batcher.submit([text], [ids(len(text.split()) + 1)], options, timeout)
    return outcome.result.text


async def hold_worker(batcher: Batcher, fake: FakeTranslator) -> asyncio.Task[str]:
    """Close the gate and park the worker inside a batch, so later submissions queue up."""
    fake.gate.clear()
    first = asyncio.create_task(one(batcher, "first"))
    await wait_until(lambda: len(fake.batches) == 1)
    return first


# --- next_batch / pop_stale: pure scheduling ---------------------------------------------


def entries(*specs: tuple[str, DecodeOptions, int], deadline: float = 1e18) -> deque[Entry]:
    loop = asyncio.new_event_loop()
    queue = deque(Entry(t, o, loop.create_future(), 0.0, deadline, ids(n)) for t, o, n in specs)
    loop.close()
    return queue


def texts(batch: list[Entry] | deque[Entry]) -> list[str]:
    return [e.text for e in batch]


def test_next_batch_groups_by_options_in_arrival_order() -> None:
    queue = entries(("a", GREEDY, 2), ("b", BEAM, 2), ("c", GREEDY, 2), ("d", BEAM, 2))
    assert texts(next_batch(queue, 8, 100)) == ["a", "c"]
    assert texts(queue) == ["b", "d"]
    assert texts(next_batch(queue, 8, 100)) == ["b", "d"]
    assert not queue and next_batch(queue, 8, 100) == []


def test_next_batch_stops_at_max_size() -> None:
    queue = entries(*[(str(i), GREEDY, 2) for i in range(5)])
    assert texts(next_batch(queue, 2, 100)) == ["0", "1"]
    assert texts(queue) == ["2", "3", "4"]


def test_next_batch_token_budget_counts_padding() -> None:
    # 3 sentences of 4 tokens = 12 padded tokens fit; a 10-token one would make 4 x 10 = 40.
    queue = entries(("a", GREEDY, 4), ("b", GREEDY, 4), ("long", GREEDY, 10), ("c", GREEDY, 4))
    assert texts(next_batch(queue, 8, 16)) == ["a", "b", "c"]
    assert texts(queue) == ["long"]


def test_next_batch_token_budget_counts_every_beam_row() -> None:
    # As the Translator counts: 4 tokens x beam K per sentence, so a K=4 batch fits 1, not 4.
    queue = entries(*[(str(i), BEAM, 4) for i in range(4)])
    assert texts(next_batch(queue, 8, 16)) == ["0"]
    queue = entries(*[(str(i), GREEDY, 4) for i in range(4)])
    assert texts(next_batch(queue, 8, 16)) == ["0", "1", "2", "3"]


def test_next_batch_takes_an_oversized_head_alone() -> None:
    queue = entries(("huge", GREEDY, 50), ("b", GREEDY, 2))
    assert texts(next_batch(queue, 8, 16)) == ["huge"]
    assert texts(queue) == ["b"]


def test_pop_stale_removes_cancelled_and_expired() -> None:
    queue = entries(("a", GREEDY, 2), ("b", GREEDY, 2), ("c", GREEDY, 2), deadline=10.0)
    queue[0].future.cancel()
    queue[2].deadline = 20.0
    cancelled, expired = pop_stale(queue, now=15.0)
    assert texts(cancelled) == ["a"] and texts(expired) == ["b"] and texts(queue) == ["c"]


# --- the worker ----------------------------------------------------------------------------


def test_concurrent_requests_coalesce_into_one_batch() -> None:
    async def test() -> None:
        fake = FakeTranslator()
        batcher = make_batcher(fake, max_batch_size=16)
        first = await hold_worker(batcher, fake)
        rest = [asyncio.create_task(one(batcher, f"s{i}")) for i in range(5)]
        await wait_until(lambda: batcher.depth == 5)
        fake.gate.set()
        assert await asyncio.gather(first, *rest) == ["first"] + [f"s{i}" for i in range(5)]
        assert fake.sizes == [1, 5]
        await batcher.close()

    run(test)


def test_max_batch_size_splits_batches_and_one_turns_batching_off() -> None:
    async def test(size: int, expected: list[int]) -> None:
        fake = FakeTranslator()
        batcher = make_batcher(fake, max_batch_size=size)
        first = await hold_worker(batcher, fake)
        rest = [asyncio.create_task(one(batcher, f"s{i}")) for i in range(5)]
        await wait_until(lambda: batcher.depth == 5)
        fake.gate.set()
        await asyncio.gather(first, *rest)
        assert fake.sizes == expected
        await batcher.close()

    asyncio.run(test(2, [1, 2, 2, 1]))
    asyncio.run(test(1, [1] * 6))


def test_token_budget_limits_batches() -> None:
    async def test() -> None:
        fake = FakeTranslator()
        batcher = make_batcher(fake, max_batch_size=16, max_batch_tokens=9)
        first = await hold_worker(batcher, fake)
        rest = [asyncio.create_task(one(batcher, "two words")) for _ in range(5)]  # 3 tokens
        await wait_until(lambda: batcher.depth == 5)
        fake.gate.set()
        await asyncio.gather(first, *rest)
        assert fake.sizes == [1, 3, 2]
        await batcher.close()

    run(test)


def test_different_options_never_share_a_batch() -> None:
    async def test() -> None:
        fake = FakeTranslator()
        batcher = make_batcher(fake, max_batch_size=16)
        first = await hold_worker(batcher, fake)
        options = [GREEDY, BEAM, GREEDY, BEAM]
        rest = [asyncio.create_task(one(batcher, f"s{i}", o)) for i, o in enumerate(options)]
        await wait_until(lambda: batcher.depth == 4)
        fake.gate.set()
        assert await asyncio.gather(*rest) == ["s0", "s1", "s2", "s3"]
        await first
        assert [(b, o.beam_size) for b, o in fake.batches[1:]] == [
            (["s0", "s2"], 1),
            (["s1", "s3"], 4),
        ]
        await batcher.close()

    run(test)


def test_worker_waits_for_company_until_the_batch_is_full() -> None:
    async def test() -> None:
        fake = FakeTranslator()
        batcher = make_batcher(fake, max_batch_size=3, max_wait_ms=10_000)
        started = time.monotonic()
        tasks = []
        for i in range(3):
            tasks.append(asyncio.create_task(one(batcher, f"s{i}")))
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)
        assert fake.sizes == [3]
        assert time.monotonic() - started < 5  # left as soon as full, not after 10 s
        await batcher.close()

    run(test)


def test_a_lone_request_waits_at_most_max_wait() -> None:
    async def test() -> None:
        fake = FakeTranslator()
        batcher = make_batcher(fake, max_batch_size=8, max_wait_ms=20)
        started = time.monotonic()
        assert await one(batcher, "alone") == "alone"
        assert 0.015 <= time.monotonic() - started < 2
        await batcher.close()

    run(test)


def test_requests_of_the_last_batch_get_max_wait_to_rejoin_the_next() -> None:
    """Under steady load, clients answered by one batch come back while the next waits:
    the wait restarts when a batch ends, so they join it instead of forming their own."""

    async def test() -> None:
        fake = FakeTranslator()
        batcher = make_batcher(fake, max_batch_size=8, max_wait_ms=300)
        first = await hold_worker(batcher, fake)
        queued = asyncio.create_task(one(batcher, "queued"))
        await asyncio.sleep(0.4)  # longer than max_wait: its own wait has run out
        fake.gate.set()
        assert await first == "first"
        rejoined = asyncio.create_task(one(batcher, "rejoined"))  # the answered client again
        assert await asyncio.gather(queued, rejoined) == ["queued", "rejoined"]
        assert fake.sizes == [1, 2]
        await batcher.close()

    run(test)


def test_the_next_batch_starts_once_the_last_ones_clients_are_back() -> None:
    """Closed-loop clients: once as many sentences are queued as the last batch held (plus
    what was queued when it ended), waiting longer only idles the model."""

    async def test() -> None:
        fake = FakeTranslator()
        batcher = make_batcher(fake, max_batch_size=8, max_wait_ms=1000)
        first = await asyncio.gather(*(one(batcher, t) for t in ["a", "b", "c"]))
        assert first == ["a", "b", "c"] and fake.sizes == [3]  # after max_wait: not full
        back = time.monotonic()
        waiting = asyncio.create_task(one(batcher, "a2"))
        await asyncio.sleep(0.2)
        assert len(fake.batches) == 1  # one of the three is back: it waits for the others
        again = await asyncio.gather(waiting, one(batcher, "b2"), one(batcher, "c2"))
        assert again == ["a2", "b2", "c2"] and fake.sizes == [3, 3]
        assert time.monotonic() - back < 0.9  # all three back: no waiting out the 1 s
        await batcher.close()

    run(test)


def test_batch_error_fails_exactly_that_batch() -> None:
    async def test() -> None:
        fake = FakeTranslator()
        fake.fail_on = "boom"
        errors: list[BaseException] = []
        batcher = make_batcher(fake, max_batch_size=16, on_error=errors.append)
        first = await hold_worker(batcher, fake)
        # "boom" and "same batch" share GREEDY options; "other batch" uses BEAM.
        bad = asyncio.create_task(one(batcher, "boom"))
        neighbour = asyncio.create_task(one(batcher, "same batch"))
        other = asyncio.create_task(one(batcher, "other batch", BEAM))
        await wait_until(lambda: batcher.depth == 3)
        fake.gate.set()
        assert await first == "first"
        for task in (bad, neighbour):
            with pytest.raises(RuntimeError, match="boom"):
                await task
        assert await other == "other batch"
        assert errors == [fake.failure]
        assert await one(batcher, "after") == "after"  # still serving
        await batcher.close()

    run(test)


def test_per_sentence_errors_reach_their_own_request_and_on_error() -> None:
    async def test() -> None:
        fake = FakeTranslator()
        fake.errors["gpu died"] = DeviceError("CUDA error")
        seen: list[BaseException] = []
        batcher = make_batcher(fake, on_error=seen.append)
        outcomes = await batcher.submit(["gpu died", "fine"], [ids(3), ids(2)], GREEDY, 5)
        assert outcomes[0].result.error is fake.errors["gpu died"]
        assert outcomes[1].result.text == "fine"
        assert seen == [fake.errors["gpu died"]]
        await batcher.close()

    run(test)


def test_full_queue_rejects_whole_requests() -> None:
    async def test() -> None:
        fake = FakeTranslator()
        batcher = make_batcher(fake, max_queue=3)
        first = await hold_worker(batcher, fake)
        queued = asyncio.create_task(batcher.submit(["a", "b"], [ids(2), ids(2)], GREEDY, 5))
        await wait_until(lambda: batcher.depth == 2)
        with pytest.raises(QueueFull, match=r"limit is 3 \(NMT_MAX_QUEUE\)"):
            await batcher.submit(["c", "d"], [ids(2), ids(2)], GREEDY, 5)
        assert batcher.depth == 2  # all or nothing
        fake.gate.set()
        assert [o.result.text for o in await queued] == ["a", "b"]
        await first
        assert await one(batcher, "c") == "c"
        await batcher.close()

    run(test)


def test_deadline_while_queued_raises_and_skips_compute() -> None:
    async def test() -> None:
        fake = FakeTranslator()
        batcher = make_batcher(fake)
        first = await hold_worker(batcher, fake)
        with pytest.raises(DeadlineExceeded, match="NMT_REQUEST_TIMEOUT_S"):
            await one(batcher, "too late", timeout=0.02)
        fake.gate.set()
        await first
        await one(batcher, "next")
        assert [t for b, _ in fake.batches for t in b] == ["first", "next"]
        await batcher.close()

    run(test)


def test_worker_fails_expired_entries_without_computing_them() -> None:
    async def test() -> None:
        fake = FakeTranslator()
        batcher = make_batcher(fake)
        first = await hold_worker(batcher, fake)
        (expired,) = batcher.enqueue(["expired"], [ids(2)], GREEDY, deadline=time.monotonic() - 1)
        fake.gate.set()
        with pytest.raises(DeadlineExceeded):
            await expired
        await first
        assert fake.sizes == [1]
        await batcher.close()

    run(test)


def test_cancelled_requests_are_dropped_before_compute() -> None:
    async def test() -> None:
        fake = FakeTranslator()
        batcher = make_batcher(fake)
        first = await hold_worker(batcher, fake)
        gone = asyncio.create_task(one(batcher, "client gone"))
        stays = asyncio.create_task(one(batcher, "stays"))
        await wait_until(lambda: batcher.depth == 2)
        gone.cancel()
        fake.gate.set()
        assert await stays == "stays"
        await first
        assert [t for b, _ in fake.batches for t in b] == ["first", "stays"]
        await batcher.close()

    run(test)


def test_close_stops_accepting_and_drains_the_queue() -> None:
    async def test() -> None:
        fake = FakeTranslator()
        batcher = make_batcher(fake, max_batch_size=2)
        first = await hold_worker(batcher, fake)
        queued = [asyncio.create_task(one(batcher, f"s{i}")) for i in range(3)]
        await wait_until(lambda: batcher.depth == 3)
        closing = asyncio.create_task(batcher.close())
        await asyncio.sleep(0)
        with pytest.raises(BatcherClosed):
            await one(batcher, "refused")
        fake.gate.set()
        await closing
        assert await asyncio.gather(first, *queued) == ["first", "s0", "s1", "s2"]
        assert fake.sizes == [1, 2, 1]

    run(test)


def test_a_crashing_worker_fails_pending_requests_and_reports_it() -> None:
    class BrokenObserver:
        def queue_depth(self, depth: int) -> None:
            pass

        def dropped(self, reason: str, count: int) -> None:
            pass

        def batch_done(self, *args: object) -> None:
            raise ZeroDivisionError("bug in metrics")

    async def test() -> None:
        fake = FakeTranslator()
        seen: list[BaseException] = []
        batcher = make_batcher(fake, observer=BrokenObserver(), on_error=seen.append)
        with pytest.raises(BatcherClosed, match="internal error"):
            await one(batcher, "first")
        assert [type(e) for e in seen] == [BatcherCrashed]
        with pytest.raises(BatcherClosed, match="internal error"):
            await one(batcher, "refused")
        await batcher.close()

    run(test)


def test_concurrency_computes_that_many_batches_at_once_and_no_more() -> None:
    async def test() -> None:
        fake = FakeTranslator()
        batcher = make_batcher(fake, max_batch_size=2, concurrency=2)
        fake.gate.clear()  # every batch blocks inside the translator until the gate opens
        tasks = [asyncio.create_task(one(batcher, f"s{i}")) for i in range(6)]
        await wait_until(lambda: len(fake.batches) == 2)  # two batches computing at once
        await asyncio.sleep(0.05)
        assert len(fake.batches) == 2 and batcher.depth == 2  # the third waits for a slot
        closing = asyncio.create_task(batcher.close())
        fake.gate.set()
        assert await asyncio.gather(*tasks) == [f"s{i}" for i in range(6)]
        await closing
        assert fake.sizes[:2] == [2, 2] and sum(fake.sizes) == 6  # the last 2: one or two batches

    run(test)


def test_idle_translators_share_the_queue_fairly() -> None:
    async def test() -> None:
        fake = FakeTranslator()
        batcher = make_batcher(fake, max_batch_size=64, concurrency=2)
        texts = [f"s{i}" for i in range(5)]
        outcomes = await batcher.submit(texts, [ids(2)] * 5, GREEDY, 5)
        assert [o.result.text for o in outcomes] == texts
        assert fake.sizes == [3, 2]  # not [5] with one translator left idle
        await batcher.close()

    run(test)


def test_the_next_batch_starts_before_the_last_ones_results_are_delivered() -> None:
    """With the model thread busy, the event loop answers one batch's requests while the next
    batch computes, instead of the model waiting for every request task the results woke."""

    class RecordingExecutor(ThreadPoolExecutor):
        def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
            events.append(f"start {args[0][0]}")
            return super().submit(fn, *args, **kwargs)

    events: list[str] = []

    async def request(batcher: Batcher, text: str) -> None:
        await one(batcher, text)
        events.append(f"answer {text}")

    async def test() -> None:
        fake = FakeTranslator()
        with RecordingExecutor(max_workers=1) as executor:
            batcher = make_batcher(fake, max_batch_size=1, executor=executor)
            fake.gate.clear()
            first = asyncio.create_task(request(batcher, "a"))
            await wait_until(lambda: len(fake.batches) == 1)
            second = asyncio.create_task(request(batcher, "b"))
            await wait_until(lambda: batcher.depth == 1)
            fake.gate.set()
            await asyncio.gather(first, second)
            await batcher.close()
        assert events == ["start a", "start b", "answer a", "answer b"]

    run(test)
