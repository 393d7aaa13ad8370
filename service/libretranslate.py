"""LibreTranslate-compatible endpoints, so its existing clients work unchanged.

POST /translate takes `q` (a string or a list), `source`, `target`, `format` ("text" only),
`api_key` and `alternatives`, as JSON, url-encoded form or multipart form, or, without a JSON
body, in the query string (LibreTranslate reads Flask's `request.values`, query and form
together, and clients such as deep-translator send only the query). It answers
`{"translatedText": ...}` with a string or a list matching `q`. GET /languages lists every
language served, each with the languages it translates into (none for a target-only one).
`source: "auto"` is accepted when only one source language is served for the target.

Errors keep this service's shape (`{"error": {"code", "message"}}`) with LibreTranslate's
status codes, which its clients map to their own exceptions: 400 for any invalid request
(where the native API says 422) and 403 for an API key that is not valid.
"""

from __future__ import annotations

import codecs
import json
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from service.deps import RegistryDep, SettingsDep, check_api_key, read_body
from service.errors import ApiError, describe_validation
from service.registry import ModelRegistry
from service.routes import ERRORS, answer_head
from service.schemas import Language, LibreTranslateRequest, LibreTranslateResponse
from service.settings import Settings
from service.translation import (
    ALTERNATIVES,
    check_texts,
    decode_options,
    to_translation,
    translate_texts,
)

router = APIRouter(tags=["LibreTranslate"])

LANGUAGE_NAMES = {
    "ar": "Arabic", "cs": "Czech", "de": "German", "en": "English", "es": "Spanish",
    "fr": "French", "it": "Italian", "ja": "Japanese", "nl": "Dutch", "pl": "Polish",
    "pt": "Portuguese", "ru": "Russian", "tr": "Turkish", "uk": "Ukrainian", "zh": "Chinese",
}  # fmt: skip

FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")

_BODY_DOC = LibreTranslateRequest.model_json_schema()
_OPENAPI_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _BODY_DOC},
            "application/x-www-form-urlencoded": {"schema": _BODY_DOC},
            "multipart/form-data": {"schema": _BODY_DOC},
        },
    }
}


@router.post(
    "/translate",
    response_model=LibreTranslateResponse,
    response_model_exclude_none=True,
    responses=ERRORS,
    openapi_extra=_OPENAPI_BODY,
)
async def translate(
    request: Request, registry: RegistryDep, settings: SettingsDep
) -> LibreTranslateResponse:
    """Translate `q` from `source` to `target`, LibreTranslate style."""
    try:
        return await _translate(request, registry, settings)
    except RequestValidationError as exc:
        raise ApiError(400, *describe_validation(exc.errors())[1:]) from None
    except ApiError as exc:
        if exc.code == "missing_api_key":
            exc.message += ", or an api_key field"
        elif exc.code == "invalid_api_key":
            exc.status = 403
        elif exc.status == 422:
            exc.status = 400
        raise


async def _translate(
    request: Request, registry: ModelRegistry, settings: Settings
) -> LibreTranslateResponse:
    try:
        body = LibreTranslateRequest.model_validate(await read_fields(request, settings))
    except ValidationError as exc:
        raise RequestValidationError(exc.errors()) from None
    check_api_key(request, settings, body.api_key)
    if body.format not in ("text", "", None):
        raise ApiError(
            400,
            "unsupported_format",
            f"format {body.format!r} is not supported; only 'text' (HTML is not parsed)",
        )
    single = isinstance(body.q, str)
    texts = [body.q] if isinstance(body.q, str) else body.q
    check_texts(texts, "q", single, settings)
    loaded = registry.resolve(None, _source(registry, body.source, body.target), body.target)
    n_best = body.alternatives + ALTERNATIVES.extra
    options = decode_options(loaded.defaults, settings, n_best=n_best, asked_as=ALTERNATIVES)
    done = await translate_texts(loaded, texts, options, settings, request, "q", single)
    out = [to_translation(text, n_best, False, False) for text in done.texts]
    best = [t.text for t in out]
    alternatives = [[a.text for a in t.alternatives or []] for t in out] if n_best > 1 else None
    if single:
        return LibreTranslateResponse(
            translatedText=best[0], alternatives=alternatives[0] if alternatives else None
        )
    return LibreTranslateResponse(translatedText=best, alternatives=alternatives)


