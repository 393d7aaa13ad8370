"""`create_app(settings)`: the FastAPI app, its lifespan, middleware and routers.

Models load in the lifespan handler, not at import: each NMT_MODELS bundle is loaded, warmed up
with one translation, and given its own batcher; only then does /ready answer 200. On shutdown
the app stops being ready and the batchers drain what is queued.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.datastructures import Headers
from starlette.responses import Response

from model import DeviceError
from service import libretranslate, routes
from service.batching import Batcher, BatcherCrashed, TranslateFn
from service.body_limit import BodyLimitMiddleware, max_body_bytes
from service.deps import ServiceState
from service.errors import error_response, install_handlers
from service.fast_path import TranslationApp
from service.gc_tuning import tune_garbage_collector
from service.metrics import Metrics, MetricsMiddleware
from service.model_workers import (
    WorkerPool,
    describe_model,
    inference_runner,
    load_translator,
    warm_up,
)
from service.registry import LoadedModel, ModelDescription, TranslatorLike, default_options
from service.settings import Settings

logger = logging.getLogger(__name__)

TranslatorFactory = Callable[[Path, Settings], TranslatorLike]


def create_app(settings: Settings, translator_factory: TranslatorFactory | None = None) -> FastAPI:
    """The service for `settings`; `translator_factory(path, settings)` loads each bundle."""
    state = ServiceState(settings=settings, metrics=Metrics())
    factory = translator_factory or load_translator

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await load_models(state, factory)
            yield
        finally:
            await stop_models(state)

    app = TranslationApp(
        title="lstm-nmt",
        summary="Attention-LSTM machine translation with cross-request batching",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.service = state
    install_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes(settings))
    app.add_middleware(MetricsMiddleware, metrics=state.metrics, access_log=settings.access_log)
    if settings.cors_origins:
        app.add_middleware(
            JsonCorsMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
        )
    app.include_router(routes.router)
    app.include_router(libretranslate.router)
    return app


class JsonCorsMiddleware(CORSMiddleware):
    """Starlette's CORS, with a refused preflight answered in the API's error shape, saying
    what was refused and which setting allows it (Starlette answers in plain text)."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 400:
            return response
        refused = bytes(response.body).decode().removeprefix("Disallowed CORS ")
        origin = request_headers.get("origin", "")
        message = (
            f"CORS preflight refused ({refused}) for origin {origin!r}: allowed origins are "
            "set by NMT_CORS_ORIGINS, methods GET and POST, headers Authorization, X-API-Key "
            "and Content-Type"
        )
        keep = ("access-control-", "vary")  # the CORS headers, not the plain text's own
        headers = {k: v for k, v in response.headers.items() if k.lower().startswith(keep)}
        return error_response(400, "cors_refused", message, headers)


async def load_models(state: ServiceState, factory: TranslatorFactory) -> None:
    """Load, warm up and start a batcher for every bundle; raise (startup fails) on any error.

    With the default factory and NMT_MODEL_WORKERS > 0 the batches run in worker processes,
    which load the network and warm up; this process only reads the bundle (tokenizer, limits,
    metadata).
    """
    settings = state.settings
    loop = asyncio.get_running_loop()
    for path in settings.models:
        logger.info("loading model from %s", path)
        workers = settings.model_workers if factory is load_translator else 0
        translator: ModelDescription
        run: TranslateFn
        if workers:
            translator = await asyncio.to_thread(describe_model, path, settings)
            defaults = default_options(translator, settings.max_beam)
            pool = await asyncio.to_thread(WorkerPool, path, settings, defaults)
            state.worker_pools.append(pool)
            run = pool.translate
            logger.info("model %s: %d worker processes", translator.model_id, workers)
        else:
            model_thread = state.model_thread  # the only thread that touches this model
            translator = in_process = await loop.run_in_executor(
                model_thread, factory, path, settings
            )
            defaults = default_options(translator, settings.max_beam)
            run = inference_runner(in_process)
            await loop.run_in_executor(model_thread, warm_up, run, defaults, path)
        batcher = Batcher(
            run,
            executor=None if workers else state.model_thread,
            concurrency=max(1, workers),
            max_batch_size=settings.max_batch_size,
            max_batch_tokens=settings.max_batch_tokens,
            max_wait_ms=settings.max_wait_ms,
            max_queue=settings.max_queue,
            observer=state.metrics.for_model(translator.model_id),
            on_error=functools.partial(_on_model_error, state),
        )
        state.registry.add(LoadedModel(translator, batcher, defaults, workers))
        batcher.start()
        logger.info(
            "model %s ready (%s->%s)",
            translator.model_id,
            translator.source_lang,
            translator.target_lang,
        )
    tune_garbage_collector()
    state.loaded = True
    state.metrics.ready.set(1)


async def stop_models(state: ServiceState) -> None:
    """Stop being ready, then let every batcher finish its queue."""
    state.draining = True
    state.metrics.ready.set(0)
    timeout = state.settings.request_timeout_s
    await asyncio.gather(*(loaded.batcher.close(timeout) for loaded in state.registry))
    for pool in state.worker_pools:
        await asyncio.to_thread(pool.close)
    state.model_thread.shutdown(wait=False)


def _on_model_error(state: ServiceState, exc: BaseException) -> None:
    """An unrecoverable error takes the instance out of rotation (/ready 503)."""
    if isinstance(exc, DeviceError | BatcherCrashed) and state.failure is None:
        logger.critical("unrecoverable: marking the service not ready: %s", exc)
        state.failure = str(exc) or type(exc).__name__
        state.metrics.ready.set(0)
