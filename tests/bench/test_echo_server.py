"""bench/echo_server.py serves the real app around an echo translator."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi.testclient import TestClient

from service.settings import Settings

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "echo_server.py"


def test_the_echo_app_is_the_service_with_texts_translated_to_themselves() -> None:
    spec = importlib.util.spec_from_file_location("echo_server", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    app = module.echo_app(Settings(max_texts=3))
    with TestClient(app) as client:
        answer = client.post("/v1/translate", json={"texts": ["Hello there.", "Bye."]})
        assert [t["text"] for t in answer.json()["translations"]] == ["Hello there.", "Bye."]
        too_many = client.post("/v1/translate", json={"texts": ["a"] * 4})
        assert too_many.json()["error"]["code"] == "too_many_texts"  # the app's own limits
        assert 'route="/v1/translate"' in client.get("/metrics").text
