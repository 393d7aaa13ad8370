"""Many clients at once: same answers as one at a time, served in shared batches."""

from __future__ import annotations

import asyncio
import gzip
import json

import httpx
import pytest
from fastapi.testclient import TestClient
from service_fakes import FakeTranslator, make_app, metric, serving, wait_until

WORDS = ["dog", "cat", "house", "street", "bicycle", "river", "child", "ball"]
SENTENCES = [f"A {WORDS[i % 8]} number {i} is here." for i in range(64)]


async def translate(client: httpx.AsyncClient, text: str) -> str:
    response = await client.post("/v1/translate", json={"text": text, "beam_size": 1})
    assert response.status_code == 200, response.text
    return str(response.json()["translations"][0]["text"])


def test_64_concurrent_requests_match_one_by_one_and_share_batches() -> None:
    async def test() -> None:
        fake = FakeTranslator()
        async with serving(make_app(fake, max_wait_ms=5)) as client:
            alone = [await translate(client, s) for s in SENTENCES]
            together = await asyncio.gather(*(translate(client, s) for s in SENTENCES))
            metrics = (await client.get("/metrics")).text
        assert together == alone == SENTENCES
        labels = {"model": "fake-en-de"}
        batches = metric(metrics, "nmt_batch_size_count", **labels)
        singles = metric(metrics, "nmt_batch_size_bucket", le="1.0", **labels)
        assert batches - singles >= 1  # batches larger than one were formed
        assert batches < 2 * 64  # fewer batches than requests
        assert max(fake.sizes) > 1

    asyncio.run(test())


def test_a_disconnected_client_is_dropped_before_compute() -> None:
    async def test() -> None:
        fake = FakeTranslator()
        app = make_app(fake)
        async with serving(app) as client:
            batcher = next(iter(app.state.service.registry)).batcher
            fake.gate.clear()
            busy = asyncio.create_task(translate(client, "computing"))
            await wait_until(lambda: fake.batches[-1][0] == ["computing"])
            gone = asyncio.Event()
            sent: list[dict[str, object]] = []
            request = asyncio.create_task(
                app(SCOPE, _receive(b'{"text": "gone"}', gone), _send(sent))
            )
            await wait_until(lambda: batcher.depth == 1)
            gone.set()  # the client hangs up while its sentence is queued
            await request
            assert sent[0]["status"] == 499  # nobody reads it; logged and counted as such
            fake.gate.set()
            assert await busy == "computing"
            assert await translate(client, "next") == "next"
            metrics = (await client.get("/metrics")).text
        assert all("gone" not in texts for texts, _ in fake.batches)
        dropped = metric(metrics, "nmt_dropped_sentences_total", reason="cancelled")
        assert dropped == 1

    asyncio.run(test())


@pytest.mark.parametrize("path", ["/v1/translate", "/translate"])
def test_a_client_leaving_mid_body_is_a_499_not_a_server_error(path: str) -> None:
    async def test() -> None:
        app = make_app(FakeTranslator())
        async with serving(app) as client:
            sent: list[dict[str, object]] = []
            parts = [
                {"type": "http.request", "body": b'{"text": "half', "more_body": True},
                {"type": "http.disconnect"},
            ]

            async def receive() -> dict[str, object]:
                return parts.pop(0)

            scope = {**SCOPE, "path": path, "raw_path": path.encode()}
            await app(scope, receive, _send(sent))
            assert sent[0]["status"] == 499
            assert await translate(client, "still here") == "still here"
            metrics = (await client.get("/metrics")).text
        route = {"route": path, "method": "POST"}
        assert metric(metrics, "nmt_requests_total", status="499", **route) == 1
        assert metric(metrics, "nmt_requests_total", status="500", **route) == 0

    asyncio.run(test())


@pytest.mark.parametrize("path", ["/v1/translate", "/translate"])
def test_a_client_that_stops_sending_its_body_gets_a_408(path: str) -> None:
    """A Content-Length larger than the body sent: not a connection held open for ever."""

    async def test() -> None:
        app = make_app(FakeTranslator(), request_timeout_s=0.2)
        async with serving(app) as client:
            sent: list[dict[str, object]] = []
            never = asyncio.Event()
            first = [{"type": "http.request", "body": b'{"text": "half', "more_body": True}]

            async def receive() -> dict[str, object]:
                if first:
                    return first.pop(0)
                await never.wait()
                return {"type": "http.disconnect"}

            scope = {**SCOPE, "path": path, "raw_path": path.encode()}
            await asyncio.wait_for(app(scope, receive, _send(sent)), timeout=5)
            assert sent[0]["status"] == 408
            assert (b"connection", b"close") in sent[0]["headers"]  # type: ignore[operator]
            body = json.loads(sent[1]["body"])  # type: ignore[arg-type]
            assert body["error"]["code"] == "request_timeout"
            assert "within 0.2 s (NMT_REQUEST_TIMEOUT_S)" in body["error"]["message"]
            assert await translate(client, "still here") == "still here"

    asyncio.run(test())


@pytest.mark.parametrize("path", ["/v1/translate", "/translate"])
def test_a_compressed_body_is_refused_with_what_to_send(path: str) -> None:
    body = gzip.compress(b'{"text": "x", "q": "x", "source": "en", "target": "de"}')
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    with TestClient(make_app(FakeTranslator())) as client:
        response = client.post(path, content=body, headers=headers)
        assert response.status_code == 415, response.text
        error = response.json()["error"]
        assert error["code"] == "unsupported_content_encoding"
        assert "'gzip' is not supported; send the body uncompressed" in error["message"]


SCOPE = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "POST",
    "scheme": "http",
    "path": "/v1/translate",
    "raw_path": b"/v1/translate",
    "query_string": b"",
    "root_path": "",
    "headers": [(b"host", b"testserver"), (b"content-type", b"application/json")],
    "client": ("127.0.0.1", 50000),
    "server": ("testserver", 80),
}


def _receive(body: bytes, gone: asyncio.Event):  # type: ignore[no-untyped-def]
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, object]:
        if messages:
            return messages.pop(0)
        await gone.wait()
        return {"type": "http.disconnect"}

    return receive


def _send(sent: list[dict[str, object]]):  # type: ignore[no-untyped-def]
    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    return send
