"""GET /metrics: request, latency, batch, queue and token series, one registry per app."""

from __future__ import annotations

import logging
import re

import pytest
from fastapi.testclient import TestClient
from service_fakes import FakeTranslator, make_app, metric


def test_metrics_after_some_traffic(client: TestClient) -> None:
    client.post("/v1/translate", json={"texts": ["a b c", "d e"]})
    client.post("/v1/translate", json={"texts": []})
    client.get("/nowhere")
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    route = {"route": "/v1/translate", "method": "POST"}
    assert metric(text, "nmt_requests_total", status="200", **route) == 1
    assert metric(text, "nmt_requests_total", status="422", **route) == 1
    assert metric(text, "nmt_requests_total", route="unmatched", status="404") == 1
    assert metric(text, "nmt_request_duration_seconds_count", route="/v1/translate") == 2
    model = {"model": "fake-en-de"}
    assert metric(text, "nmt_batch_size_count", **model) == 1
    assert metric(text, "nmt_batch_size_sum", **model) == 2
    # tokens 4 and 3: padded 2 x 4 = 8, real 7
    assert metric(text, "nmt_batch_padding_ratio_sum", **model) == 1 - 7 / 8
    assert metric(text, "nmt_queue_wait_seconds_count", **model) == 2
    assert metric(text, "nmt_batch_compute_seconds_count", **model) == 1
    assert metric(text, "nmt_source_tokens_total", **model) == 7
    assert metric(text, "nmt_target_tokens_total", **model) == 5
    assert "nmt_queue_depth" in text
    assert metric(text, "nmt_ready") == 1


def test_docs_are_counted_by_their_route_and_unknown_paths_as_one(client: TestClient) -> None:
    client.get("/docs")
    client.get("/openapi.json")
    for n in range(5):
        client.get(f"/nowhere/{n}")
    text = client.get("/metrics").text
    assert metric(text, "nmt_requests_total", route="/docs", status="200") == 1
    assert metric(text, "nmt_requests_total", route="/openapi.json", status="200") == 1
    assert metric(text, "nmt_requests_total", route="unmatched", status="404") == 5
    assert "/nowhere" not in text  # raw paths never become label values


def test_each_app_has_its_own_registry() -> None:
    with TestClient(make_app(FakeTranslator())) as one, TestClient(make_app()) as two:
        one.post("/v1/translate", json={"text": "x"})
        route = {"route": "/v1/translate", "status": "200"}
        assert metric(one.get("/metrics").text, "nmt_requests_total", **route) == 1
        assert metric(two.get("/metrics").text, "nmt_requests_total", **route) == 0


@pytest.mark.parametrize("enabled", [True, False])
def test_the_access_log_has_a_line_per_request_with_status_and_milliseconds(
    caplog: pytest.LogCaptureFixture, enabled: bool
) -> None:
    with (
        caplog.at_level(logging.INFO, logger="service.access"),
        TestClient(make_app(FakeTranslator(), access_log=enabled)) as client,
    ):
        client.post("/v1/translate?trace=1", json={"text": "a"})
        client.get("/nowhere")
    lines = [r.getMessage() for r in caplog.records if r.name == "service.access"]
    if not enabled:
        assert lines == []
        return
    translate, missing = lines
    ms = r"\d+\.\d ms"
    assert re.fullmatch(
        rf'testclient:\d+ "POST /v1/translate\?trace=1 HTTP/1.1" 200 {ms}', translate
    )
    assert re.fullmatch(rf'testclient:\d+ "GET /nowhere HTTP/1.1" 404 {ms}', missing)
