"""Fixtures for the service tests: fake translators, apps built from them, a TestClient."""

from __future__ import annotations

import gc
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


@pytest.fixture(autouse=True)
def _unfreeze_gc() -> Iterator[None]:
    """Apps freeze what they loaded out of the GC's view and raise its threshold
    (service/gc_tuning.py); this test process builds many, so undo both after each test."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)
