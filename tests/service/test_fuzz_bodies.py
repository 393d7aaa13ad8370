"""Property test: no body a client can send makes either translate route answer 5xx.

The table tests in test_api_errors.py pin each bad-input class to its status and message;
this one throws generated bodies at both routes (near-valid requests with every field set
to any JSON value, arbitrary JSON, raw bytes, form fields) and holds each answer to the
contract: a success carries one translation per input, anything else is a 4xx in the error
envelope, and the service answers a good request afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from service_fakes import FakeTranslator, make_app

FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
# Texts on both sides of the app's 100-character limit, with any code point (control
# characters, emoji, other scripts) but lone surrogates, which httpx cannot send as UTF-8
# (test_api_errors sends them escaped).
texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=120)
small_ints = st.integers(min_value=-3, max_value=12)


def mutated(base: st.SearchStrategy[dict[str, Any]], keys: list[str]) -> st.SearchStrategy[Any]:
    """Plausible bodies with up to two fields set to any JSON value (or added, or the whole
    body replaced), so most answers exercise the route past validation and some fail it."""
    overlays = st.dictionaries(st.sampled_from([*keys, "extra"]), json_values, max_size=2)
    near_valid = st.tuples(base, overlays).map(lambda pair: {**pair[0], **pair[1]})
    return st.one_of(base, near_valid, near_valid, json_values)


translate_keys = ["text", "texts", "beam_size", "n_best", "max_length", "return_scores",
                  "return_alignment", "model", "source", "target"]  # fmt: skip
translate_bodies = mutated(
    st.tuples(
        st.one_of(
            st.fixed_dictionaries({"text": texts}),
            st.fixed_dictionaries({"texts": st.lists(texts, max_size=70)}),
        ),
        st.fixed_dictionaries(
            {},
            optional={
                "beam_size": small_ints,
                "n_best": small_ints,
                "max_length": st.integers(min_value=-1, max_value=2000),
                "return_scores": st.booleans(),
                "return_alignment": st.booleans(),
                "model": st.sampled_from(["fake-en-de", "nope", ""]),
                "source": st.sampled_from(["en", "de", "fr", "auto"]),
                "target": st.sampled_from(["de", "en", "xx"]),
            },
        ),
    ).map(lambda parts: {**parts[0], **parts[1]}),
    translate_keys,
)
libre_keys = ["q", "source", "target", "format", "alternatives", "api_key"]
libre_bodies = mutated(
    st.fixed_dictionaries(
        {
            "q": st.one_of(texts, st.lists(texts, max_size=70)),
            "source": st.sampled_from(["en", "auto", "de", "zz"]),
            "target": st.sampled_from(["de", "en"]),
        },
        optional={
            "format": st.sampled_from(["text", "html", ""]),
            "alternatives": small_ints,
            "api_key": st.text(max_size=10),
        },
    ),
    libre_keys,
)
raw_bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(lambda value: json.dumps(value).encode()),
    texts.map(lambda text: json.dumps({"text": text}).encode()[:-1]),
)


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    app = make_app(FakeTranslator(), max_texts=64, max_text_chars=100, max_input_tokens=40)
    with TestClient(app) as c:
        yield c


def inputs_of(body: Any, route: str) -> int | None:
    """How many translations a success must carry, or None when the body cannot succeed."""
    if not isinstance(body, dict):
        return None
    if route == "/translate":
        value = body.get("q")
    else:  # a null field counts as absent
        value = body["text"] if body.get("text") is not None else body.get("texts")
    if isinstance(value, str):
        return 1
    return len(value) if isinstance(value, list) else None


def assert_contract(response: httpx.Response, expected_inputs: int | None) -> None:
    assert response.status_code < 500, response.text
    body = response.json()
    if response.status_code == 200:
        assert expected_inputs is not None, body
        if "translations" in body:
            assert len(body["translations"]) == expected_inputs
        else:
            translated = body["translatedText"]
            assert (1 if isinstance(translated, str) else len(translated)) == expected_inputs
        return
    assert 400 <= response.status_code < 500
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}
    assert body["error"]["code"] and body["error"]["message"]
    assert "Traceback" not in body["error"]["message"]


def assert_still_serving(client: TestClient) -> None:
    response = client.post("/v1/translate", json={"text": "still here"})
    assert response.status_code == 200, response.text


@FUZZ
@given(body=translate_bodies)
def test_translate_never_answers_5xx(client: TestClient, body: dict[str, Any]) -> None:
    assert_contract(client.post("/v1/translate", json=body), inputs_of(body, "/v1/translate"))
    assert_still_serving(client)


@FUZZ
@given(body=libre_bodies)
def test_libretranslate_json_never_answers_5xx(client: TestClient, body: dict[str, Any]) -> None:
    assert_contract(client.post("/translate", json=body), inputs_of(body, "/translate"))
    assert_still_serving(client)


@FUZZ
@given(fields=st.dictionaries(st.sampled_from([*libre_keys, "x"]), texts, max_size=6))
def test_libretranslate_form_never_answers_5xx(client: TestClient, fields: dict[str, str]) -> None:
    response = client.post("/translate", data=fields)
    assert_contract(response, 1 if "q" in fields else None)
    assert_still_serving(client)


@FUZZ
@given(
    query=st.lists(st.tuples(st.sampled_from([*libre_keys, "x", ""]), texts), max_size=6),
    form=st.dictionaries(st.sampled_from(libre_keys), texts, max_size=3),
)
def test_libretranslate_query_string_never_answers_5xx(
    client: TestClient, query: list[tuple[str, str]], form: dict[str, str]
) -> None:
    """Fields in the query string (deep-translator's way), alone or beside form fields."""
    response = client.post("/translate", params=query, data=form or None)
    q = [value for key, value in query if key == "q"]
    expected = 1 if "q" in form else (len(q) if len(q) > 1 else 1) if q else None
    assert_contract(response, expected)
    assert_still_serving(client)


@FUZZ
@given(route=st.sampled_from(["/v1/translate", "/translate"]), content=raw_bodies)
def test_raw_bytes_never_answer_5xx(client: TestClient, route: str, content: bytes) -> None:
    try:
        body = json.loads(content)
    except ValueError:
        body = None
    response = client.post(route, content=content, headers={"content-type": "application/json"})
    assert_contract(response, inputs_of(body, route))
    assert_still_serving(client)
