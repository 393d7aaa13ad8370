"""Every class of bad input gets its status, code and a message naming the limit; then the
service keeps serving."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, HTTPException
from fastapi.testclient import TestClient
from service_fakes import FakeTranslator, make_app

from model import DeviceError
from service.routes import answer_head


@pytest.fixture
def client() -> Iterator[TestClient]:
    app = make_app(FakeTranslator(), max_texts=64, max_text_chars=100, max_input_tokens=12)
    with TestClient(app) as c:
        yield c


def assert_error(response: httpx.Response, status: int, code: str, *phrases: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] == code
    message: str = body["error"]["message"]
    for phrase in phrases:
        assert phrase in message, message
    assert "Traceback" not in message
    return message


def assert_still_serving(client: TestClient) -> None:
    response = client.post("/v1/translate", json={"text": "still here"})
    assert response.status_code == 200
    assert response.json()["translations"][0]["text"] == "still here"


BAD_BODIES: list[tuple[str, Any, int, str, list[str]]] = [
    ("malformed JSON", b'{"text": "hi"', 400, "invalid_json", ["not valid JSON"]),
    ("lone surrogate", b'{"text": "a \\ud800 b"}', 422, "invalid_text",
     ["text has a lone surrogate U+D800 at character 2"]),
    ("lone trailing surrogate", b'{"texts": ["ok", "\\udc00"]}', 422, "invalid_text",
     ["texts[1] has a lone surrogate U+DC00 at character 0"]),
    ("deep nesting with an escape",
     b'{"text": "\\u0041", "model": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400, "invalid_json",
     ["not valid JSON"]),
    ("UTF-16 with an escape", '{"text": "\\u0041"}'.encode("utf-16"), 400, "invalid_json",
     ["not valid JSON"]),
    ("surrogate and a wrong type", b'{"text": "\\ud800", "beam_size": "x"}', 422,
     "validation_error", ["beam_size"]),
    ("not an object", [1, 2], 422, "validation_error", ["request body", "got list"]),
    ("text not a string", {"text": 5}, 422, "validation_error", ["text: ", "got int"]),
    ("texts item type", {"texts": ["a", 2]}, 422, "validation_error", ["texts[1]", "got int"]),
    ("texts a string", {"texts": "a"}, 422, "validation_error", ["texts: ", "valid array"]),
    ("beam as string", {"text": "a", "beam_size": "5"}, 422, "validation_error", ["beam_size"]),
    ("empty list", {"texts": []}, 422, "validation_error", ["texts: ", "at least 1"]),
    ("both inputs", {"text": "a", "texts": ["b"]}, 422, "validation_error", ["exactly one"]),
    ("no input", {}, 422, "validation_error", ["exactly one"]),
    ("unknown field", {"text": "a", "beam": 2}, 422, "validation_error", ["'beam'", "allowed: "]),
    ("beam zero", {"text": "a", "beam_size": 0}, 422, "validation_error",
     ["beam_size: ", "greater than or equal to 1"]),
    ("n_best zero", {"text": "a", "n_best": 0}, 422, "validation_error", ["n_best"]),
    ("max_length", {"text": "a", "max_length": 10**6}, 422, "validation_error", ["max_length"]),
    (
        "too many texts",
        {"texts": ["a"] * 80},
        422,
        "too_many_texts",
        ["texts has 80 items; limit is 64 (NMT_MAX_TEXTS)"],
    ),
    (
        "text too long",
        {"texts": ["ok", "x" * 101]},
        422,
        "text_too_long",
        ["texts[1] has 101 characters; limit is 100 (NMT_MAX_TEXT_CHARS)"],
    ),
    (
        "beam too large",
        {"text": "a", "beam_size": 9},
        422,
        "beam_size_out_of_range",
        ["beam_size is 9; allowed: 1 to 8 (NMT_MAX_BEAM)"],
    ),
    ("n_best > beam", {"text": "a", "beam_size": 2, "n_best": 3}, 422, "validation_error",
     ["n_best is 3; it must not exceed beam_size"]),
    ("n_best > max beam", {"text": "a", "n_best": 9}, 422, "n_best_out_of_range",
     ["n_best is 9; allowed: 1 to 8 (NMT_MAX_BEAM)"]),
    ("unknown model", {"text": "a", "model": "xx"}, 404, "model_not_found",
     ["unknown model 'xx'; available: fake-en-de"]),
    ("unknown pair", {"text": "a", "source": "fr", "target": "de"}, 400,
     "unsupported_language_pair",
     ["no model translates fr->de", "available pairs: en->de (fake-en-de)"]),
    ("model and another pair", {"text": "a", "model": "fake-en-de", "source": "de", "target": "en"},
     400, "unsupported_language_pair", ["model 'fake-en-de' does not translate de->en"]),
    ("empty source", {"text": "a", "source": ""}, 422, "validation_error",
     ["source: ", "at least 1 character"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "status", "code", "phrases"),
    [case[1:] for case in BAD_BODIES],
    ids=[case[0] for case in BAD_BODIES],
)
def test_bad_input(
    client: TestClient, body: Any, status: int, code: str, phrases: list[str]
) -> None:
    if isinstance(body, bytes):
        response = client.post(
            "/v1/translate", content=body, headers={"content-type": "application/json"}
        )
    else:
        response = client.post("/v1/translate", json=body)
    assert_error(response, status, code, *phrases)
    assert_still_serving(client)


def test_body_is_read_as_json_whatever_the_content_type(client: TestClient) -> None:
    # curl -d sends form content-type by default; a JSON body is still understood
    form = {"content-type": "application/x-www-form-urlencoded"}
    response = client.post("/v1/translate", content=b'{"text": "no header"}', headers=form)
    assert response.status_code == 200, response.text
    assert response.json()["translations"][0]["text"] == "no header"
    fields = client.post("/v1/translate", content=b"text=hello", headers=form)
    assert_error(
        fields,
        400,
        "invalid_json",
        "not valid JSON",
        "line 1 column",
        "sent as application/x-www-form-urlencoded: send a JSON object",
    )
    empty = client.post("/v1/translate", content=b" ")
    assert_error(empty, 422, "validation_error", "body is empty", "JSON object")
    assert_still_serving(client)


def test_body_larger_than_any_valid_request_is_refused_unread(client: TestClient) -> None:
    # the largest valid request, every character escaped as JSON \uXXXX, still fits
    largest = json.dumps({"texts": ["\u00e9" * 100] * 64}, ensure_ascii=True).encode()
    json_header = {"content-type": "application/json"}
    fits = client.post("/v1/translate", content=largest, headers=json_header)
    assert fits.status_code == 200, fits.text
    huge = b'{"text": "' + b"a" * 200_000 + b'"}'
    for path in ("/v1/translate", "/translate"):
        declared = client.post(path, content=huge, headers=json_header)
        assert_error(declared, 413, "body_too_large", "limit is", "NMT_MAX_TEXT_CHARS")
    streamed = client.post("/v1/translate", content=iter([huge]), headers=json_header)
    assert_error(streamed, 413, "body_too_large", "more than", "NMT_MAX_TEXTS")
    assert_still_serving(client)


@pytest.mark.parametrize("form", [False, True])
def test_the_longest_texts_of_characters_beyond_the_bmp_fit_the_body_limit(form: bool) -> None:
    """An emoji is 12 bytes as a JSON surrogate pair escape or percent-encoded UTF-8."""
    text = ("\U0001f600" * 39 + "\n") * 500  # 20,000 characters
    with TestClient(
        make_app(FakeTranslator(), max_texts=1, max_text_chars=20_000, max_queue=100_000)
    ) as client:
        if form:
            body = {"q": text, "source": "en", "target": "de"}
            response = client.post("/translate", data=body)
        else:
            escaped = json.dumps({"text": text}, ensure_ascii=True).encode()
            assert len(escaped) > 20_000 * 6 + 64 * 1024  # over the old limit
            response = client.post(
                "/v1/translate", content=escaped, headers={"content-type": "application/json"}
            )
        assert response.status_code == 200, response.text[:200]


def test_a_request_larger_than_the_whole_queue_is_422_not_a_retryable_503() -> None:
    with TestClient(make_app(FakeTranslator(), max_queue=4)) as client:
        fits = client.post("/v1/translate", json={"texts": ["One. Two.", "Three. Four."]})
        assert fits.status_code == 200, fits.text
        body = {"texts": ["One. Two.", "Three. Four. Five."]}
        message = assert_error(
            client.post("/v1/translate", json=body), 422, "too_many_sentences", "NMT_MAX_QUEUE"
        )
        assert "5 sentences; at most 4" in message
        assert_still_serving(client)


def test_unknown_route_and_wrong_method(client: TestClient) -> None:
    assert_error(client.get("/v2/nothing"), 404, "not_found", "GET /v2/nothing")
    response = client.get("/v1/translate")
    assert_error(response, 405, "method_not_allowed", "allowed: POST")
    assert response.headers["allow"] == "POST"
    assert_still_serving(client)


@pytest.mark.parametrize(
    "path", ["/health", "/ready", "/v1/models", "/languages", "/metrics", "/docs"]
)
def test_wrong_method_on_a_get_route_names_head_too(client: TestClient, path: str) -> None:
    """Allow lists every method the path serves; HEAD is a route of its own beside GET."""
    response = client.delete(path)
    assert_error(response, 405, "method_not_allowed", "allowed: GET, HEAD")
    assert response.headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize("path", ["/health", "/ready", "/v1/models", "/languages", "/metrics"])
def test_head_answers_where_get_does(client: TestClient, path: str) -> None:
    """`curl -I` and load balancers' probes send HEAD."""
    got = client.get(path)
    head = client.head(path)
    assert head.status_code == got.status_code == 200
    assert head.headers["content-type"] == got.headers["content-type"]
    documented = client.get("/openapi.json").json()["paths"][path]
    assert "get" in documented and "head" not in documented  # kept out of the docs


