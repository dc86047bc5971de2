"""The report's charts: matplotlib figures drawn offline as inline SVG (no pyplot state, so
charts can be drawn from any thread, and no network when the HTML is opened)."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

WIDTH, HEIGHT = 9.0, 3.2


def _figure() -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH, HEIGHT), layout="constrained")
    return fig, fig.add_subplot()


def _svg(fig: Any) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg")
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # the element alone, for inlining


def lines(series: Mapping[str, tuple[Sequence[datetime], Sequence[float]]], ylabel: str) -> str:
    """One line per series over time ("" when there is none)."""
    if not any(len(y) for _, y in series.values()):
        return ""
    fig, ax = _figure()
    for name, (x, y) in series.items():
        ax.plot(list(x), list(y), marker=".", linewidth=1.2, label=name)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if 1 < len(series) <= 12:
        ax.legend(fontsize="small", ncols=min(4, len(series)))
    fig.autofmt_xdate()
    return _svg(fig)


def stacked_bars(labels: Sequence[str], stacks: Mapping[str, Sequence[float]], ylabel: str) -> str:
    """Bars per label, each split into the stacks' parts ("" when there are none)."""
    if not labels:
        return ""
    fig, ax = _figure()
    bottom = [0.0] * len(labels)
    for name, values in stacks.items():
        ax.bar(list(labels), list(values), bottom=bottom, label=name)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    if stacks:
        ax.legend(fontsize="small", ncols=min(4, len(stacks)))
    if len(labels) > 12:
        ax.tick_params(axis="x", labelrotation=90, labelsize="x-small")
    return _svg(fig)


def bars(values: Mapping[str, float], xlabel: str) -> str:
    """Horizontal bars, largest on top ("" when there are none)."""
    items = sorted(values.items(), key=lambda kv: kv[1])
    if not any(v for _, v in items):
        return ""
    fig, ax = _figure()
    ax.barh([k for k, _ in items], [v for _, v in items], color="#4c72b0")
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", alpha=0.3)
    ax.tick_params(axis="y", labelsize="small")
    return _svg(fig)
