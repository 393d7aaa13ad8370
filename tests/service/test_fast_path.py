"""POST /v1/translate skips FastAPI's middleware stack (service/fast_path.py), keeps the app's
own middleware, and answers every request as its endpoint does under the full stack."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from service_fakes import FakeTranslator, make_app
from starlette.routing import Route
from starlette.types import Receive, Scope, Send
from test_api_errors import BAD_BODIES

from service.fast_path import TranslationApp
from service.routes import translate_lean

GOOD_BODIES: list[Any] = [
    {"text": "hello there"},
    {"texts": ["one. Two.", "three"], "beam_size": 3, "n_best": 2, "return_scores": True},
    {"text": "a", "return_alignment": True},
]
HEADERS_THAT_MATTER = ("content-type", "retry-after", "www-authenticate")


@pytest.fixture
def client() -> Iterator[TestClient]:
    app = make_app(FakeTranslator(), max_texts=64, max_text_chars=100, max_input_tokens=12)
    with TestClient(app) as c:
        yield c


def post(client: TestClient, body: Any, **headers: str) -> httpx.Response:
    if isinstance(body, bytes):
        headers["content-type"] = "application/json"
        return client.post("/v1/translate", content=body, headers=headers)
    return client.post("/v1/translate", json=body, headers=headers)


def comparable(response: httpx.Response) -> tuple[int, Any, dict[str, str]]:
    body = response.json()
    body.pop("timing", None)  # milliseconds, different every time
    headers = {k: v for k, v in response.headers.items() if k in HEADERS_THAT_MATTER}
    return response.status_code, body, headers


@pytest.mark.parametrize(
    "body",
    GOOD_BODIES + [case[1] for case in BAD_BODIES],
    ids=[f"good{i}" for i in range(len(GOOD_BODIES))] + [case[0] for case in BAD_BODIES],
)
def test_the_fast_path_answers_as_its_endpoint_under_the_full_stack(
    client: TestClient, body: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = comparable(post(client, body))
    # The same endpoint routed through FastAPI's whole stack, first among the routes.
    monkeypatch.setattr(TranslationApp, "__call__", FastAPI.__call__)
    endpoint = Route("/v1/translate", translate_lean, methods=["POST"])
    monkeypatch.setattr(client.app.router, "routes", [endpoint, *client.app.router.routes])  # type: ignore[attr-defined]
    assert comparable(post(client, body)) == fast


def test_api_keys_are_checked_on_the_fast_path() -> None:
    with TestClient(make_app(FakeTranslator(), api_keys=["s3cret"])) as client:
        missing = post(client, {"text": "a"})
        assert (missing.status_code, missing.headers["www-authenticate"]) == (401, "Bearer")
        assert post(client, {"text": "a"}, authorization="Bearer s3cret").status_code == 200


def test_translate_requests_skip_fastapi_stack_and_other_routes_do_not(
    client: TestClient,
) -> None:
    app = client.app
    assert isinstance(app, TranslationApp) and app.middleware_stack is not None
    through_stack: list[str] = []
    stack = app.middleware_stack

    async def counting(scope: Scope, receive: Receive, send: Send) -> None:
        through_stack.append(scope["path"])
        await stack(scope, receive, send)

    app.middleware_stack = counting
    assert post(client, {"text": "fast"}).status_code == 200
    assert client.get("/health").status_code == 200
    assert through_stack == ["/health"]
    metrics = client.get("/metrics").text
    assert 'nmt_requests_total{method="POST",route="/v1/translate",status="200"} 1.0' in metrics


def test_cors_applies_on_the_fast_path() -> None:
    allowed, other = "https://example.org", "https://elsewhere.example"
    with TestClient(make_app(FakeTranslator(), cors_origins=[allowed])) as client:
        response = post(client, {"text": "a"}, origin=allowed)
        assert response.headers["access-control-allow-origin"] == allowed
        assert (
            "access-control-allow-origin" not in post(client, {"text": "a"}, origin=other).headers
        )
        preflight = client.options(
            "/v1/translate",
            headers={"origin": allowed, "access-control-request-method": "POST"},
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == allowed


@pytest.mark.parametrize(
    ("origin", "extra", "refused"),
    [
        ("https://elsewhere.example", {}, "origin"),
        ("https://example.org", {"access-control-request-headers": "x-request-id"}, "headers"),
    ],
)
def test_a_refused_preflight_says_why_in_the_error_shape(
    origin: str, extra: dict[str, str], refused: str
) -> None:
    with TestClient(make_app(FakeTranslator(), cors_origins=["https://example.org"])) as client:
        preflight = client.options(
            "/v1/translate",
            headers={"origin": origin, "access-control-request-method": "POST", **extra},
        )
        assert preflight.status_code == 400
        assert preflight.headers["content-type"] == "application/json"
        error = preflight.json()["error"]
        assert error["code"] == "cors_refused"
        assert f"CORS preflight refused ({refused})" in error["message"]
        assert "NMT_CORS_ORIGINS" in error["message"]
        assert "access-control-allow-methods" in preflight.headers
