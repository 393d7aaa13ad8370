"""Request and response bodies.

Limits that never change are declared on the fields (422 for free, shown in /docs). Limits
that come from Settings (NMT_MAX_TEXTS, NMT_MAX_TEXT_CHARS, NMT_MAX_BEAM) are checked by
`translation.check_limits`, so their messages can name the setting.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_LENGTH_CAP = 1024  # hard cap on max_length, whatever the model


class ErrorDetail(BaseModel):
    code: str = Field(description="stable, machine-readable")
    message: str = Field(description="what was wrong, the limit, and the setting behind it")


class ErrorBody(BaseModel):
    """Every non-2xx answer."""

    error: ErrorDetail


class _Body(BaseModel):
    """Strict request body: no type coercion, unknown fields named along with the allowed ones."""

    model_config = ConfigDict(strict=True)

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(cls.model_fields))
            if unknown:
                raise ValueError(
                    f"unknown field(s) {', '.join(map(repr, unknown))}; "
                    f"allowed: {', '.join(cls.model_fields)}"
                )
        return data


class TranslateRequest(_Body):
    """POST /v1/translate. Give exactly one of `text` and `texts`."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"text": "A dog runs across the meadow."}]}
    )

    text: str | None = Field(default=None, description="one text (may hold many sentences)")
    texts: list[str] | None = Field(
        default=None, min_length=1, description="several texts; at most NMT_MAX_TEXTS"
    )
    model: str | None = Field(default=None, description="model id (GET /v1/models)")
    source: str | None = Field(
        default=None, min_length=1, description="source language code, e.g. 'en'"
    )
    target: str | None = Field(
        default=None, min_length=1, description="target language code, e.g. 'de'"
    )
    beam_size: int | None = Field(
        default=None, ge=1, description="1 = greedy; default: the model's; at most NMT_MAX_BEAM"
    )
    n_best: int = Field(default=1, ge=1, description="candidates per text; at most beam_size")
    max_length: int | None = Field(
        default=None, ge=1, le=MAX_LENGTH_CAP, description="cap on target tokens per sentence"
    )
    return_scores: bool = Field(default=True, description="include length-normalized log-probs")
    return_alignment: bool = Field(default=False, description="include attention weights")

    @model_validator(mode="after")
    def _check(self) -> TranslateRequest:
        if (self.text is None) == (self.texts is None):
            raise ValueError("give exactly one of 'text' (a string) or 'texts' (a list of strings)")
        if self.beam_size is not None and self.n_best > self.beam_size:
            raise ValueError(f"n_best is {self.n_best}; it must not exceed beam_size")
        return self

    @property
    def inputs(self) -> list[str]:
        return self.texts if self.texts is not None else [self.text or ""]


class Alternative(BaseModel):
    text: str
    score: float | None = None


class SentenceAlignment(BaseModel):
    """Attention of one sentence: weights[i][j] links target token i to source token j."""

    source: str
    translation: str
    source_tokens: list[str]
    target_tokens: list[str]
    weights: list[list[float]]


class Translation(BaseModel):
    text: str
    score: float | None = Field(
        default=None, description="length-normalized log-prob; mean over sentences"
    )
    alternatives: list[Alternative] | None = Field(
        default=None,
        description="up to n_best - 1 other candidates, best first, each text once",
    )
    alignment: list[SentenceAlignment] | None = None


class Timing(BaseModel):
    queue_ms: float = Field(description="longest time one of the sentences waited for a batch")
    compute_ms: float = Field(description="longest model time of the batches involved")
    total_ms: float


class TranslateResponse(BaseModel):
    model: str
    translations: list[Translation]
    timing: Timing


class ModelInfo(BaseModel):
    id: str
    source: str
    target: str
    architecture: dict[str, Any]
    decoding: dict[str, Any] = Field(description="defaults used when a request leaves them out")
    checksum: str = Field(description="sha256 of the bundle manifest")
    quantization: str
    shortlist: dict[str, Any] | None = Field(
        description="vocabulary shortlist each batch scores (model.shortlist); null: all of it"
    )
    device: str
    workers: int = Field(description="model processes (NMT_MODEL_WORKERS); 0: the server's own")
    metrics: dict[str, Any] = Field(description="evaluation scores with sacreBLEU signatures")


class ModelList(BaseModel):
    models: list[ModelInfo]


class Status(BaseModel):
    status: str
    models: list[str] | None = None


class LibreTranslateRequest(BaseModel):
    """POST /translate, as LibreTranslate takes it (JSON or form fields, so values are lax)."""

    q: str | Annotated[list[str], Field(min_length=1)]
    source: str
    target: str
    format: str | None = Field(default="text", description='"text"; null or "" mean "text"')
    api_key: str | None = None
    alternatives: int = Field(
        default=0, description="extra candidates per text; below 0 counts as 0, as LibreTranslate"
    )

    @field_validator("alternatives")
    @classmethod
    def _at_least_zero(cls, value: int) -> int:
        return max(0, value)


class LibreTranslateResponse(BaseModel):
    translatedText: str | list[str]  # noqa: N815 (LibreTranslate's name)
    alternatives: list[str] | list[list[str]] | None = None


class Language(BaseModel):
    code: str
    name: str
    targets: list[str]
