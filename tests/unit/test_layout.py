"""The package reads as layers: each module imports only its own layer and those below, no
module imports a cycle, no module reaches into another's private names, and modules and
classes stay small enough to read."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from jobs.config import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "jobs"
# Lowest first. Data flows up: sources -> stages -> lake -> jobs; the dev kit, the benchmarks
# and the command line sit on top of what runs on a cluster.
LAYERS = [
    ("jobs.errors", "jobs.contract", "jobs.countries", "jobs.options", "jobs.config", "jobs.jvm"),
    ("jobs.session",),
    ("jobs.sources", "jobs.delta", "jobs"),  # the package root registers the two data sources
    ("jobs.stages",),
    ("jobs.lake", "jobs.ops"),
    ("jobs.ingest", "jobs.replay", "jobs.maintain", "jobs.publish", "jobs.erase", "jobs.share"),
    ("jobs.devkit", "jobs.bench"),
    ("jobs.cli", "jobs.__main__"),
]
MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 200


def _name(path: Path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _layer(module: str) -> int:
    best, rank = -1, -1
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), i
    assert rank >= 0, f"{module} is in no layer: add it to LAYERS"
    return rank


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(module: str) -> list[tuple[str, list[str], int]]:
    """(imported module, names taken from it, line) of every ``jobs`` import that runs, at any
    depth (function-level imports too; ``if TYPE_CHECKING:`` blocks do not run)."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    found: list[tuple[str, list[str], int]] = []

    def visit(node: ast.AST) -> None:
        if _type_checking(node):
            return
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "jobs" or node.module.startswith("jobs."):
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    target = sub if sub in MODULES else node.module
                    found.append((target, [] if sub in MODULES else [alias.name], node.lineno))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("jobs"):
                    found.append((alias.name, [], node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def test_every_module_imports_only_its_layer_and_below() -> None:
    upward = [
        f"{module}:{line} imports {target}"
        for module in MODULES
        for target, _, line in _imports(module)
        if _layer(target) > _layer(module)
    ]
    assert upward == []


def test_no_import_cycles() -> None:
    graph = {m: {t for t, _, _ in _imports(m) if t in MODULES and t != m} for m in MODULES}
    cycles, done = [], set()

    def walk(node: str, path: list[str]) -> None:
        if node in path:
            cycles.append(path[path.index(node) :] + [node])
            return
        if node in done:
            return
        for nxt in sorted(graph[node]):
            walk(nxt, [*path, node])
        done.add(node)

    for module in sorted(graph):
        walk(module, [])
    assert cycles == []


def test_no_module_takes_another_modules_private_names() -> None:
    reached = [
        f"{module}:{line} takes {name} from {target}"
        for module in MODULES
        for target, names, line in _imports(module)
        for name in names
        if name.startswith("_") and not name.startswith("__") and target != module
    ]
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        imported = {
            (alias.asname or alias.name)
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jobs")
            for alias in node.names
        }
        reached += [
            f"{module}:{node.lineno} reads {node.value.id}.{node.attr}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in imported
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ]
    assert reached == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_and_classes_stay_small(module: str) -> None:
    text = MODULES[module].read_text(encoding="utf-8")
    assert text.count("\n") <= MAX_MODULE_LINES, f"{module}: split it by concern"
    big = [
        f"{node.name}: {node.end_lineno - node.lineno + 1} lines"
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.ClassDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES
    ]
    assert big == []


def test_the_layer_test_sees_an_upward_import(tmp_path) -> None:
    """The checks above can fail: a stage importing a job is found."""
    tree = ast.parse("from jobs.ingest.batch import Ingest\n")
    node = tree.body[0]
    assert isinstance(node, ast.ImportFrom)
    assert _layer(node.module or "") > _layer("jobs.stages.decode")
