"""From request texts to translations: limits, sentence splitting, batching, reassembly.

Texts are split into sentences (splitter.py), and sentences longer than NMT_MAX_INPUT_TOKENS
are cut into pieces that fit, so any text within NMT_MAX_TEXT_CHARS translates.

Shared by /v1/translate and the LibreTranslate endpoint. Every sentence of every text of a
request goes to the batcher at once, so they share batches with each other and with other
requests; the translations are put back into each text's original layout.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import math
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import NamedTuple, TypeVar

from fastapi import Request

from model import DecodeOptions, InputTooLong, Result
from service import splitter
from service.errors import ApiError
from service.registry import LoadedModel
from service.schemas import Alternative, SentenceAlignment, Translation
from service.settings import Settings

T = TypeVar("T")


@dataclass(frozen=True)
class TextResult:
    """One input text: its sentence split and one Result per sentence."""

    parts: splitter.Split
    results: list[Result]


@dataclass(frozen=True)
class Batched:
    texts: list[TextResult]
    queue_s: float  # the longest any sentence waited
    compute_s: float  # the longest batch involved


def _name(field: str, index: int, single: bool) -> str:
    return field if single else f"{field}[{index}]"


def check_texts(texts: Sequence[str], field: str, single: bool, settings: Settings) -> None:
    """Count and size limits that come from Settings (422 naming the setting)."""
    if len(texts) > settings.max_texts:
        raise ApiError(
            422,
            "too_many_texts",
            f"{field} has {len(texts)} items; limit is {settings.max_texts} (NMT_MAX_TEXTS)",
        )
    for i, text in enumerate(texts):
        _check_unicode(text, _name(field, i, single))
        if len(text) > settings.max_text_chars:
            raise ApiError(
                422,
                "text_too_long",
                f"{_name(field, i, single)} has {len(text)} characters; "
                f"limit is {settings.max_text_chars} (NMT_MAX_TEXT_CHARS)",
            )


def _check_unicode(text: str, name: str) -> None:
    """A lone surrogate (which a JSON `\\ud800` escape can produce) is not text. The tokenizer
    would read it as U+FFFD; the client is told instead, as /v1/translate's JSON parser does."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ApiError(
            422,
            "invalid_text",
            f"{name} has a lone surrogate U+{ord(text[exc.start]):04X} at character {exc.start}; "
            "texts must be valid Unicode",
        ) from None


class CandidateCount(NamedTuple):
    """A request field that asks for ``n_best`` candidates: ``n_best`` itself, or
    LibreTranslate's ``alternatives``, which counts the ones beyond the best."""

    name: str
    extra: int  # n_best = the field's value + extra


N_BEST = CandidateCount("n_best", 0)
ALTERNATIVES = CandidateCount("alternatives", 1)


def decode_options(
    defaults: DecodeOptions,
    settings: Settings,
    *,
    beam_size: int | None = None,
    n_best: int = 1,
    max_length: int | None = None,
    return_alignment: bool = False,
    asked_as: CandidateCount | None = None,
) -> DecodeOptions:
    """The request's DecodeOptions on top of the model's defaults, checked against NMT_MAX_BEAM.

    ``asked_as``: how the client asked for ``n_best``, so that an error speaks of what it sent.
    """
    if beam_size is None and n_best > settings.max_beam:  # the beam is widened to n_best
        field = asked_as or N_BEST
        allowed = f"{1 - field.extra} to {settings.max_beam - field.extra}"
        raise ApiError(
            422,
            "n_best_out_of_range",
            f"{field.name} is {n_best - field.extra}; allowed: {allowed} (NMT_MAX_BEAM)",
        )
    beam = beam_size if beam_size is not None else max(defaults.beam_size, n_best)
    if not 1 <= beam <= settings.max_beam:
        raise ApiError(
            422,
            "beam_size_out_of_range",
            f"beam_size is {beam}; allowed: 1 to {settings.max_beam} (NMT_MAX_BEAM)",
        )
    if not 1 <= n_best <= beam:
        raise ApiError(
            422, "n_best_out_of_range", f"n_best is {n_best}; allowed: 1 to beam_size ({beam})"
        )
    max_length = max_length if max_length is not None else defaults.max_length
    return _with_overrides(defaults, beam, n_best, max_length, return_alignment)


@functools.lru_cache(maxsize=1024)
def _with_overrides(
    defaults: DecodeOptions,
    beam_size: int,
    n_best: int,
    max_length: int | None,
    return_attention: bool,
) -> DecodeOptions:
    """``defaults`` with a request's settings, cached: clients repeat a handful of settings,
    and ``dataclasses.replace`` re-runs the checks of ``DecodeOptions`` each time (about 2% of
    the HTTP side's CPU per request, bench/README.md, stop 27)."""
    return dataclasses.replace(
        defaults,
        beam_size=beam_size,
        n_best=n_best,
        max_length=max_length,
        return_attention=return_attention,
    )


