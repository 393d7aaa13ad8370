"""Fixtures for the service tests: fake translators, apps built from them, a TestClient."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from service_fakes import FakeTranslator, make_app


@pytest.fixture
def fake() -> FakeTranslator:
    return FakeTranslator()


@pytest.fixture
def client(fake: FakeTranslator) -> Iterator[TestClient]:
    with TestClient(make_app(fake)) as c:
        yield c
