"""Service settings, read from `NMT_*` environment variables.

Built once in `__main__` (or by `nmt serve`) and passed to `create_app(settings)`; nothing is read
at import time, so tests can build apps with whatever settings they need.

List settings (`NMT_MODELS`, `NMT_API_KEYS`, `NMT_CORS_ORIGINS`) are comma-separated:
`NMT_MODELS=models/en-de,models/de-en`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# The shipped en->de model, found relative to the installed package (not the working directory).
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "en-de-multi30k"

# Weight quantization used when NMT_QUANTIZE is unset: int8 on CPU, float on CUDA
# (model.placement.resolve_quantize; the figures are in bench/README.md).
DEFAULT_QUANTIZE: Literal["auto", "none", "int8"] = "auto"

CommaList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    """Everything the service can be told from outside. Field names map to `NMT_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="NMT_", extra="ignore")

    # Models and hardware
    models: Annotated[list[Path], NoDecode] = Field(
        default_factory=lambda: [DEFAULT_MODEL_DIR], min_length=1
    )
    device: Literal["cpu", "cuda", "auto"] = "auto"
    threads: int | None = Field(
        default=None,
        ge=1,
        description="CPU cores for the model (default: all this process may use), shared "
        "out among model workers",
    )
    lanes: int | None = Field(
        default=None,
        ge=1,
        description="parts each batch is cut into and computed at once, one thread each "
        "(int8 CPU models; model/lanes.py); default: the threads each model copy gets",
    )
    model_workers: int = Field(
        default=0,
        ge=0,
        description="model copies, each in its own process, computing batches at once; "
        "0 runs the model in the server process (service/model_workers.py)",
    )
    quantize: Literal["auto", "none", "int8"] = DEFAULT_QUANTIZE

    # Cross-request batching
    max_batch_tokens: int = Field(
        default=16384, ge=1, description="padded source tokens per batch, each beam row counted"
    )
    max_batch_size: int = Field(default=64, ge=1, description="sentences; 1 turns batching off")
    max_wait_ms: float = Field(
        default=5.0, ge=0, allow_inf_nan=False, description="wait this long for company"
    )
    max_queue: int = Field(default=1024, ge=1, description="queued sentences before 503")

    # Request limits
    max_text_chars: int = Field(default=5000, ge=1)
    max_texts: int = Field(default=64, ge=1)
    max_beam: int = Field(default=8, ge=1)
    max_input_tokens: int = Field(default=256, ge=1, description="per sentence, incl. </s>")
    request_timeout_s: float = Field(
        default=30.0,
        gt=0,
        allow_inf_nan=False,
        description="how long a request's body may take to arrive (408), then its "
        "translation (504)",
    )

    # HTTP
    api_keys: CommaList = Field(default_factory=list, description="empty: no authentication")
    cors_origins: CommaList = Field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    access_log: bool = Field(
        default=True, description="a log line per request, with its status and milliseconds"
    )

    @field_validator("models", "api_keys", "cors_origins", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @classmethod
    def load(cls, **overrides: Any) -> Settings:
        """The environment's settings with ``overrides`` (command-line flags) on top; a bad
        value is a ``ValueError`` naming its variable and what is allowed, one line per value,
        not pydantic's report (which names fields and links its own docs)."""
        try:
            return cls(**overrides)
        except ValidationError as err:
            problems = "; ".join(_problem(e, overrides) for e in err.errors())
            raise ValueError(f"bad setting: {problems}") from None


def _problem(error: Any, overrides: dict[str, Any]) -> str:
    field = str(error["loc"][0]) if error["loc"] else ""
    flag = "--model" if field == "models" else f"--{field.replace('_', '-')}"  # as nmt serve
    where = flag if field in overrides else f"NMT_{field.upper()}"
    return f"{where}={error['input']!r}: {error['msg']}"
