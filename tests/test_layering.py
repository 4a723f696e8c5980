"""The layering of DESIGN: which package may import which, no SQL in bot/, and no import circles."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bot", "cli", "core", "handlers", "cards", "jobs")
PLATFORM_LIBS = ("aiohttp", "jinja2", "matplotlib", "wechatpy", "dingtalk_stream", "yarl")

# package -> packages (ours or third-party top-level names) it must never import
FORBIDDEN = {
    "core": ("bot", "cli", "handlers", "cards", "jobs", *PLATFORM_LIBS),
    "handlers": ("bot", "cli", "jobs", "aiohttp", "wechatpy", "dingtalk_stream"),
    "jobs": ("bot", "cli", "handlers", "aiohttp", "wechatpy", "dingtalk_stream"),
    "cards": ("bot", "cli", "core", "handlers", "jobs", "aiohttp", "wechatpy", "dingtalk_stream"),
    "bot": ("cli",),
}
# bot/ knows wire formats, not tables: it may name a session type and catch a driver error, never build SQL.
BOT_SQLALCHEMY_ALLOWED = ("sqlalchemy.ext.asyncio", "sqlalchemy.exc")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" not in path.parts:
                found[module_name(path)] = path
    return found


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """Every module name an import statement in `path` names (anywhere in the file, functions included);
    `from pkg import name` counts as pkg.name when that is a module of ours."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in known)
    return out


KNOWN = modules()
GRAPH = {name: imports(path, KNOWN) for name, path in KNOWN.items()}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_a_package_imports_nothing_it_must_not(package: str) -> None:
    bad = sorted(f"{mod} imports {imp}" for mod, imps in GRAPH.items() if mod.split(".")[0] == package
                 for imp in imps if imp.split(".")[0] in FORBIDDEN[package])
    assert bad == []


def test_bot_builds_no_sql() -> None:
    bad = sorted(f"{mod} imports {imp}" for mod, imps in GRAPH.items() if mod.startswith("bot")
                 for imp in imps if imp.split(".")[0] == "sqlalchemy" and not imp.startswith(BOT_SQLALCHEMY_ALLOWED))
    assert bad == []


def test_the_speed_code_is_reached_only_through_core_storage() -> None:
    inner = ("core.storage.fastsql", "core.storage.orm_rows", "core.storage.raw_reader", "core.storage.sqlite_driver",
             "core.storage.writer_thread", "core.storage.database")
    bad = sorted(f"{mod} imports {imp}" for mod, imps in GRAPH.items() if not mod.startswith("core.storage")
                 for imp in imps if imp in inner)
    assert bad == []


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), edges among our modules only."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v] & graph.keys()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circles() -> None:
    # A package's __init__ re-exporting its own submodules (and they naming the package) is not a circle of
    # concepts: the edges between a package and its own submodules are left out.
    graph = {m: {i for i in imps if not (i.startswith(m + ".") or m.startswith(i + "."))} for m, imps in GRAPH.items()}
    assert cycles(graph) == []


def test_the_checker_sees_a_circle_and_a_forbidden_import() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert "aiohttp" in imports(ROOT / "bot" / "server.py", KNOWN)
    assert "core.messaging.people" in imports(ROOT / "bot" / "console.py", KNOWN)  # `from core.messaging import people`