def test_head_is_refused_where_get_is(client: TestClient) -> None:
    response = client.head("/v1/translate")
    assert response.status_code == 405 and response.headers["allow"] == "POST"


def test_api_keys() -> None:
    with TestClient(make_app(FakeTranslator(), api_keys=["s3cret", "other"])) as client:
        body = {"text": "hi"}
        missing = client.post("/v1/translate", json=body)
        assert_error(missing, 401, "missing_api_key", "Authorization: Bearer", "X-API-Key")
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = client.post("/v1/translate", json=body, headers={"X-API-Key": "nope"})
        assert_error(wrong, 401, "invalid_api_key", "NMT_API_KEYS")
        odd = client.post("/v1/translate", json=body, headers={"X-API-Key": "ключ".encode()})
        assert odd.status_code == 401
        ok = [{"Authorization": "Bearer s3cret"}, {"X-API-Key": "other"}]
        for headers in ok:
            assert client.post("/v1/translate", json=body, headers=headers).status_code == 200
        assert client.get("/ready").status_code == 200  # ops endpoints stay open
        assert client.get("/v1/models").status_code == 200


def test_full_queue_answers_503_with_retry_after() -> None:
    fake = FakeTranslator()
    with TestClient(make_app(fake, max_queue=1, max_batch_size=1)) as client:
        fake.gate.clear()
        threads = [
            threading.Thread(target=client.post, args=("/v1/translate",), kwargs={"json": j})
            for j in ({"text": "computing"}, {"text": "queued"})
        ]
        threads[0].start()
        wait_for(lambda: fake.batches[-1][0] == ["computing"])
        threads[1].start()
        depth = 'nmt_queue_depth{model="fake-en-de"} 1.0'
        wait_for(lambda: depth in client.get("/metrics").text)
        full = client.post("/v1/translate", json={"text": "rejected"})
        assert_error(full, 503, "queue_full", "limit is 1 (NMT_MAX_QUEUE)")
        assert full.headers["retry-after"] == "1"
        fake.gate.set()
        for thread in threads:
            thread.join()
        assert_still_serving(client)


