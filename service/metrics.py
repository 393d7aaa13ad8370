"""Prometheus metrics, one registry per app (so tests can build many apps in one process).

Request-level numbers come from `MetricsMiddleware`; batch-level numbers come from the batcher
through `ModelMetrics`, which implements `batching.BatchObserver`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from model import Result
    from service.batch_queue import Entry

access_logger = logging.getLogger("service.access")

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_RATIOS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 0.9, 1.0)


class Metrics:
    """All of one app's metrics, in their own CollectorRegistry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        self.requests = Counter(
            "nmt_requests",
            "HTTP requests by route and status",
            ["route", "method", "status"],
            registry=reg,
        )
        self.latency = Histogram(
            "nmt_request_duration_seconds",
            "HTTP request latency",
            ["route"],
            buckets=_SECONDS,
            registry=reg,
        )
        self.queue_wait = Histogram(
            "nmt_queue_wait_seconds",
            "Time a sentence waited before its batch started",
            ["model"],
            buckets=_SECONDS,
            registry=reg,
        )
        self.compute = Histogram(
            "nmt_batch_compute_seconds",
            "Model time per batch",
            ["model"],
            buckets=_SECONDS,
            registry=reg,
        )
        self.batch_size = Histogram(
            "nmt_batch_size", "Sentences per batch", ["model"], buckets=_BATCH_SIZES, registry=reg
        )
        self.padding = Histogram(
            "nmt_batch_padding_ratio",
            "1 - real source tokens / (sentences x longest)",
            ["model"],
            buckets=_RATIOS,
            registry=reg,
        )
        self.queue_depth = Gauge("nmt_queue_depth", "Sentences queued", ["model"], registry=reg)
        self.src_tokens = Counter(
            "nmt_source_tokens", "Source tokens translated (incl. </s>)", ["model"], registry=reg
        )
        self.tgt_tokens = Counter(
            "nmt_target_tokens", "Target tokens produced (best candidate)", ["model"], registry=reg
        )
        self.failed_batches = Counter(
            "nmt_failed_batches", "Batches whose translation raised", ["model"], registry=reg
        )
        self.dropped = Counter(
            "nmt_dropped_sentences",
            "Sentences dropped before compute",
            ["model", "reason"],
            registry=reg,
        )
        self.ready = Gauge("nmt_ready", "1 when every model is loaded and warm", registry=reg)

    def for_model(self, model_id: str) -> ModelMetrics:
        return ModelMetrics(self, model_id)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class ModelMetrics:
    """Batch metrics of one model; a `batching.BatchObserver`.

    Each metric's child for the model is looked up once: `labels()` checks and joins its
    values under a lock on every call, and was about 7% of the HTTP side's CPU per request
    (bench/README.md, stop 27).
    """

    def __init__(self, metrics: Metrics, model_id: str) -> None:
        self._m = metrics
        self._model = model_id
        self._depth = metrics.queue_depth.labels(model_id)
        self._batch_size = metrics.batch_size.labels(model_id)
        self._padding = metrics.padding.labels(model_id)
        self._compute = metrics.compute.labels(model_id)
        self._queue_wait = metrics.queue_wait.labels(model_id)
        self._failed = metrics.failed_batches.labels(model_id)
        self._src_tokens = metrics.src_tokens.labels(model_id)
        self._tgt_tokens = metrics.tgt_tokens.labels(model_id)

    def queue_depth(self, depth: int) -> None:
        self._depth.set(depth)

    def dropped(self, reason: str, count: int) -> None:
        self._m.dropped.labels(self._model, reason).inc(count)

    def batch_done(
        self, batch: Sequence[Entry], results: Sequence[Result] | None, started: float, ended: float
    ) -> None:
        tokens = [e.n_tokens for e in batch]
        self._batch_size.observe(len(batch))
        self._padding.observe(1 - sum(tokens) / (max(tokens) * len(tokens)))
        self._compute.observe(ended - started)
        for entry in batch:
            self._queue_wait.observe(started - entry.enqueued_at)
        if results is None:
            self._failed.inc()
            return
        self._src_tokens.inc(sum(tokens))
        produced = sum(len(r.candidates[0].token_ids) for r in results if r.candidates)
        self._tgt_tokens.inc(produced)


def route_label(scope: Scope) -> str:
    """The route's template, never the raw path, so the label's values stay bounded. The app's
    routes carry their template; Starlette's own (the docs) match fixed paths, and say so by
    the endpoint they set."""
    route = scope.get("route")
    if route is not None:
        return str(route.path)
    return str(scope["path"]) if "endpoint" in scope else "unmatched"


class MetricsMiddleware:
    """Pure ASGI middleware counting requests and timing them by route template, and writing
    the access log: one line per request with its status and milliseconds.

    The line is ours rather than uvicorn's: uvicorn's formatter copies each record and looks
    the status phrase up in an enum, and its line took about a fifth of the HTTP side's CPU
    per translation request (bench/README.md, stop 26).
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, access_log: bool = True) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log
        # The request counter's and latency histogram's children by label values, looked up
        # once (see ModelMetrics); routes are templates, methods and statuses few.
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # unless a response starts

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            elapsed = time.perf_counter() - started
            route = route_label(scope)
            requests, latency = self._children_for(route, scope["method"], status)
            requests.inc()
            latency.observe(elapsed)
            if self.access_log:
                log_access(scope, status, elapsed)

    def _children_for(self, route: str, method: str, status: int) -> tuple[Counter, Histogram]:
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.metrics.requests.labels(route, method, str(status)),
                self.metrics.latency.labels(route),
            )
        return children


def log_access(scope: Scope, status: int, elapsed: float) -> None:
    """``127.0.0.1:52114 "POST /v1/translate HTTP/1.1" 200 12.3 ms`` on the service.access
    logger."""
    host, port = scope.get("client") or ("-", 0)
    query = scope.get("query_string", b"")
    path = scope["path"] + ("?" + query.decode("latin-1") if query else "")
    line = '%s:%d "%s %s HTTP/%s" %d %.1f ms'
    access_logger.info(
        line, host, port, scope["method"], path, scope["http_version"], status, elapsed * 1000
    )
