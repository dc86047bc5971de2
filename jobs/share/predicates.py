"""Partition pruning from a query's hints. Hints are best effort by the protocol: a hint this
server cannot read, or a column that is not a partition column, keeps every file (the client
filters rows itself)."""

from __future__ import annotations

import contextlib
import json
import re
from datetime import date
from typing import Any

_OPS = {
    "equal": lambda a, b: a == b, "lessThan": lambda a, b: a < b,
    "lessThanOrEqual": lambda a, b: a <= b, "greaterThan": lambda a, b: a > b,
    "greaterThanOrEqual": lambda a, b: a >= b,
}  # fmt: skip
_SQL_OPS = {"=": "equal", "<": "lessThan", "<=": "lessThanOrEqual", ">": "greaterThan",
            ">=": "greaterThanOrEqual", "<>": "notEqual"}  # fmt: skip
_SQL = re.compile(r"^\s*(?:(\w+)\s*(<>|<=|>=|=|<|>)\s*('(?:[^']*)'|-?[\d.]+)"
                  r"|('(?:[^']*)'|-?[\d.]+)\s*(<>|<=|>=|=|<|>)\s*(\w+))\s*$")  # fmt: skip
_SQL_NULL = re.compile(r"^\s*(\w+)\s+IS\s+(NOT\s+)?NULL\s*$", re.IGNORECASE)
_FLIP = {"<": ">", ">": "<", "<=": ">=", ">=": "<=", "=": "=", "<>": "<>"}


def _value(text: str | None, kind: str) -> Any:
    if text is None:
        return None
    if kind in ("int", "long"):
        return int(text)
    if kind == "date":
        return date.fromisoformat(text)
    if kind == "bool":
        return text.lower() == "true"
    if kind in ("float", "double"):
        return float(text)
    return text


def _eval(node: dict, values: dict[str, str | None]) -> bool | None:
    """True, False, or None when unknown (a column that is not a partition column)."""
    op, children = node.get("op"), node.get("children") or []
    if op == "and":
        results = [_eval(c, values) for c in children]
        return False if False in results else (None if None in results else True)
    if op == "or":
        results = [_eval(c, values) for c in children]
        return True if True in results else (None if None in results else False)
    if op == "not":
        inner = _eval(children[0], values)
        return None if inner is None else not inner
    if op == "isNull":
        column = children[0]
        return None if column["name"] not in values else values[column["name"]] is None
    if op in _OPS:
        left, right = (_leaf(c, values) for c in children)
        if left is _UNKNOWN or right is _UNKNOWN:
            return None
        if left is None or right is None:
            return False  # SQL: a comparison with null is not true
        return bool(_OPS[op](left, right))
    raise ValueError(f"unsupported op {op!r}")


_UNKNOWN = object()


def _leaf(node: dict, values: dict[str, str | None]) -> Any:
    kind = node.get("valueType", "string")
    if node["op"] == "column":
        if node["name"] not in values:
            return _UNKNOWN
        return _value(values[node["name"]], kind)
    if node["op"] == "literal":
        return _value(node.get("value"), kind)
    raise ValueError(f"expected a column or a literal; got {node['op']!r}")


def _from_sql(hint: str) -> dict | None:
    """The JSON form of a simple SQL hint (``col op literal``, ``col IS [NOT] NULL``)."""
    null = _SQL_NULL.match(hint)
    if null:
        node = {"op": "isNull", "children": [{"op": "column", "name": null.group(1)}]}
        return {"op": "not", "children": [node]} if null.group(2) else node
    m = _SQL.match(hint)
    if not m:
        return None
    column, op, literal = (m.group(1), m.group(2), m.group(3)) if m.group(1) else (
        m.group(6), _FLIP[m.group(5)], m.group(4))  # fmt: skip
    kind = "string" if literal.startswith("'") else ("double" if "." in literal else "long")
    lit = {"op": "literal", "value": literal.strip("'"), "valueType": kind}
    col = {"op": "column", "name": column, "valueType": kind}
    if op == "<>":
        return {"op": "not", "children": [{"op": "equal", "children": [col, lit]}]}
    return {"op": _SQL_OPS[op], "children": [col, lit]}


def file_filter(json_hints: str | None, sql_hints: list[str] | None):
    """A function of a file's partition values: False only when the hints rule the file out.
    A hint that cannot be read is dropped, as the protocol allows."""
    trees: list[dict] = []
    if json_hints:
        with contextlib.suppress(ValueError):
            trees.append(json.loads(json_hints))
    for hint in sql_hints or ():
        tree = _from_sql(hint) if isinstance(hint, str) else None
        if tree is not None:
            trees.append(tree)

    def keep(values: dict[str, str | None]) -> bool:
        for tree in trees:
            try:
                if _eval(tree, values) is False:
                    return False
            except (ValueError, KeyError, TypeError, IndexError):
                continue  # an unreadable hint prunes nothing
        return True

    return keep
