"""Load the Great Expectations suites under expectations/ and the project's meta on them.

Each suite is GX's own suite JSON. The project adds, in ``meta``:

* on every expectation: ``name`` (the stable reason written to quarantine rows and the data quality
  table) and ``on_failure`` (``warn`` keeps and flags the row, ``quarantine`` diverts it, ``fail``
  stops the stream);
* on the suite: ``derived_columns``, Spark SQL expressions added before validation so that
  cross-field rules (e.g. speed while parked) are ordinary column expectations.

Values written ``{"$PARAMETER": "name"}`` are GX suite parameters; they are resolved from the
configuration (:func:`suite_parameters`) when the suite is loaded.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from jobs.config import Config
from jobs.errors import SuiteError

OnFailure = Literal["warn", "quarantine", "fail"]
ON_FAILURE: tuple[OnFailure, ...] = ("warn", "quarantine", "fail")
ENVELOPE_SUITE = "envelope"


@dataclass(frozen=True)
class Rule:
    """What the project needs to know about one expectation."""

    name: str
    on_failure: OnFailure
    expectation_type: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class Suite:
    """A suite's rules and derived columns, and GX's own suite object when it is needed."""

    name: str
    rules: tuple[Rule, ...]
    derived_columns: dict[str, str]
    path: Path
    document: dict[str, Any] = field(repr=False)  # the suite JSON, parameters resolved

    @cached_property
    def gx_suite(self) -> Any:
        """GX's ``ExpectationSuite``; raises :class:`SuiteError` for anything GX would drop.

        GX logs and *drops* an expectation it cannot build, so each is built here: a typo in a
        suite is an error instead of a rule that silently stops being checked."""
        from great_expectations.core.expectation_suite import ExpectationSuite
        from great_expectations.expectations.expectation_configuration import (
            ExpectationConfiguration,
        )

        expectations = []
        for i, raw in enumerate(self.document.get("expectations", [])):
            try:
                expectations.append(ExpectationConfiguration(**raw).to_domain_obj())
            except Exception as exc:  # GX raises a variety of types for a bad expectation
                raise SuiteError(
                    f"{self.path} expectations[{i}]: Great Expectations rejected the "
                    f"expectation: {exc}"
                ) from None
        try:
            return ExpectationSuite(**{**self.document, "expectations": expectations})
        except Exception as exc:
            raise SuiteError(f"{self.path}: Great Expectations rejected the suite: {exc}") from None


def suite_parameters(cfg: Config) -> dict[str, Any]:
    """The suite parameters that come from configuration."""
    return {
        "partner_ids": cfg.partner_ids,
        "blocked_countries": list(cfg.residency.blocked_countries),
        "min_event_lag_s": -float(cfg.quality.max_future_skew_s),
        "max_event_lag_s": float(cfg.quality.max_event_age_days * 86400),
    }


def load_suites(
    directory: str | Path, parameters: dict[str, Any], *, validate: bool = True
) -> dict[str, Suite]:
    """Load every ``*.json`` suite in ``directory``, keyed by suite name; with ``validate``, GX
    builds each now (suites that compiled before may skip it: GX is then imported only to
    validate batches)."""
    root = Path(directory)
    files = sorted(root.glob("*.json"))
    if not files:
        raise SuiteError(f"{root}: no expectation suites found (*.json)")
    suites = {}
    for file in files:
        suite = load_suite(file, parameters, validate=validate)
        suites[suite.name] = suite
    if ENVELOPE_SUITE not in suites:
        raise SuiteError(f"{root}: the envelope suite ({ENVELOPE_SUITE}.json) is missing")
    names = [r.name for s in suites.values() for r in s.rules]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SuiteError(
            f"{root}: expectation names must be unique across suites; repeated: {dupes}"
        )
    return suites


def load_suite(file: Path, parameters: dict[str, Any], *, validate: bool = True) -> Suite:
    """Read one suite; with ``validate``, GX builds it now (see :attr:`Suite.gx_suite`)."""
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise SuiteError(f"{file}: cannot read suite: {exc}") from None
    doc = _resolve(doc, parameters, where=str(file))
    rules = []
    for i, raw in enumerate(doc.get("expectations", [])):
        kind = raw.get("type") or raw.get("expectation_type")
        meta = raw.get("meta") or {}
        where = f"{file} expectations[{i}] ({kind})"
        name = meta.get("name")
        if not name:
            raise SuiteError(f"{where}: meta.name is missing; it names the quarantine reason")
        on_failure = meta.get("on_failure")
        if on_failure not in ON_FAILURE:
            raise SuiteError(
                f"{where} meta.on_failure: expected one of {', '.join(ON_FAILURE)}; got {on_failure!r}"
            )
        kwargs = raw.get("kwargs") or {}
        columns = tuple(
            kwargs[k] for k in ("column", "column_A", "column_B") if isinstance(kwargs.get(k), str)
        )
        rules.append(Rule(name, on_failure, str(kind), columns))
    derived = dict(doc.get("meta", {}).get("derived_columns", {}))
    suite = Suite(str(doc.get("name") or file.stem), tuple(rules), derived, file, doc)
    if validate:
        _ = suite.gx_suite
    return suite


def _resolve(node: Any, parameters: dict[str, Any], *, where: str) -> Any:
    if isinstance(node, dict):
        if set(node) == {"$PARAMETER"}:
            key = node["$PARAMETER"]
            if key not in parameters:
                raise SuiteError(
                    f"{where}: suite parameter {key!r} has no value; known: {sorted(parameters)}"
                )
            return parameters[key]
        return {k: _resolve(v, parameters, where=where) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v, parameters, where=where) for v in node]
    return node


_SQL_WORDS = {"and", "or", "not", "case", "when", "then", "else", "end", "is", "null", "in",
              "true", "false", "between", "like", "as"}  # fmt: skip


def identifiers(expression: str) -> set[str]:
    """Column names a derived-column expression reads (words that are not SQL or a function)."""
    without_strings = re.sub(r"'[^']*'", "", expression)
    words = re.findall(r"\b[A-Za-z_][A-Za-z0-9_]*\b(?!\s*\()", without_strings)
    return {w for w in words if w.lower() not in _SQL_WORDS}
