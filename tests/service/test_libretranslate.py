"""LibreTranslate compatibility: POST /translate and GET /languages as its clients use them."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from service_fakes import FakeTranslator, make_app


def test_q_string_as_json(client: TestClient) -> None:
    response = client.post(
        "/translate", json={"q": "Hello. World!", "source": "en", "target": "de"}
    )
    assert response.status_code == 200
    assert response.json() == {"translatedText": "Hello. World!"}


def test_q_list_gives_a_list(client: TestClient) -> None:
    body = {"q": ["one", "two", ""], "source": "en", "target": "de", "format": "text"}
    assert client.post("/translate", json=body).json() == {"translatedText": ["one", "two", ""]}


def test_form_encoded_body(client: TestClient) -> None:
    data = {"q": "Grüße aus Köln", "source": "en", "target": "de"}
    response = client.post("/translate", data=data)
    assert response.json() == {"translatedText": "Grüße aus Köln"}


def test_repeated_form_field_is_a_list(client: TestClient) -> None:
    content = "q=a&q=b&source=en&target=de"
    headers = {"content-type": "application/x-www-form-urlencoded"}
    response = client.post("/translate", content=content, headers=headers)
    assert response.json() == {"translatedText": ["a", "b"]}


def test_multipart_body(client: TestClient) -> None:
    fields = {"q": (None, "Ein Haus."), "source": (None, "en"), "target": (None, "de")}
    response = client.post("/translate", files=fields)
    assert response.status_code == 200, response.text
    assert response.json() == {"translatedText": "Ein Haus."}


def test_alternatives(client: TestClient, fake: FakeTranslator) -> None:
    body = {"q": "Hi.", "source": "en", "target": "de", "alternatives": 2}
    assert client.post("/translate", json=body).json() == {
        "translatedText": "Hi.",
        "alternatives": ["Hi. ~1", "Hi. ~2"],
    }
    assert fake.batches[-1][1].n_best == 3


def test_source_auto_when_unambiguous(client: TestClient) -> None:
    body = {"q": "Hi.", "source": "auto", "target": "de"}
    assert client.post("/translate", json=body).json() == {"translatedText": "Hi."}


@pytest.mark.parametrize(
    ("body", "status", "code", "phrase"),
    [
        ({"q": "x", "source": "en", "target": "de", "format": "html"}, 400,
         "unsupported_format", "only 'text'"),
        ({"q": "x", "source": "en", "target": "fr"}, 400, "unsupported_language_pair",
         "en->de"),
        ({"q": "x", "source": "auto", "target": "fr"}, 400, "unsupported_language_pair",
         "give source explicitly"),
        # LibreTranslate answers 400 to any invalid request, where the native API says 422
        ({"source": "en", "target": "de"}, 400, "validation_error", "q: Field required"),
        ({"q": 5, "source": "en", "target": "de"}, 400, "validation_error", "q"),
        ({"q": [], "source": "en", "target": "de"}, 400, "validation_error", "at least 1"),
        ({"q": ["x"] * 65, "source": "en", "target": "de"}, 400, "too_many_texts",
         "q has 65 items; limit is 64 (NMT_MAX_TEXTS)"),
        ({"q": "x", "source": "en", "target": "de", "alternatives": 8}, 400,
         "n_best_out_of_range", "alternatives is 8; allowed: 0 to 7 (NMT_MAX_BEAM)"),
        ({"q": "x", "source": "en", "target": "de", "alternatives": "two"}, 400,
         "validation_error", "alternatives"),
    ],
)  # fmt: skip
def test_errors(client: TestClient, body: dict, status: int, code: str, phrase: str) -> None:  # type: ignore[type-arg]
    response = client.post("/translate", json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and phrase in error["message"]


def test_malformed_json(client: TestClient) -> None:
    response = client.post(
        "/translate", content=b"{oops", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"


def test_text_that_is_not_unicode_is_refused(client: TestClient) -> None:
    # json.loads keeps a lone surrogate escape (SentencePiece raised on it: a 500, before the
    # tokenizer learned to read it as U+FFFD); the client is told, as /v1/translate does
    escaped = b'{"q": ["fine", "a \\ud800 b"], "source": "en", "target": "de"}'
    headers = {"content-type": "application/json"}
    response = client.post("/translate", content=escaped, headers=headers)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_text"
    assert "q[1] has a lone surrogate U+D800 at character 2" in error["message"]


FORM = "application/x-www-form-urlencoded"


@pytest.mark.parametrize(
    ("content", "content_type", "said"),
    [
        (b"q=%ff%fe&source=en&target=de", FORM, "form body is not valid utf-8"),
        (b"q=caf\xe9&source=en&target=de", FORM, "form body is not valid utf-8"),
        (
            b"q=a&source=en&target=de",
            f"{FORM}; charset=klingon",
            "unknown charset 'klingon'; send UTF-8",
        ),
        (
            b"q=a&source=en&target=de",
            f"{FORM}; charset=base64",
            "unknown charset 'base64'; send UTF-8",
        ),
        (
            b"q=a&source=en&target=de",
            f"{FORM}; charset=rot13",
            "unknown charset 'rot13'; send UTF-8",
        ),
        (
            b"q=hello&source=en&target=de",
            f"{FORM}; charset=punycode",
            "form body is not valid punycode",
        ),
        (
            b"q=a&source=en&target=de",
            f"{FORM}; charset=undefined",
            "form body is not valid undefined",
        ),
    ],
)
def test_form_bytes_that_are_not_text_are_refused(
    client: TestClient, content: bytes, content_type: str, said: str
) -> None:
    """Not read as U+FFFD: a 200 would hide that the text was never what the client meant."""
    response = client.post("/translate", content=content, headers={"content-type": content_type})
    assert response.status_code == 400, response.text
    assert response.json()["error"] == {"code": "invalid_form", "message": said}


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b'{"q": "a", "source": "en", "target": "de", "alternatives": ' + b"9" * 5000 + b"}",
         "integer string conversion"),
        (b'{"q": ' + b"[" * 100000 + b"]" * 100000 + b"}", "nested too deeply"),
    ],
)  # fmt: skip
def test_json_that_python_cannot_read_is_a_400(client: TestClient, body: bytes, said: str) -> None:
    response = client.post("/translate", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert said in response.json()["error"]["message"]
    assert client.post(
        "/translate", json={"q": "still", "source": "en", "target": "de"}
    ).json() == {"translatedText": "still"}


def test_multipart_bytes_that_are_not_text_are_refused(client: TestClient) -> None:
    fields = {"q": (None, b"caf\xe9"), "source": (None, "en"), "target": (None, "de")}
    response = client.post("/translate", files=fields)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"] == "field 'q' is not valid utf-8"
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="q"\r\n'
        f"Content-Type: text/plain; charset=hex\r\n\r\n6869\r\n--{boundary}--\r\n"
    ).encode()
    headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
    response = client.post("/translate", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["message"] == "unknown charset 'hex'; send UTF-8"


def test_a_form_in_a_declared_charset_is_read_in_it(client: TestClient) -> None:
    headers = {"content-type": f"{FORM}; charset=iso-8859-1"}
    response = client.post("/translate", content=b"q=caf%E9&source=en&target=de", headers=headers)
    assert response.json() == {"translatedText": "café"}


def test_api_key_in_the_body() -> None:
    """As LibreTranslate: a key that is not valid is a 403, which its clients read as such."""
    with TestClient(make_app(FakeTranslator(), api_keys=["k"])) as client:
        body = {"q": "x", "source": "en", "target": "de"}
        missing = client.post("/translate", json=body)
        assert missing.status_code == 401
        assert "or an api_key field" in missing.json()["error"]["message"]
        bad = client.post("/translate", json={**body, "api_key": "bad"})
        assert bad.status_code == 403 and bad.json()["error"]["code"] == "invalid_api_key"
        assert client.post("/translate", json={**body, "api_key": "k"}).status_code == 200
        assert client.post("/translate", data={**body, "api_key": "k"}).status_code == 200
        assert client.post("/translate", params={**body, "api_key": "k"}).status_code == 200
        assert client.post("/v1/translate", json={"text": "x"}).status_code == 401  # unchanged


def test_fields_in_the_query_string(client: TestClient) -> None:
    """LibreTranslate reads query and form fields together; deep-translator sends only the
    query, with an empty body."""
    query = {"q": "Hello.", "source": "en", "target": "de"}
    response = client.post("/translate", params=query)
    assert response.status_code == 200, response.text
    assert response.json() == {"translatedText": "Hello."}
    response = client.post("/translate", params={"source": "en"}, data={"q": "Hi", "target": "de"})
    assert response.json() == {"translatedText": "Hi"}
    json_body = client.post("/translate", params=query, json={"q": "only", "source": "en"})
    assert json_body.status_code == 400  # a JSON body is read alone, as LibreTranslate does
    assert "target: Field required" in json_body.json()["error"]["message"]
    bad = client.post("/translate?q=%ff&source=en&target=de")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_query"


@pytest.mark.parametrize("fmt", [None, "", "text"])
def test_an_empty_format_means_text(client: TestClient, fmt: str | None) -> None:
    body = {"q": "x", "source": "en", "target": "de", "format": fmt}
    assert client.post("/translate", json=body).json() == {"translatedText": "x"}


def test_negative_alternatives_count_as_none(client: TestClient, fake: FakeTranslator) -> None:
    body = {"q": "x", "source": "en", "target": "de", "alternatives": -1}
    assert client.post("/translate", json=body).json() == {"translatedText": "x"}
    assert fake.batches[-1][1].n_best == 1


def test_a_json_body_that_is_not_an_object_is_a_400(client: TestClient) -> None:
    response = client.post("/translate", json=["q", "x"])
    assert response.status_code == 400 and "JSON object" in response.json()["error"]["message"]


def test_languages() -> None:
    fakes = (
        FakeTranslator("en-de"),
        FakeTranslator("en-fr", "en", "fr"),
        FakeTranslator("de-en", "de", "en"),
    )
    with TestClient(make_app(*fakes)) as client:
        assert client.get("/languages").json() == [
            {"code": "de", "name": "German", "targets": ["en"]},
            {"code": "en", "name": "English", "targets": ["de", "fr"]},
            {"code": "fr", "name": "French", "targets": []},  # a target only: listed all the same
        ]
        body = {"q": "x", "source": "en", "target": "fr"}
        assert client.post("/translate", json=body).status_code == 200
        assert fakes[1].batches[-1][0] == ["x"]