def test_deadline_answers_504() -> None:
    fake = FakeTranslator()
    with TestClient(make_app(fake, request_timeout_s=0.05)) as client:
        fake.gate.clear()
        try:
            late = client.post("/v1/translate", json={"text": "slow"})
        finally:
            fake.gate.set()
        assert_error(late, 504, "deadline_exceeded", "0.05 s (NMT_REQUEST_TIMEOUT_S)")
        assert_still_serving(client)


def test_model_crash_is_a_logged_500_without_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeTranslator()
    with TestClient(make_app(fake), raise_server_exceptions=False) as client:
        fake.fail_on = "crash"
        response = client.post("/v1/translate", json={"text": "crash now"})
        message = assert_error(response, 500, "internal_error")
        assert "boom" not in message
        assert any("boom" in str(r.exc_info) for r in caplog.records if r.exc_info)
        assert_still_serving(client)


def test_device_error_answers_503_and_flips_ready() -> None:
    fake = FakeTranslator()
    with TestClient(make_app(fake)) as client:
        fake.errors["gpu"] = DeviceError("CUDA error: an illegal memory access")
        assert_error(client.post("/v1/translate", json={"text": "gpu"}), 503, "device_error")
        ready = client.get("/ready")
        assert_error(ready, 503, "unrecoverable_error", "illegal memory access")


