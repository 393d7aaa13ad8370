"""Every error the API answers with: one status code and one JSON shape.

The body is always `{"error": {"code": "...", "message": "..."}}`, where `code` is stable and
machine-readable and `message` says what was wrong, the limit, and the setting behind it. Bad
input is 4xx; 500 is kept for bugs, logged with their traceback and answered without it.

| error                                   | status  | code                           |
|-----------------------------------------|---------|--------------------------------|
| body is not JSON                        | 400     | invalid_json                   |
| schema violation (types, ranges, ...)   | 422     | validation_error               |
| ApiError (limits, unknown model, auth)  | its own | its own                        |
| body larger than any valid request      | 413     | body_too_large (body_limit.py) |
| body compressed (Content-Encoding)      | 415     | unsupported_content_encoding   |
| body not all sent within the timeout    | 408     | request_timeout                |
| a text with a lone surrogate            | 422     | invalid_text                   |
| more sentences than the queue can hold  | 422     | too_many_sentences             |
| model.InputTooLong                      | 422     | input_too_long                 |
| model.DeviceError                       | 503     | device_error                   |
| other model.ModelError                  | 500     | the error's code               |
| batching.QueueFull                      | 503     | queue_full (Retry-After)       |
| batching.BatcherClosed                  | 503     | shutting_down (Retry-After)    |
| batching.DeadlineExceeded               | 504     | deadline_exceeded              |
| no such route / method                  | 404/405 | not_found / method_not_allowed |
| anything else                           | 500     | internal_error                 |
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from model import DeviceError, InputTooLong, ModelError
from service.batching import BatcherClosed, BatcherError, DeadlineExceeded, QueueFull

logger = logging.getLogger(__name__)

SEND_JSON_OBJECT = "send a JSON object (Content-Type: application/json)"
RETRY_AFTER_S = 1  # what a client should wait after 503 queue_full


class ApiError(Exception):
    """An error the service raises itself, already knowing its status and code."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message}}
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def model_error_status(exc: ModelError) -> int:
    if isinstance(exc, InputTooLong):
        return 422
    if isinstance(exc, DeviceError):
        return 503
    return 500


def batcher_error_response(exc: BatcherError) -> JSONResponse:
    if isinstance(exc, QueueFull):
        return error_response(503, exc.code, str(exc), {"Retry-After": str(RETRY_AFTER_S)})
    if isinstance(exc, BatcherClosed):
        return error_response(503, exc.code, str(exc), {"Retry-After": str(5 * RETRY_AFTER_S)})
    if isinstance(exc, DeadlineExceeded):
        return error_response(504, exc.code, str(exc))
    return error_response(500, exc.code, str(exc))


def describe_validation(errors: Sequence[Any]) -> tuple[int, str, str]:
    """(status, code, message) for pydantic errors: each with its field path and what is allowed."""
    for err in errors:
        if err.get("type") == "json_invalid":
            reason = err.get("ctx", {}).get("error", "malformed")
            where = f" at character {err['loc'][-1]}" if len(err["loc"]) > 1 else ""
            return 400, "invalid_json", f"request body is not valid JSON: {reason}{where}"
    return 422, "validation_error", "; ".join(_describe(err) for err in errors)


def _describe(err: Mapping[str, Any]) -> str:
    path = _field_path(err.get("loc", ()))
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    kind = str(err.get("type", ""))
    if path == "request body" and (kind == "missing" or isinstance(err.get("input"), bytes)):
        return f"request body: {SEND_JSON_OBJECT}"
    if kind.endswith("_type") or kind.endswith("_parsing"):
        msg += f" (got {type(err.get('input')).__name__})"
    return f"{path}: {msg}"


def _field_path(loc: Sequence[Any]) -> str:
    """('body', 'texts', 2) -> 'texts[2]'."""
    parts = list(loc[1:] if loc and loc[0] in ("body", "query", "path", "header") else loc)
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "request body"


def allowed_methods(starlette_allow: str) -> str:
    """A 405's Allow with HEAD wherever GET is (RFC 9110: Allow lists what the path serves).

    Starlette names the methods of the one route it matched, and each GET route's HEAD is a
    route of its own (routes.answer_head), so it said ``GET`` where HEAD works too."""
    methods = {method.strip() for method in starlette_allow.split(",") if method.strip()}
    if "GET" in methods:
        methods.add("HEAD")
    order = ("GET", "HEAD", "POST")  # any other method after these, by name
    return ", ".join(sorted(methods, key=lambda m: (order.index(m) if m in order else 3, m)))


def install_handlers(app: FastAPI) -> None:
    """Register the handlers that turn every exception into the shape above."""

    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    async def model_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ModelError)
        message = str(exc) or exc.code
        if isinstance(exc, InputTooLong) and "NMT_" not in message:
            message += " (NMT_MAX_INPUT_TOKENS)"
        if model_error_status(exc) == 500:
            logger.error("model error on %s: %s", request.url.path, message)
        return error_response(model_error_status(exc), exc.code, message)

    async def batcher_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, BatcherError)
        return batcher_error_response(exc)

    async def validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(*describe_validation(exc.errors()))

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        method, path = request.method, request.url.path
        if exc.status_code == 404:
            code, message = "not_found", f"no such endpoint: {method} {path} (see /docs)"
        elif exc.status_code == 405:
            allowed = allowed_methods((exc.headers or {}).get("Allow", ""))
            code, message = "method_not_allowed", f"{method} is not allowed on {path}"
            message += f"; allowed: {allowed}" if allowed else ""
            return error_response(405, code, message, {**(exc.headers or {}), "Allow": allowed})
        else:
            code, message = "http_error", str(exc.detail)
        return error_response(exc.status_code, code, message, exc.headers)

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal server error; it has been logged")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(ModelError, model_error)
    app.add_exception_handler(BatcherError, batcher_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
