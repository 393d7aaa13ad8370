"""Refuse request bodies larger than any valid request (413) instead of reading them whole.

The largest valid body is NMT_MAX_TEXTS texts of NMT_MAX_TEXT_CHARS characters, each character
up to 12 bytes (a character beyond U+FFFF escaped as a JSON surrogate pair, `\\ud83d\\ude00`, as
clients that escape non-ASCII send it; or its 4 UTF-8 bytes percent-encoded in a form), plus
room for the other fields. A declared Content-Length over the limit is answered before
anything is read; a body without one is counted as it arrives.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import ApiError, error_response
from service.settings import Settings

JSON_BYTES_PER_CHAR = 12
OTHER_FIELDS_BYTES = 64 * 1024


def max_body_bytes(settings: Settings) -> int:
    return settings.max_texts * settings.max_text_chars * JSON_BYTES_PER_CHAR + OTHER_FIELDS_BYTES


class BodyLimitMiddleware:
    """Pure ASGI middleware: 413 body_too_large past `max_bytes`."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _error(self, size: str) -> ApiError:
        return ApiError(
            413,
            "body_too_large",
            f"request body has {size} bytes; limit is {self.max_bytes} "
            "(NMT_MAX_TEXTS x NMT_MAX_TEXT_CHARS x 6 bytes + 64 KiB)",
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                error = self._error(value.decode())
                response = error_response(error.status, error.code, error.message)
                await response(scope, receive, send)
                return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise self._error(f"more than {self.max_bytes}")  # to the ApiError handler
            return message

        await self.app(scope, counting_receive, send)
