"""Cross-request micro-batching: a bounded queue of sentences, a scheduler, model threads.

As in text-generation-inference, the queue is kept apart from the model. Requests put their
sentences on the queue as `Entry`s, each with its own future; one worker task takes batches
off the queue (`next_batch`, a pure function in `service.batch_queue`), runs the translator in a
thread so the event loop never blocks, and resolves each future with its own result. Sentences
from many requests share a batch, so concurrent single-sentence clients are served at batched
throughput. With `concurrency` > 1 (one per model worker process, `service.model_workers`)
that many batches compute at once.

Scheduling rules, all here or in `service.batch_queue`:
- a batch holds at most `max_batch_size` sentences and `max_batch_tokens` padded tokens
  (sentences x longest source); sentences with different `DecodeOptions` never share one;
- a batch forms only when a translator is free (fewer than `concurrency` batches computing),
  and takes at most its fair share of the queue: the queued sentences divided by the free
  translators, so that 32 sentences and two idle model workers make two batches of 16, not
  one of 32 and an idle worker;
- while fewer than `max_batch_size` sentences are queued, the worker waits for company, but
  never past `max_wait_ms` after the oldest one arrived or the previous batch ended, whichever
  is later. The second clock matters under steady load: clients answered by one batch come
  back while the next batch is already computing, so without it the clients split into two
  groups that alternate in half-size batches. Nor does it wait once as many sentences are
  queued as the previous batch held plus those queued when it ended: under steady load those
  clients are all back, and waiting longer only idles the model;
- the next batch goes to the model before the previous one's results are delivered;
- an entry whose future was cancelled (client gone) or whose deadline passed is dropped
  before it is computed; the latter fails with `DeadlineExceeded`;
- an exception from the translator fails exactly the futures of that batch;
- the queue is bounded: `QueueFull` when a request's sentences do not all fit;
- `close()` stops accepting, drains what is queued, then ends the worker.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from service.batch_queue import Entry, Outcome, next_batch, pop_stale

if TYPE_CHECKING:
    from model import DecodeOptions, Result

logger = logging.getLogger(__name__)


class TranslateFn(Protocol):
    """``model.Translator.translate``: texts, their options and, when known, their source ids
    (``Translator.encode``); the batcher passes the ids the request counted its tokens with."""

    def __call__(
        self,
        texts: list[str],
        options: DecodeOptions,
        source_ids: list[list[int]] | None = None,
        /,
    ) -> Sequence[Result]: ...


class BatcherError(Exception):
    """Base of the errors the batcher raises to callers; `code` is machine-readable."""

    code = "batcher_error"


class QueueFull(BatcherError):
    code = "queue_full"


class DeadlineExceeded(BatcherError):
    code = "deadline_exceeded"


class BatcherClosed(BatcherError):
    code = "shutting_down"


class BatcherCrashed(BatcherError):
    """The worker loop itself failed (a bug); reported through `on_error`, then it stops."""

    code = "batcher_crashed"


class BatchObserver(Protocol):
    """Receives what the batcher does (metrics.py implements it)."""

    def queue_depth(self, depth: int) -> None: ...
    def dropped(self, reason: str, count: int) -> None: ...
    def batch_done(
        self, batch: Sequence[Entry], results: Sequence[Result] | None, started: float, ended: float
    ) -> None: ...


class _NoObserver:
    def queue_depth(self, depth: int) -> None:
        pass

    def dropped(self, reason: str, count: int) -> None:
        pass

    def batch_done(
        self, batch: Sequence[Entry], results: Sequence[Result] | None, started: float, ended: float
    ) -> None:
        pass


class BatchClock:
    """When a translator began on a batch (``time.monotonic()``), None until it has."""

    __slots__ = ("began",)

    def __init__(self) -> None:
        self.began: float | None = None


@dataclass(eq=False)
class Batcher:
    """Queue + worker for one translator. `start()` inside a running event loop."""

    translate: TranslateFn  # runs in `executor`'s threads, `concurrency` batches at a time
    max_batch_size: int = 64
    max_batch_tokens: int = 16384
    max_wait_ms: float = 5.0
    max_queue: int = 1024
    concurrency: int = 1  # batches computed at once: one per model worker process
    observer: BatchObserver = field(default_factory=_NoObserver)
    on_error: Callable[[BaseException], None] = lambda exc: None  # sees every model failure
    executor: Executor | None = None  # None: asyncio's default thread pool

    def __post_init__(self) -> None:
        self._queue: deque[Entry] = deque()
        self._wakeup = asyncio.Event()
        self._closing = False
        self._closed_reason = "the server is shutting down; retry on another instance"
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[Entry] = set()  # sentences being computed
        self._crash: BaseException | None = None  # escaped a batch task: a bug
        self._last_batch_ended = float("-inf")  # time.monotonic()
        self._expected = max(1, self.max_batch_size)  # sentences worth waiting for (see below)
        self._busy = 0  # batches the translators are computing (their results may be pending)
        # Per batch handed to a translator (by id of its entry list): when the translator
        # began on it, set on the model thread; None while it waits there behind another.
        self._running: dict[int, BatchClock] = {}

    @property
    def depth(self) -> int:
        """Sentences waiting (not counting the batch being computed)."""
        return len(self._queue)

    def computing_for(self) -> float:
        """Seconds the oldest batch still with a translator has been computing (0: none).

        A translator that is stopped (a model worker under SIGSTOP, a hung device call) is
        alive but answers nothing; this is how /ready tells."""
        begun = [clock.began for clock in self._running.values() if clock.began is not None]
        return time.monotonic() - min(begun) if begun else 0.0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="batcher")

    def enqueue(
        self,
        texts: Sequence[str],
        source_ids: Sequence[list[int]],
        options: DecodeOptions,
        deadline: float,
    ) -> list[asyncio.Future[Outcome]]:
        """Queue all of one request's sentences, or none of them (QueueFull)."""
        if self._closing:
            raise BatcherClosed(self._closed_reason)
        if len(self._queue) + len(texts) > self.max_queue:
            raise QueueFull(
                f"queue is full: {len(self._queue)} sentences waiting, this request adds "
                f"{len(texts)}; limit is {self.max_queue} (NMT_MAX_QUEUE)"
            )
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        futures: list[asyncio.Future[Outcome]] = []
        for text, ids in zip(texts, source_ids, strict=True):
            futures.append(loop.create_future())
            self._queue.append(Entry(text, options, futures[-1], now, deadline, ids))
        self._wakeup.set()
        self.observer.queue_depth(len(self._queue))
        return futures

    async def submit(
        self,
        texts: Sequence[str],
        source_ids: Sequence[list[int]],
        options: DecodeOptions,
        timeout_s: float,
    ) -> list[Outcome]:
        """Translate `texts` as part of whatever batches form; results in input order.

        Raises:
            QueueFull, BatcherClosed: nothing was queued.
            DeadlineExceeded: not done within `timeout_s`; unstarted sentences are dropped.
            Exception: whatever the translator raised for a batch holding one of `texts`.
        """
        futures = self.enqueue(texts, source_ids, options, time.monotonic() + timeout_s)
        deadline = asyncio.timeout(timeout_s)
        try:
            async with deadline:
                if len(futures) == 1:  # most requests: no gather to build
                    return [await futures[0]]
                return list(await asyncio.gather(*futures))
        except TimeoutError:
            if not deadline.expired():
                raise
            raise DeadlineExceeded(
                f"translation did not finish within {timeout_s:g} s (NMT_REQUEST_TIMEOUT_S)"
            ) from None
        finally:
            for future in futures:
                future.cancel()  # no-op when done; otherwise the worker skips it

    async def close(self, timeout_s: float | None = None) -> None:
        """Stop accepting, finish the queued work, then end the worker."""
        self._closing = True
        self._wakeup.set()
        if self._task is None:
            self._fail_pending()
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        except TimeoutError:
            logger.warning("batcher did not drain within %s s; cancelling", timeout_s)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        computing: set[asyncio.Task[None]] = set()
        slots = asyncio.Semaphore(self.concurrency)
        try:
            while self._queue or not self._closing:
                if not self._queue:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    self._raise_crash()
                    continue
                await slots.acquire()  # a translator is free
                self._raise_crash()
                await self._wait_for_company()
                self._drop_stale()
                # Fair share: leave the other free translators as much of the queue as this one.
                share = -(-len(self._queue) // (self.concurrency - self._busy))
                batch = next_batch(
                    self._queue, min(self.max_batch_size, share), self.max_batch_tokens
                )
                self.observer.queue_depth(len(self._queue))
                if not batch:
                    slots.release()
                    continue
                # The model starts now, not after the previous batch's results are delivered:
                # a task would first wait for every request task those results woke.
                started, running = time.monotonic(), self._start(batch)
                task = asyncio.create_task(self._compute(batch, running, started, slots))
                computing.add(task)
                task.add_done_callback(functools.partial(self._computed, computing))
            await asyncio.gather(*computing)
        except Exception as exc:
            logger.exception("batcher worker crashed")
            self._closed_reason = "the batcher stopped after an internal error (see server log)"
            self.on_error(BatcherCrashed(f"batcher worker crashed: {exc!r}"))
        finally:
            for task in computing:
                task.cancel()
            self._closing = True
            self._fail_pending()

    def _raise_crash(self) -> None:
        if self._crash is not None:
            raise self._crash

    def _computed(self, computing: set[asyncio.Task[None]], task: asyncio.Task[None]) -> None:
        """A batch task ended; an exception escaping it is a bug: crash."""
        computing.discard(task)
        if not task.cancelled() and task.exception() is not None and self._crash is None:
            self._crash = task.exception()
            self._wakeup.set()

    async def _wait_for_company(self) -> None:
        """Wait until the queue holds a full batch or everyone expected, or for max_wait_ms
        since the oldest entry arrived or the previous batch ended, whichever is later.

        Expected: the sentences of the previous batch plus those queued when it ended, as if
        each came from a client that will send again. Under steady load from N clients the
        batch then starts once all N are back instead of idling out max_wait_ms."""
        if self.max_batch_size == 1:
            return
        opened = max(self._queue[0].enqueued_at, self._last_batch_ended)
        enough = min(self.max_batch_size, self._expected)
        while len(self._queue) < enough and not self._closing:
            remaining = opened + self.max_wait_ms / 1000 - time.monotonic()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return

    def _drop_stale(self) -> None:
        cancelled, expired = pop_stale(self._queue, time.monotonic())
        for entry in expired:
            entry.future.set_exception(
                DeadlineExceeded("request deadline passed while queued (NMT_REQUEST_TIMEOUT_S)")
            )
        if cancelled:
            self.observer.dropped("cancelled", len(cancelled))
        if expired:
            self.observer.dropped("deadline", len(expired))

    def _start(self, batch: list[Entry]) -> asyncio.Future[Sequence[Result]]:
        """Hand `batch` to a model thread; its results (or error) arrive in the future."""
        loop = asyncio.get_running_loop()
        self._busy += 1
        self._inflight.update(batch)
        clock = self._running[id(batch)] = BatchClock()
        translate = self.translate

        def timed(
            texts: list[str], options: DecodeOptions, ids: list[list[int]] | None = None, /
        ) -> Sequence[Result]:
            clock.began = time.monotonic()  # the clock only: it may have left `_running`
            return translate(texts, options, ids)

        try:
            texts, ids = [e.text for e in batch], [e.source_ids for e in batch]
            return loop.run_in_executor(self.executor, timed, texts, batch[0].options, ids)
        except Exception as exc:  # e.g. an executor already shut down: fail this batch only
            failed: asyncio.Future[Sequence[Result]] = loop.create_future()
            failed.set_exception(exc)
            return failed

    async def _compute(
        self,
        batch: list[Entry],
        running: asyncio.Future[Sequence[Result]],
        started: float,
        slots: asyncio.Semaphore,
    ) -> None:
        await self._translate_batch(batch, running, started, slots)
        self._inflight.difference_update(batch)  # on a crash `_fail_pending` still sees them

    async def _translate_batch(
        self,
        batch: list[Entry],
        running: asyncio.Future[Sequence[Result]],
        started: float,
        slots: asyncio.Semaphore,
    ) -> None:
        try:
            try:
                results = await running
            finally:  # before any result is delivered, so the next batch goes first
                self._running.pop(id(batch), None)
                self._last_batch_ended = time.monotonic()
                self._expected = len(batch) + len(self._queue)
                self._busy -= 1
                slots.release()
            if len(results) != len(batch):
                raise RuntimeError(f"translator gave {len(results)} results for {len(batch)} texts")
        except BaseException as exc:
            self.observer.batch_done(batch, None, started, time.monotonic())
            failure = exc if isinstance(exc, Exception) else BatcherClosed("server stopped")
            for entry in batch:
                if not entry.future.done():
                    entry.future.set_exception(failure)
            if not isinstance(exc, Exception):
                raise
            self.on_error(exc)
            return
        ended = self._last_batch_ended
        self.observer.batch_done(batch, results, started, ended)
        for entry, result in zip(batch, results, strict=True):
            if result.error is not None:
                self.on_error(result.error)
            if not entry.future.done():
                entry.future.set_result(
                    Outcome(result, started - entry.enqueued_at, ended - started)
                )

    def _fail_pending(self) -> None:
        """Fail whatever is queued or was being computed when the worker ended."""
        for entry in [*self._inflight, *self._queue]:
            if not entry.future.done():
                entry.future.set_exception(BatcherClosed(self._closed_reason))
        self._queue.clear()