def test_a_stalled_translator_flips_ready_until_it_answers() -> None:
    """A translator that is alive but answers nothing (a model worker under SIGSTOP): requests
    time out (504), and /ready says 503 while a batch has run longer than they may wait."""
    fake = FakeTranslator()
    with TestClient(make_app(fake, request_timeout_s=0.2)) as client:
        fake.gate.clear()
        try:
            late = client.post("/v1/translate", json={"text": "stuck"})
            assert_error(late, 504, "deadline_exceeded")
            wait_for(lambda: client.get("/ready").status_code == 503)
            message = assert_error(client.get("/ready"), 503, "model_stalled", "fake-en-de")
            assert "longer than a request may wait (0.2 s, NMT_REQUEST_TIMEOUT_S)" in message
        finally:
            fake.gate.set()
        wait_for(lambda: client.get("/ready").status_code == 200)
        assert_still_serving(client)


def test_ready_names_the_stalled_model_not_one_waiting_behind_it() -> None:
    """In-process models share one model thread: a batch queued behind a stuck one has not
    begun, so only the stuck model is reported."""
    healthy, stuck = FakeTranslator(), FakeTranslator("fake-de-en", "de", "en")
    with TestClient(make_app(healthy, stuck, request_timeout_s=0.3)) as client:
        stuck.gate.clear()
        warmed = len(stuck.batches)  # the warm-up's
        try:
            threading.Thread(
                target=client.post,
                args=("/v1/translate",),
                kwargs={"json": {"text": "stuck", "model": "fake-de-en"}},
            ).start()
            wait_for(lambda: len(stuck.batches) == warmed + 1)
            late = client.post("/v1/translate", json={"text": "waits", "model": "fake-en-de"})
            assert_error(late, 504, "deadline_exceeded")  # it queued behind the stuck batch
            wait_for(lambda: client.get("/ready").status_code == 503)
            assert_error(client.get("/ready"), 503, "model_stalled", "model fake-de-en")
        finally:
            stuck.gate.set()
        wait_for(lambda: client.get("/ready").status_code == 200)


def test_translator_input_too_long_is_422_with_the_sentence(client: TestClient) -> None:
    from model import InputTooLong

    fake = FakeTranslator()
    fake.errors["Second."] = InputTooLong(300, 256, 0)
    with TestClient(make_app(fake)) as c:
        response = c.post("/v1/translate", json={"texts": ["ok", "First. Second."]})
        assert_error(response, 422, "input_too_long", "texts[1] sentence 2 has 300 tokens")


def wait_for(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.002)


def test_head_keeps_the_guard_of_its_get() -> None:
    """A route guarded by a dependency must not answer HEAD without it."""

    def refuse() -> None:
        raise HTTPException(401, "no key")

    router = APIRouter()

    @router.get("/guarded", dependencies=[Depends(refuse)])
    async def guarded() -> dict[str, str]:
        return {"secret": "x"}

    answer_head(router)
    app = FastAPI()
    app.include_router(router)
    with TestClient(app) as client:
        assert client.get("/guarded").status_code == 401
        assert client.head("/guarded").status_code == 401
