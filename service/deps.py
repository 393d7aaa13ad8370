"""Per-app state and the dependencies routes take it through (override them in tests)."""

from __future__ import annotations

import asyncio
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, cast

from fastapi import Depends, Request
from starlette.requests import ClientDisconnect

from service.errors import ApiError
from service.metrics import Metrics
from service.model_thread import model_thread_executor
from service.registry import ModelRegistry
from service.settings import Settings

if TYPE_CHECKING:
    from service.model_workers import WorkerPool


@dataclass(eq=False)
class ServiceState:
    """Everything the app holds between requests; lives on `app.state.service`."""

    settings: Settings
    metrics: Metrics
    registry: ModelRegistry = field(default_factory=ModelRegistry)
    loaded: bool = False  # every model loaded and warmed up
    draining: bool = False  # shutting down
    failure: str | None = None  # an unrecoverable model error (e.g. DeviceError)
    worker_pools: list[WorkerPool] = field(default_factory=list)  # NMT_MODEL_WORKERS > 0
    # Loads, warms up and runs every in-process model (service/model_thread.py).
    model_thread: ThreadPoolExecutor = field(default_factory=model_thread_executor)

    @property
    def ready(self) -> bool:
        return self.loaded and not self.draining and self.failure is None


# The dependencies are `async def` although they never await: FastAPI runs a plain `def`
# dependency in its thread pool, a thread hop per dependency per request (about a fifth of the
# event loop's time per translation request under load, measured with py-spy).


def _state(request: Request) -> ServiceState:
    return cast(ServiceState, request.app.state.service)


async def get_state(request: Request) -> ServiceState:
    return _state(request)


async def get_settings(request: Request) -> Settings:
    return _state(request).settings


async def get_registry(request: Request) -> ModelRegistry:
    """The loaded models; 503 not_ready until startup has loaded them."""
    state = _state(request)
    if not state.loaded:
        raise ApiError(
            503, "not_ready", "models are still loading; see GET /ready", {"Retry-After": "5"}
        )
    return state.registry


def refuse_compressed(request: Request) -> None:
    """A compressed body would read as broken JSON or UTF-8; say what to send instead."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding != "identity":
        raise ApiError(
            415,
            "unsupported_content_encoding",
            f"Content-Encoding {encoding!r} is not supported; send the body uncompressed",
        )


async def read_body(request: Request, settings: Settings) -> bytes:
    """The whole body, within NMT_REQUEST_TIMEOUT_S.

    A client that leaves halfway gets a 499 (logged and counted, read by nobody) instead of a
    500 with a traceback; one that stops sending (a Content-Length larger than its body) gets
    a 408 instead of holding its connection open for ever.
    """
    refuse_compressed(request)
    timeout = settings.request_timeout_s
    try:
        async with asyncio.timeout(timeout):
            return await request.body()
    except ClientDisconnect:
        raise ApiError(499, "client_closed_request", "the client left while sending") from None
    except TimeoutError:
        raise ApiError(
            408,
            "request_timeout",
            f"the request body did not arrive within {timeout:g} s (NMT_REQUEST_TIMEOUT_S)",
            {"Connection": "close"},
        ) from None


StateDep = Annotated[ServiceState, Depends(get_state)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]


def check_api_key(request: Request, settings: Settings, body_key: str | None = None) -> None:
    """Accept `Authorization: Bearer K`, `X-API-Key: K` or a body `api_key` when keys are set.

    Raises:
        ApiError: 401 missing_api_key / invalid_api_key.
    """
    if not settings.api_keys:
        return
    auth = request.headers.get("authorization", "")
    scheme, _, bearer = auth.partition(" ")
    given = [
        bearer.strip() if scheme.lower() == "bearer" else "",
        request.headers.get("x-api-key", ""),
        body_key or "",
    ]
    given = [key for key in given if key]
    challenge = {"WWW-Authenticate": "Bearer"}
    if not given:
        raise ApiError(
            401,
            "missing_api_key",
            "this server needs an API key: "
            "send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
            challenge,
        )
    if not any(_same(k, ok) for k in given for ok in settings.api_keys):
        raise ApiError(401, "invalid_api_key", "the API key is not valid (NMT_API_KEYS)", challenge)


def _same(given: str, expected: str) -> bool:
    """Constant-time comparison (bytes, since compare_digest rejects non-ASCII str)."""
    return secrets.compare_digest(given.encode(), expected.encode())


async def require_api_key(request: Request, settings: SettingsDep) -> None:
    check_api_key(request, settings)
