"""POST /v1/translate served beside FastAPI's middleware stack instead of through it.

Under a closed loop of clients, the event loop's CPU per request is time a batch waits for:
the model idles while the loop answers one batch's clients and reads their next requests.
FastAPI and Starlette wrap every request in about a dozen layers (server errors, telemetry,
their own body limit, exception middleware, an exit stack, routing, the endpoint wrapper),
each one a coroutine call per request and a wrapper per message sent. For the one route that
carries the load, `TranslationApp` skips them: the same endpoint (`routes.translate_lean`) runs
under the app's own middleware (metrics, body limit, CORS), in the same order, and its errors
go to the app's own exception handlers, so clients see the same responses. Every other route,
and the docs, take the usual path. With an instant translator the server answered 1.16-1.23x
the requests per second on its one event loop (bench/README.md, stop 26).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.routing import APIRoute
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from service import routes

PATH, METHOD = "/v1/translate", "POST"


class TranslationApp(FastAPI):
    """FastAPI, with POST /v1/translate taken straight to its endpoint (module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.translate_stack: ASGIApp | None = None  # built on first use, as FastAPI's own
        self.translate_route: APIRoute | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != METHOD:
            await super().__call__(scope, receive, send)
            return
        if self.translate_stack is None:
            self.translate_stack = self._build_translate_stack()
            self.translate_route = self._documented_route()
        scope["app"] = self  # what Starlette sets, for request.app
        scope["route"] = self.translate_route  # the metrics' route label
        await self.translate_stack(scope, receive, send)

    def _build_translate_stack(self) -> ASGIApp:
        app: ASGIApp = self._translate
        for middleware in reversed(self.user_middleware):
            app = middleware.cls(app, *middleware.args, **middleware.kwargs)
        return app

    async def _translate(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        try:
            response = await routes.translate_lean(request)
        except Exception as exc:  # noqa: BLE001 - answered as the full stack would
            response = await self._handle(request, exc)
        await response(scope, receive, send)

    async def _handle(self, request: Request, exc: Exception) -> Response:
        """The app's handler for ``exc`` (the nearest class in its MRO), as Starlette picks."""
        for cls in type(exc).__mro__:
            handler = self.exception_handlers.get(cls)
            if handler is not None:
                response: Response = await handler(request, exc)  # type: ignore[misc]
                return response
        raise exc

    def _documented_route(self) -> APIRoute | None:
        for route in routes.router.routes:
            if (
                isinstance(route, APIRoute)
                and route.path == PATH
                and METHOD in (route.methods or ())
            ):
                return route
        return None
