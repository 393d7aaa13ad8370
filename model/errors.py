"""Errors raised by the model package.

Every error carries a stable machine-readable ``code`` (the service puts it in its JSON error
body) and a message that says what went wrong, the limit, and which setting controls it.
"""

from __future__ import annotations

from pathlib import Path


class ModelError(Exception):
    """Base class for everything the model package raises on purpose.

    Errors must survive pickling: the service's model workers send them back to the server
    process. Subclasses whose constructor takes other arguments than the message say how to
    rebuild them in ``__reduce__``.
    """

    code = "model_error"


class BundleError(ModelError):
    """A model bundle is missing a file, is corrupt, or does not fit the network."""

    code = "bundle_invalid"

    def __init__(self, file: Path | str, problem: str) -> None:
        self.file = Path(file)
        self.problem = problem
        super().__init__(f"{self.file}: {problem}")

    def __reduce__(self) -> tuple[type, tuple[Path, str]]:
        return type(self), (self.file, self.problem)


class UnknownFormatVersion(BundleError):
    """The bundle was written by a format this version cannot read."""

    code = "bundle_version"


class InputTooLong(ModelError):
    """A source sentence has more subword tokens than the translator accepts."""

    code = "input_too_long"

    def __init__(self, n_tokens: int, limit: int, index: int | None = None) -> None:
        self.n_tokens = n_tokens
        self.limit = limit
        self.index = index
        where = f"text[{index}]" if index is not None else "text"
        super().__init__(
            f"{where} has {n_tokens} tokens; limit is {limit} (NMT_MAX_INPUT_TOKENS); "
            "split it into shorter sentences"
        )

    def __reduce__(self) -> tuple[type, tuple[int, int, int | None]]:
        return type(self), (self.n_tokens, self.limit, self.index)


class TranslationFailed(ModelError):
    """Decoding one sentence failed for a reason other than its length."""

    code = "translation_failed"


class DeviceError(ModelError):
    """The compute device failed in a way the process cannot recover from."""

    code = "device_error"