@router.get("/languages", response_model=list[Language], responses=ERRORS)
async def languages(registry: RegistryDep) -> list[Language]:
    """Every language served, with the languages it translates into: a language that is only
    ever a target is listed with none, as LibreTranslate lists it (clients look the target up
    here)."""
    targets: dict[str, set[str]] = {}
    for loaded in registry:
        t = loaded.translator
        targets.setdefault(t.source_lang, set()).add(t.target_lang)
        targets.setdefault(t.target_lang, set())
    return [
        Language(code=code, name=LANGUAGE_NAMES.get(code, code), targets=sorted(tgts))
        for code, tgts in sorted(targets.items())
    ]


def _source(registry: ModelRegistry, source: str, target: str) -> str:
    if source.lower() != "auto":
        return source
    served = [m.translator for m in registry]
    sources = {t.source_lang for t in served if t.target_lang.lower() == target.lower()}
    if len(sources) != 1:
        raise ApiError(
            400,
            "unsupported_language_pair",
            f"source 'auto' needs exactly one source language for target {target!r}; "
            f"found {sorted(sources) or 'none'}: give source explicitly (GET /languages)",
        )
    return sources.pop()


async def read_fields(request: Request, settings: Settings) -> dict[str, Any]:
    """The body's fields, from JSON, url-encoded or multipart form data (as LibreTranslate)."""
    content_type = request.headers.get("content-type", "")
    media = content_type.split(";")[0].strip().lower()
    raw = await read_body(request, settings)
    if media in FORMS or (not raw.strip() and media != "application/json"):
        try:
            query = _collect(parse_qsl(request.url.query, keep_blank_values=True, errors="strict"))
        except UnicodeError:
            raise ApiError(400, "invalid_query", "query string is not valid UTF-8") from None
        return {**query, **await _form_fields(media, content_type, raw)}
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:  # ValueError: also a number of 4,300+ digits
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise ApiError(400, "invalid_json", f"request body is not valid JSON: {reason}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "validation_error", "request body must be a JSON object or form fields")
    return data


async def _form_fields(media: str, content_type: str, raw: bytes) -> dict[str, Any]:
    """The fields of a form body (none for an empty body that is not a form)."""
    if media == "application/x-www-form-urlencoded":
        charset = _charset(content_type)
        try:  # strict: a replacement character would hide the error in a 200
            pairs = parse_qsl(
                raw.decode(charset), keep_blank_values=True, encoding=charset, errors="strict"
            )
        except UnicodeError:  # punycode and others fail as UnicodeError, not a decode error
            raise ApiError(400, "invalid_form", f"form body is not valid {charset}") from None
        return _collect(pairs)
    if media == "multipart/form-data":
        return _parse_multipart(content_type, raw)
    return {}


def _parse_multipart(content_type: str, raw: bytes) -> dict[str, Any]:
    head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1", "replace")
    message = BytesParser(policy=HTTP).parsebytes(head + raw)
    if not message.is_multipart():
        raise ApiError(400, "invalid_form", "multipart body could not be parsed")
    pairs: list[tuple[str, str]] = []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        if isinstance(name, str) and isinstance(payload, bytes):
            charset = _known(part.get_content_charset() or "utf-8")
            try:
                pairs.append((name, payload.decode(charset)))
            except UnicodeError:
                raise ApiError(
                    400, "invalid_form", f"field {name!r} is not valid {charset}"
                ) from None
    return _collect(pairs)


def _charset(content_type: str) -> str:
    """The charset a form body declares (HTML forms send UTF-8 unless told otherwise)."""
    for param in content_type.split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            return _known(value.strip().strip('"') or "utf-8")
    return "utf-8"


def _known(charset: str) -> str:
    """``charset``'s codec name, where it is a text encoding (not base64, hex or rot13,
    which Python's codecs also know)."""
    try:
        codec = codecs.lookup(charset)
    except LookupError:
        codec = None
    if codec is None or not getattr(codec, "_is_text_encoding", True):
        raise ApiError(400, "invalid_form", f"unknown charset {charset!r}; send UTF-8")
    return codec.name


def _collect(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Form pairs to a dict; a repeated field (q=a&q=b) becomes a list."""
    fields: dict[str, Any] = {}
    for name, value in pairs:
        if name in fields:
            prev = fields[name]
            fields[name] = [*prev, value] if isinstance(prev, list) else [prev, value]
        else:
            fields[name] = value
    return fields


answer_head(router)
