"""Spark data source options as the project's sources read them: keys case-insensitive, values
strings, every key known, every value checked, and errors that name the source and the option.

Each source keeps one frozen options class with a ``from_options`` classmethod built on these
helpers (``EventHubsOptions``, ``DeltaRsOptions``), so a source parses its options in one place.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jobs.errors import SourceOptionError


@dataclass(frozen=True)
class OptionKeys:
    """The keys one source accepts.

    ``fields``: every accepted key (any case) -> the options class field it sets; the first key
    given for a field is the one shown in messages. ``ignored``: keys accepted and dropped (another
    connector's keys that mean nothing here). ``prefix``: keys starting with it are collected
    into one map (``storage.<key>``), their case kept."""

    source: str
    fields: Mapping[str, str]
    ignored: Iterable[str] = ()
    prefix: str | None = None
    shown: tuple[str, ...] = field(init=False)
    _lower: dict[str, tuple[str, str]] = field(init=False)

    def __post_init__(self) -> None:
        # Spark lower-cases option keys: messages show each key as declared here
        object.__setattr__(self, "_lower", {k.lower(): (v, k) for k, v in self.fields.items()})
        first: dict[str, str] = {}
        for key, name in self.fields.items():
            first.setdefault(name, key)
        object.__setattr__(self, "shown", tuple(first.values()))

    def read(self, options: Mapping[str, Any]) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
        """Split ``options`` into {field: (key as declared, text)} and the prefixed map.

        Raises:
            SourceOptionError: for a key this source does not know.
        """
        ignored = {k.lower() for k in self.ignored}
        values: dict[str, tuple[str, str]] = {}
        prefixed: dict[str, str] = {}
        for key, raw in dict(options).items():
            lower = str(key).lower()
            if self.prefix and lower.startswith(self.prefix):
                prefixed[str(key)[len(self.prefix) :]] = str(raw)
                continue
            known = self._lower.get(lower)
            if known is None:
                if lower in ignored:
                    continue
                allowed = [*self.shown, *([f"{self.prefix}<key>"] if self.prefix else [])]
                raise SourceOptionError(
                    f"{self.source}: unknown option {key!r}; allowed: {', '.join(allowed)}"
                )
            values[known[0]] = (known[1], "" if raw is None else str(raw))
        return values, prefixed

    def fail(self, key: str, expected: str, text: str) -> SourceOptionError:
        return SourceOptionError(f"{self.source}: option {key}: expected {expected}; got {text!r}")

    def integer(self, key: str, text: str, *, minimum: int = 0) -> int:
        """A whole number of at least ``minimum``."""
        stripped = text.strip()
        if not re.fullmatch(r"\d+", stripped) or int(stripped) < minimum:
            expected = "a positive integer" if minimum > 0 else "an integer of 0 or more"
            raise self.fail(key, expected, text)
        return int(stripped)

    def boolean(self, key: str, text: str) -> bool:
        lower = text.strip().lower()
        if lower not in ("true", "false"):
            raise self.fail(key, "true or false", text)
        return lower == "true"

    def seconds(self, key: str, text: str) -> float:
        """Seconds as ``60``, ``60s`` or ISO-8601 ``PT60S``; more than 0."""
        match = re.fullmatch(r"(?i)(?:PT)?(\d+(?:\.\d+)?)\s*S?", text.strip())
        if not match or float(match.group(1)) <= 0:
            raise self.fail(key, "seconds, like 60, 60s or PT60S", text)
        return float(match.group(1))

    def names(self, text: str) -> tuple[str, ...]:
        """A comma-separated list (empty items dropped)."""
        return tuple(item.strip() for item in text.split(",") if item.strip())

    def text(self, key: str, text: str) -> str:
        """A value that must not be empty."""
        if not text.strip():
            raise self.fail(key, "a value", text)
        return text.strip()
