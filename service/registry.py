"""The loaded models: which one a request means, and what /v1/models says about each."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from model import DecodeOptions, Result
from service.batching import Batcher
from service.errors import ApiError
from service.schemas import ModelInfo

logger = logging.getLogger(__name__)


class ModelDescription(Protocol):
    """What the service needs to know of a model: `model.ModelView` (tests pass fakes)."""

    @property
    def model_id(self) -> str: ...
    @property
    def source_lang(self) -> str: ...
    @property
    def target_lang(self) -> str: ...
    @property
    def config(self) -> Any: ...  # ModelConfig (has to_dict())
    @property
    def metadata(self) -> dict[str, Any]: ...
    @property
    def checksum(self) -> str: ...
    @property
    def quantize(self) -> str: ...
    @property
    def shortlist_info(self) -> dict[str, Any] | None: ...
    @property
    def device(self) -> Any: ...
    def encode(self, text: str) -> list[int]: ...


class TranslatorLike(ModelDescription, Protocol):
    """A model the service runs in its own process: `model.Translator`."""

    def translate(
        self,
        texts: Sequence[str],
        options: DecodeOptions = ...,
        source_ids: Sequence[list[int]] | None = ...,
    ) -> list[Result]: ...


@dataclass(eq=False)
class LoadedModel:
    translator: ModelDescription  # the model's translate runs wherever `batcher` sends it
    batcher: Batcher
    defaults: DecodeOptions  # used for whatever a request leaves out
    workers: int = 0  # model processes; 0: the model runs in the server process

    @property
    def id(self) -> str:
        return self.translator.model_id

    @property
    def pair(self) -> str:
        return f"{self.translator.source_lang}->{self.translator.target_lang}"


def default_options(translator: ModelDescription, max_beam: int) -> DecodeOptions:
    """DecodeOptions defaults, overridden by the bundle's metadata["decoding"], beam <= max_beam."""
    options = DecodeOptions()
    known = {f.name for f in dataclasses.fields(DecodeOptions)}
    given = translator.metadata.get("decoding") or {}
    ignored = sorted(set(given) - known)
    if ignored:
        logger.warning("%s: ignoring unknown decoding defaults %s", translator.model_id, ignored)
    options = dataclasses.replace(options, **{k: v for k, v in given.items() if k in known})
    beam = min(options.beam_size, max_beam)
    return dataclasses.replace(options, beam_size=beam, n_best=min(options.n_best, beam))


class ModelRegistry:
    """Loaded models by id; the first one is the default."""

    def __init__(self) -> None:
        self._models: dict[str, LoadedModel] = {}

    def add(self, loaded: LoadedModel) -> None:
        if loaded.id in self._models:
            raise ValueError(f"two bundles have the model id {loaded.id!r}; ids must be unique")
        self._models[loaded.id] = loaded

    def __iter__(self) -> Iterator[LoadedModel]:
        return iter(self._models.values())

    def __len__(self) -> int:
        return len(self._models)

    def resolve(
        self, model: str | None = None, source: str | None = None, target: str | None = None
    ) -> LoadedModel:
        """The model a request asks for, by id or by language pair (default: the first).

        Raises:
            ApiError: 404 model_not_found, or 400 unsupported_language_pair; both list what exists.
        """
        if model is not None:
            if model not in self._models:
                raise ApiError(
                    404, "model_not_found", f"unknown model {model!r}; available: {self._ids()}"
                )
            candidates = [self._models[model]]
        else:
            candidates = list(self._models.values())
        found = [m for m in candidates if _serves(m, source, target)]
        if not found:
            asked = f"{source or '*'}->{target or '*'}"
            which = f"model {model!r} does not translate" if model else "no model translates"
            raise ApiError(
                400,
                "unsupported_language_pair",
                f"{which} {asked}; available pairs: {self._pairs()}",
            )
        return found[0]

    def _ids(self) -> str:
        return ", ".join(self._models) or "(none)"

    def _pairs(self) -> str:
        return ", ".join(f"{m.pair} ({m.id})" for m in self._models.values()) or "(none)"


def _serves(loaded: LoadedModel, source: str | None, target: str | None) -> bool:
    t = loaded.translator
    return (source is None or source.lower() == t.source_lang.lower()) and (
        target is None or target.lower() == t.target_lang.lower()
    )


def model_info(loaded: LoadedModel) -> ModelInfo:
    t = loaded.translator
    return ModelInfo(
        id=t.model_id,
        source=t.source_lang,
        target=t.target_lang,
        architecture=t.config.to_dict(),
        decoding=dataclasses.asdict(loaded.defaults),
        checksum=t.checksum,
        quantization=t.quantize,
        shortlist=t.shortlist_info,
        device=str(t.device),
        workers=loaded.workers,
        metrics=t.metadata.get("metrics") or {},
    )
