"""Model errors cross process boundaries (the service's model workers) intact."""

from __future__ import annotations

import pickle

import pytest

from model.errors import (
    BundleError,
    DeviceError,
    InputTooLong,
    ModelError,
    TranslationFailed,
    UnknownFormatVersion,
)


@pytest.mark.parametrize(
    "error",
    [
        InputTooLong(300, 256, 2),
        InputTooLong(300, 256),
        BundleError("models/x/config.json", "missing"),
        UnknownFormatVersion("models/x/metadata.json", "format 9"),
        TranslationFailed("translation failed: RuntimeError: x"),
        DeviceError("CUDA failed"),
    ],
)
def test_errors_survive_pickling(error: ModelError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert (str(copy), copy.code, vars(copy)) == (str(error), error.code, vars(error))