async def translate_texts(
    loaded: LoadedModel,
    texts: Sequence[str],
    options: DecodeOptions,
    settings: Settings,
    request: Request,
    field: str = "texts",
    single: bool = False,
) -> Batched:
    """Split into sentences that fit the model, translate them in shared batches, regroup."""
    # Each sentence is encoded once, here: splitter.fit asks about the same sentences again,
    # and the model reads these ids rather than encoding the sentences a second time.
    encoded: dict[str, list[int]] = {}

    def encode(sentence: str) -> list[int]:
        if sentence not in encoded:
            encoded[sentence] = loaded.translator.encode(sentence)
        return encoded[sentence]

    limit = settings.max_input_tokens
    splits = [splitter.fit(splitter.split(t), lambda s: len(encode(s)) <= limit) for t in texts]
    sentences = [s for parts in splits for s in parts.sentences]
    source_ids = [encode(s) for s in sentences]
    counts = [len(ids) for ids in source_ids]
    _check_tokens(splits, counts, field, single, limit)  # only a 1-character piece can fail
    if not sentences:
        return Batched([TextResult(parts, []) for parts in splits], 0.0, 0.0)
    if len(sentences) > loaded.batcher.max_queue:  # would never fit: retrying cannot help
        raise ApiError(
            422,
            "too_many_sentences",
            f"the request splits into {len(sentences)} sentences; at most "
            f"{loaded.batcher.max_queue} can be queued (NMT_MAX_QUEUE): send fewer at a time",
        )
    work = loaded.batcher.submit(sentences, source_ids, options, settings.request_timeout_s)
    outcomes = await unless_disconnected(work, request)
    results = [outcome.result for outcome in outcomes]
    grouped: list[TextResult] = []
    for i, parts in enumerate(splits):
        mine, results = results[: len(parts.sentences)], results[len(parts.sentences) :]
        _raise_first_error(mine, _name(field, i, single))
        grouped.append(TextResult(parts, mine))
    return Batched(
        grouped,
        max(o.queue_s for o in outcomes),
        max(o.compute_s for o in outcomes),
    )


def _check_tokens(
    splits: list[splitter.Split], counts: list[int], field: str, single: bool, limit: int
) -> None:
    flat = [(i, j) for i, parts in enumerate(splits) for j in range(len(parts.sentences))]
    for (i, j), n_tokens in zip(flat, counts, strict=True):
        if n_tokens > limit:
            raise ApiError(
                422,
                "input_too_long",
                f"{_name(field, i, single)} sentence {j + 1} has {n_tokens} tokens; "
                f"limit is {limit} (NMT_MAX_INPUT_TOKENS)",
            )


def _raise_first_error(results: list[Result], name: str) -> None:
    for j, result in enumerate(results):
        error = result.error
        if isinstance(error, InputTooLong):
            raise ApiError(
                422,
                error.code,
                f"{name} sentence {j + 1} has {error.n_tokens} tokens; "
                f"limit is {error.limit} (NMT_MAX_INPUT_TOKENS)",
            )
        if error is not None:
            raise error


async def unless_disconnected(work: Awaitable[T], request: Request) -> T:
    """Await `work`, cancelling it (and so dropping queued sentences) if the client goes away.

    A watcher task reads the next ASGI message and, on a disconnect, cancels this task (as
    `asyncio.timeout` does): no second task to await and no `asyncio.wait` per request, 5.9%
    of the HTTP side's instructions per request (bench/README.md).
    """
    this = asyncio.current_task()
    assert this is not None, "called outside a task"
    gone = finished = False

    def on_message(watcher: asyncio.Task[bool]) -> None:
        nonlocal gone
        if watcher.cancelled() or watcher.exception() is not None or finished:
            return
        if watcher.result():
            gone = True
            this.cancel()

    watcher = asyncio.ensure_future(_disconnected(request))
    watcher.add_done_callback(on_message)
    try:
        return await work
    except asyncio.CancelledError:
        if gone and this.uncancel() == 0:  # cancelled by the watcher alone
            closed = "the client closed the connection"
            raise ApiError(499, "client_closed_request", closed) from None
        raise
    finally:
        finished = True
        watcher.cancel()


async def _disconnected(request: Request) -> bool:
    # The body has been read by now, so the next ASGI message is the disconnect (servers send
    # it when the client goes, or when the response is complete).
    message = await request.receive()
    return bool(message["type"] == "http.disconnect")


def to_translation(
    text: TextResult, n_best: int, return_scores: bool, return_alignment: bool
) -> Translation:
    """The API's view of one text: translation, mean score, alternatives, alignment."""
    parts, results = text.parts, text.results
    out = Translation(text=splitter.join(parts, [r.text for r in results]))
    if return_scores:
        out.score = _mean([r.candidates[0].score for r in results])
    if n_best > 1:
        # The k-th alternative takes each sentence's k-th candidate, or its last where it has
        # fewer (the model keeps each text once); a text already given is not given again.
        out.alternatives = []
        seen = {out.text}
        for k in range(1, n_best):
            picked = [r.candidates[min(k, len(r.candidates) - 1)] for r in results]
            alt = splitter.join(parts, [c.text for c in picked])
            if alt not in seen:
                seen.add(alt)
                score = _mean([c.score for c in picked]) if return_scores else None
                out.alternatives.append(Alternative(text=alt, score=score))
    if return_alignment:
        out.alignment = [
            SentenceAlignment(
                source=source,
                translation=r.text,
                source_tokens=list(r.source_tokens or ()),
                target_tokens=list(r.candidates[0].tokens or ()),
                weights=r.candidates[0].attention or [],
            )
            for source, r in zip(parts.sentences, results, strict=True)
        ]
    return out


def _mean(scores: list[float]) -> float | None:
    finite = [s for s in scores if math.isfinite(s)]
    return round(sum(finite) / len(finite), 6) if finite else None
