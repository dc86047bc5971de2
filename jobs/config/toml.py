"""TOML tables into frozen dataclasses: every key known, every value of its declared type, and
errors that name the file, the key, what is allowed and what was given."""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from jobs.errors import ConfigError


def build(cls: type, raw: dict[str, Any], *, origin: str, overridden: set[str]) -> Any:
    """``cls`` (a dataclass) from a parsed TOML document."""
    return _build(cls, raw, key_path="", origin=origin, overridden=overridden)


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str], *, origin: str) -> set[str]:
    """Apply ``section.key=value`` strings in place; values are TOML literals or bare strings."""
    touched: set[str] = set()
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        parts = key.split(".")
        node = raw
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {key}: {part!r} is not a section in {origin}")
            node = child
        node[parts[-1]] = _parse_value(text.strip())
        touched.add(key)
    return touched


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


_TYPE_WORDS = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}


def _build(cls: type, data: Any, *, key_path: str, origin: str, overridden: set[str]) -> Any:
    where = _where(origin, key_path, overridden)
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a table; got {_show(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{_where(origin, _join(key_path, unknown[0]), overridden)}: unknown key; "
            f"allowed keys: {', '.join(sorted(fields))}"
        )
    values: dict[str, Any] = {}
    for name, f in fields.items():
        sub = _join(key_path, name)
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(
                    f"{_where(origin, sub, overridden)}: missing required value "
                    f"({_describe(hints[name])})"
                )
            continue
        values[name] = _coerce(hints[name], data[name], sub, origin, overridden)
    try:
        return cls(**values)
    except ValueError as exc:
        # __post_init__ messages start with the field they are about: "name: what is wrong".
        name, _, message = str(exc).partition(": ")
        raise ConfigError(
            f"{_where(origin, _join(key_path, name), overridden)}: {message}"
        ) from None


def _coerce(tp: Any, value: Any, key_path: str, origin: str, overridden: set[str]) -> Any:
    where = _where(origin, key_path, overridden)
    origin_tp = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin_tp in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, key_path, origin, overridden)
    if origin_tp is Literal:
        if value not in args:
            allowed = ", ".join(repr(a) for a in args)
            raise ConfigError(f"{where}: expected one of {allowed}; got {_show(value)}")
        return value
    if origin_tp is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list; got {_show(value)}")
        return tuple(
            _coerce(args[0], v, f"{key_path}[{i}]", origin, overridden) for i, v in enumerate(value)
        )
    if origin_tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a table of strings; got {_show(value)}")
        return {
            str(k): _coerce(args[1], v, _join(key_path, str(k)), origin, overridden)
            for k, v in value.items()
        }
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key_path=key_path, origin=origin, overridden=overridden)  # type: ignore[arg-type]
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in _TYPE_WORDS and (type(value) is not tp):
        raise ConfigError(f"{where}: expected {_TYPE_WORDS[tp]}; got {_show(value)}")
    return value


def _describe(tp: Any) -> str:
    if dataclasses.is_dataclass(tp):
        return "a table"
    if typing.get_origin(tp) is tuple:
        return "a list"
    return _TYPE_WORDS.get(tp, str(tp))


def _join(key_path: str, name: str) -> str:
    return f"{key_path}.{name}" if key_path else name


def _where(origin: str, key_path: str, overridden: set[str]) -> str:
    if not key_path:
        return origin
    section, _, rest = key_path.partition(".")
    shown = f"[{section}].{rest}" if rest and "[" not in section else key_path
    via = " (from --set)" if key_path in overridden else ""
    return f"{origin} {shown}{via}"


def _show(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"
