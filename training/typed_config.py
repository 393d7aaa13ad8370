"""Turn plain YAML data into nested dataclasses, with errors that give the full dotted key.

Kept apart from the config classes so that those read as a list of settings. Supported field
types: ``bool``, ``int``, ``float``, ``str``, ``Literal[...]``, ``X | None``, fixed-length
``tuple[...]`` and nested dataclasses.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

T = TypeVar("T")

# PyYAML follows YAML 1.1, which reads "1e-3" (no dot) as a string; accept that spelling.
_FLOAT_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


class ConfigError(ValueError):
    """A config value is unknown, missing, of the wrong type or out of range."""


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _type_name(tp: Any) -> str:
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in args)
    if origin is tuple:
        return f"a list of {len(args)} ({', '.join(_type_name(a) for a in args)})"
    if dataclasses.is_dataclass(tp):
        return f"a mapping ({getattr(tp, '__name__', tp)})"
    return getattr(tp, "__name__", str(tp))


def _mismatch(value: Any, tp: Any, path: str) -> ConfigError:
    shown = repr(value) if len(repr(value)) < 60 else repr(value)[:57] + "..."
    return ConfigError(f"{path}: expected {_type_name(tp)}, got {type(value).__name__} {shown}")


def convert(value: Any, tp: Any, path: str) -> Any:
    """Check ``value`` against the type ``tp`` and return it in that type.

    Raises:
        ConfigError: naming ``path`` and the expected type.
    """
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if value is None:  # a section whose keys are all commented out
            value = {}
        if not isinstance(value, Mapping):
            raise _mismatch(value, tp, path)
        return build(tp, value, path)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in get_args(tp):
            return None
        for arg in get_args(tp):
            if arg is type(None):
                continue
            try:
                return convert(value, arg, path)
            except ConfigError:
                pass
        raise _mismatch(value, tp, path)
    if origin is Literal:
        args = get_args(tp)
        # The type check keeps `true` from matching a Literal[1] (True == 1 in Python).
        if value not in args or type(value) not in {type(a) for a in args}:
            raise _mismatch(value, tp, path)
        return value
    if origin is tuple:
        args = get_args(tp)
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise _mismatch(value, tp, path)
        items = enumerate(zip(value, args, strict=True))
        return tuple(convert(v, a, f"{path}[{i}]") for i, (v, a) in items)
    return _convert_scalar(value, tp, path)


def _convert_scalar(value: Any, tp: Any, path: str) -> Any:
    # bool is an int subclass: keep `true` out of int fields and 1 out of bool fields.
    if tp is bool and isinstance(value, bool):
        return value
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is float and not isinstance(value, bool):
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
            return float(value)
    if tp is str and isinstance(value, str):
        return value
    raise _mismatch(value, tp, path)


def build(cls: type[T], raw: Mapping[str, Any], path: str = "") -> T:
    """Build dataclass ``cls`` from a mapping, recursively.

    Raises:
        ConfigError: an unknown key (with the closest valid key as a suggestion), a missing
            required key, a wrong type, or a ``ValueError`` from the class's own checks.
    """
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in raw:
        if key not in fields:
            raise unknown_key(str(key), list(fields), path)
    kwargs = {}
    for name, field in fields.items():
        if name in raw:
            kwargs[name] = convert(raw[name], hints[name], _join(path, name))
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{_join(path, name)} is required ({_type_name(hints[name])})")
    try:
        return cls(**kwargs)
    except ValueError as err:  # the class's own range checks: add where they happened
        raise ConfigError(f"{path}: {err}" if path else str(err)) from err


def unknown_key(key: str, valid: Sequence[str], path: str) -> ConfigError:
    """``loop.max_step is not a field; did you mean loop.max_steps?``"""
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    hint = f"did you mean {_join(path, close[0])}?" if close else f"valid: {', '.join(valid)}"
    return ConfigError(f"{_join(path, key)} is not a field; {hint}")


def to_plain(obj: Any) -> Any:
    """Dataclasses to dicts and tuples to lists, for YAML (``safe_dump`` refuses tuples)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_plain(v) for v in obj]
    return obj


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """Nested dict from ``["a.b=value", ...]``; each value is parsed with ``yaml.safe_load``.

    So ``loop.amp=bf16`` gives a string, ``optim.lr=3e-4`` a float (via :func:`convert`),
    ``optim.betas=[0.9,0.98]`` a list and ``eval.max_valid_sentences=null`` None.
    """
    nested: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {item!r}: value is not valid YAML ({one_line(err)})") from err
        node = nested
        for depth, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {'.'.join(parts[: depth + 1])} has a value")
        node[parts[-1]] = value
    return nested


def merge(base: Mapping[str, Any], update: Mapping[str, Any], path: str = "") -> dict[str, Any]:
    """``base`` with ``update`` merged in, recursing into mappings on both sides."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value, _join(path, key))
        elif isinstance(value, Mapping) and key in out and out[key] is not None:
            raise ConfigError(f"{_join(path, key)} is a value, not a section")
        else:
            out[key] = value
    return out


def one_line(err: Exception) -> str:
    """A YAML or decoding error in one line: PyYAML's spans several, with a caret drawing."""
    if isinstance(err, yaml.MarkedYAMLError):
        mark = err.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        return f"{err.problem or err.context or 'invalid YAML'}{where}"
    return " ".join(str(err).split())


class _UniqueKeyLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML has no types here
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping: PyYAML keeps the last,
    so an edited config could silently train with the other value."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice", key_node.start_mark
                )
            seen.add(key)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep)
        return mapping


def load_yaml(text: str) -> Any:
    """``yaml.safe_load``, refusing duplicate keys."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
