"""The native API: POST /v1/translate, GET /v1/models, /health, /ready, /metrics.

Only the translate endpoints (here and in libretranslate.py) need a key when NMT_API_KEYS is
set; discovery (/v1/models, /languages) and operations (/health, /ready, /metrics) stay open.
"""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import ValidationError

from service.deps import (
    RegistryDep,
    SettingsDep,
    StateDep,
    check_api_key,
    get_registry,
    get_settings,
    read_body,
    require_api_key,
)
from service.errors import SEND_JSON_OBJECT, ApiError, describe_validation, error_response
from service.registry import model_info
from service.schemas import (
    ErrorBody,
    ModelList,
    Status,
    Timing,
    TranslateRequest,
    TranslateResponse,
)
from service.translation import check_texts, decode_options, to_translation, translate_texts

router = APIRouter()

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (400, 401, 404, 422, 503, 504)
}


@router.post(
    "/v1/translate",
    response_model=TranslateResponse,
    response_model_exclude_none=True,
    dependencies=[Depends(require_api_key)],
    responses=ERRORS,
    tags=["translate"],
)
async def translate(
    body: TranslateRequest, request: Request, registry: RegistryDep, settings: SettingsDep
) -> TranslateResponse:
    """Translate one text or a list of texts; long texts are split into sentences."""
    started = time.perf_counter()
    single = body.texts is None
    field = "text" if single else "texts"
    check_texts(body.inputs, field, single, settings)
    loaded = registry.resolve(body.model, body.source, body.target)
    options = decode_options(
        loaded.defaults,
        settings,
        beam_size=body.beam_size,
        n_best=body.n_best,
        max_length=body.max_length,
        return_alignment=body.return_alignment,
    )
    done = await translate_texts(loaded, body.inputs, options, settings, request, field, single)
    translations = [
        to_translation(text, body.n_best, body.return_scores, body.return_alignment)
        for text in done.texts
    ]
    timing = Timing(
        queue_ms=round(done.queue_s * 1000, 3),
        compute_ms=round(done.compute_s * 1000, 3),
        total_ms=round((time.perf_counter() - started) * 1000, 3),
    )
    return TranslateResponse(model=loaded.id, translations=translations, timing=timing)


async def translate_lean(request: Request) -> Response:
    """`translate` without FastAPI's per-request machinery (dependency solving, validating the
    body from Python objects, validating and encoding the response again): the HTTP side's CPU
    per request fell from 1.0 to 0.6-0.7 ms (bench/README.md). `service.fast_path` serves
    POST /v1/translate with it.

    Same checks in the same order (API key, readiness, body), and errors are raised to the
    same exception handlers, so the API is the one documented by `translate`'s route.
    """
    settings = await get_settings(request)
    check_api_key(request, settings)
    registry = await get_registry(request)
    raw = await read_body(request, settings)
    if not raw.strip():
        raise ApiError(422, "validation_error", f"request body is empty; {SEND_JSON_OBJECT}")
    try:
        body = TranslateRequest.model_validate_json(raw)
    except ValidationError as exc:
        body = _read_refused_json(raw, exc, request)
    result = await translate(body, request, registry, settings)
    return Response(result.model_dump_json(exclude_none=True), media_type="application/json")


def _read_refused_json(raw: bytes, refused: ValidationError, request: Request) -> TranslateRequest:
    """The request behind a body pydantic's JSON parser refused, or the clearest error for it."""
    errors = refused.errors(include_url=False)
    if not any(err["type"] == "json_invalid" for err in errors):
        raise RequestValidationError(errors)
    if b"\\u" in raw:  # a lone surrogate can only come from an escape
        body = _with_lone_surrogates(raw)
        if body is not None:
            return body
    status, code, message = describe_validation(errors)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media and media != "application/json":  # curl -d without -H sends a form's type
        message += f"; the body was sent as {media}: {SEND_JSON_OBJECT}"
    raise ApiError(status, code, message)


def _with_lone_surrogates(raw: bytes) -> TranslateRequest | None:
    """The request, where the body is JSON but for a lone surrogate escape (``"\\ud800"``),
    which pydantic's parser refuses with a message about hex escapes: read by Python's json,
    which keeps it, the texts' own check then names the text and the character. None where
    Python's json refuses the body too (strict UTF-8, no encoding guessed, no deep nesting)."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError included
        return None
    try:
        return TranslateRequest.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None


@router.get("/v1/models", response_model=ModelList, responses=ERRORS, tags=["models"])
async def models(registry: RegistryDep) -> ModelList:
    """The loaded models: languages, architecture, decoding defaults, checksum, metrics."""
    return ModelList(models=[model_info(loaded) for loaded in registry])


@router.get("/health", response_model=Status, response_model_exclude_none=True, tags=["ops"])
async def health() -> Status:
    """Liveness: the process is up and answering (models may still be loading)."""
    return Status(status="ok")


@router.get("/ready", response_model=Status, responses={503: {"model": ErrorBody}}, tags=["ops"])
async def ready(state: StateDep) -> Status | JSONResponse:
    """Readiness: 200 only when every model is loaded and warm, nothing has failed and no
    batch has been computing for longer than a request may wait."""
    if state.failure is not None:
        return error_response(503, "unrecoverable_error", f"a model failed: {state.failure}")
    if state.draining:
        return error_response(503, "draining", "the server is shutting down")
    if not state.loaded:
        return error_response(503, "not_ready", "models are still loading")
    limit = state.settings.request_timeout_s
    computing, stuck = max(
        ((loaded.batcher.computing_for(), loaded.id) for loaded in state.registry),
        default=(0.0, ""),
    )
    if computing > limit:
        message = (
            f"model {stuck} has been computing one batch for {computing:.1f} s, longer than "
            f"a request may wait ({limit:g} s, NMT_REQUEST_TIMEOUT_S): its translator is "
            "stopped or stuck"
        )
        return error_response(503, "model_stalled", message)
    return Status(status="ready", models=[loaded.id for loaded in state.registry])


@router.get("/metrics", tags=["ops"])
async def metrics(state: StateDep) -> Response:
    """Prometheus exposition format."""
    body, content_type = state.metrics.render()
    return Response(body, media_type=content_type)


def answer_head(router: APIRouter) -> None:
    """HEAD on each of ``router``'s GET routes (`curl -I /health`, load balancers' probes), as
    Starlette's own routes do and FastAPI's do not; uvicorn leaves the body out. Kept out of
    the docs, where each would repeat its GET."""
    for route in list(router.routes):
        if isinstance(route, APIRoute) and "GET" in (route.methods or ()):
            router.add_api_route(
                route.path,
                route.endpoint,
                methods=["HEAD"],
                response_model=route.response_model,
                response_model_exclude_none=route.response_model_exclude_none,
                status_code=route.status_code,
                response_class=route.response_class,
                dependencies=route.dependencies,  # a guard on the GET guards its HEAD
                include_in_schema=False,
            )


answer_head(router)
