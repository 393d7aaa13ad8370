"""A fake translator (echo) that records its batches, and helpers to build apps around it."""

from __future__ import annotations

import asyncio
import threading
import time
import zlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from model import Candidate, DecodeOptions, ModelConfig, ModelError, Result
from service.app import create_app
from service.settings import Settings

DEFAULT_OPTIONS = DecodeOptions()
SIGNATURE = "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.4.0"


class FakeTranslator:
    """Translates every text to itself. Candidate k > 0 is `text ~k`, scored -0.5 - k.

    `gate` (a threading.Event, open by default) holds batches while cleared; `fail_on`
    makes a batch raise when one of its texts contains the string; `errors` gives a
    per-sentence Result.error for exact texts; `distinct` caps the candidates of exact texts,
    as the real translator gives fewer where hypotheses read the same.
    """

    def __init__(self, model_id: str = "fake-en-de", source: str = "en", target: str = "de"):
        self.model_id = model_id
        self.source_lang = source
        self.target_lang = target
        self.config = ModelConfig(src_vocab_size=50, tgt_vocab_size=50, emb_size=8, hidden_size=16)
        self.metadata: dict[str, Any] = {
            "source_lang": source,
            "target_lang": target,
            "metrics": {"test": {"bleu": 36.1, "chrf": 60.2, "signature": SIGNATURE}},
        }
        self.checksum = "ab" * 32
        self.quantize = "none"
        self.shortlist_info = None
        self.device = "cpu"
        self.batches: list[tuple[list[str], DecodeOptions]] = []
        self.source_ids: list[list[list[int]] | None] = []  # each batch's, as passed in
        self.gate = threading.Event()
        self.gate.set()
        self.fail_on: str | None = None
        self.failure: Exception = RuntimeError("boom")
        self.errors: dict[str, ModelError] = {}
        self.chars_per_token: int | None = None  # count by characters instead of words
        self.distinct: dict[str, int] = {}

    @property
    def sizes(self) -> list[int]:
        return [len(texts) for texts, _ in self.batches]

    def count_tokens(self, text: str) -> int:
        if self.chars_per_token:
            return -(-len(text) // self.chars_per_token) + 1
        return len(text.split()) + 1

    def encode(self, text: str) -> list[int]:
        """As many ids as `count_tokens` says, each a checksum of the text and its position."""
        return [(zlib.crc32(text.encode()) + i) % 1000 for i in range(self.count_tokens(text))]

    def translate(
        self,
        texts: Sequence[str],
        options: DecodeOptions = DEFAULT_OPTIONS,
        source_ids: Sequence[list[int]] | None = None,
    ) -> list[Result]:
        self.batches.append((list(texts), options))
        self.source_ids.append(None if source_ids is None else list(source_ids))
        assert self.gate.wait(timeout=10), "test left the gate closed"
        if self.fail_on is not None and any(self.fail_on in t for t in texts):
            raise self.failure
        return [self._result(t, options) for t in texts]

    def _result(self, text: str, options: DecodeOptions) -> Result:
        """Like `Translator`'s: one id per word, pieces only with attention."""
        with_pieces = options.return_attention
        source = (*text.split(), "</s>")
        source_tokens = source if with_pieces else ()
        if text in self.errors:
            return Result(candidates=(), source_tokens=source_tokens, error=self.errors[text])
        candidates = []
        for k in range(min(options.n_best, self.distinct.get(text, options.n_best))):
            out = text if k == 0 else f"{text} ~{k}"
            words = tuple(out.split())
            ids = tuple(range(4, 4 + len(words)))
            attention = None
            if with_pieces:
                attention = [[1 / len(source)] * len(source) for _ in range(len(words) + 1)]
            tokens = words if with_pieces else None
            candidates.append(
                Candidate(
                    text=out, score=-0.5 - k, token_ids=ids, tokens=tokens, attention=attention
                )
            )
        return Result(candidates=tuple(candidates), source_tokens=source_tokens)


def make_settings(*fakes: FakeTranslator, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"max_wait_ms": 1.0, "models": [_path(f) for f in fakes]}
    values.update(overrides)
    return Settings(**values)


def make_app(*fakes: FakeTranslator, **overrides: Any) -> FastAPI:
    """An app serving `fakes` (default: one FakeTranslator) with Settings `overrides`."""
    fakes = fakes or (FakeTranslator(),)
    by_path = {_path(f): f for f in fakes}
    return create_app(make_settings(*fakes, **overrides), lambda path, _: by_path[path])


def _path(fake: FakeTranslator) -> Path:
    return Path("/bundles") / fake.model_id


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll `condition` every millisecond (the worker thread changes state we watch)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.001)


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run the app's lifespan and give an async client talking to it in this event loop."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus exposition `text` (0.0 when absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0
