"""The layering of docs/architecture.md, checked on the real imports of src/hybridface.

Every ``import``/``from ... import`` of a hybridface module counts, also the lazy ones inside
functions (they run sooner or later). A module may import its own package, any lower layer and
another package of its own layer; never a higher layer, and no two modules or packages may import
each other, however indirectly. The layer table is read from docs/architecture.md, so the picture
and this test cannot drift apart. Also: no source module over 400 lines.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "hybridface"
MAX_LINES = 400


def layers_from_docs() -> dict[str, int]:
    """``{package or top-level module: layer}`` from the "Layers" table of docs/architecture.md."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    out: dict[str, int] = {}
    for m in re.finditer(r"^\|\s*(\d+)\s*\|[^|]*\|([^|]*)\|", text, flags=re.M):
        for name in re.findall(r"`([a-z_]+)`", m.group(2)):
            out[name] = int(m.group(1))
    return out


def modules() -> dict[str, Path]:
    out = {}
    for p in SRC.rglob("*.py"):
        parts = p.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def import_graph() -> dict[str, set[str]]:
    mods = modules()

    def resolve(name: str) -> str:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        targets = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets |= {resolve(a.name) for a in node.names if a.name.startswith("hybridface")}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
                if base.startswith("hybridface"):
                    targets |= {resolve(f"{base}.{a.name}") for a in node.names}
        graph[name] = targets - {name, ""}
    return graph


def unit(module: str) -> str:
    """The layer unit of a module: its sub-package, or the top-level module's own name."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_layer_table_names_every_package():
    table = layers_from_docs()
    units = {unit(m) for m in modules()} - {"__init__"}
    assert units <= set(table), f"not in the Layers table of docs/architecture.md: {sorted(units - set(table))}"


def test_no_upward_import():
    table = layers_from_docs()
    bad = []
    for src, targets in import_graph().items():
        if unit(src) == "__init__":  # the package's lazy re-exports are names, not imports
            continue
        for dst in targets:
            a, b = unit(src), unit(dst)
            if a != b and b != "__init__" and table[b] > table[a]:
                bad.append(f"{src} (layer {table[a]}) imports {dst} (layer {table[b]})")
    assert not bad, "upward imports:\n" + "\n".join(sorted(bad))


def test_no_import_cycle_between_modules_or_packages():
    graph = import_graph()
    assert cycles(graph) == [], "module import cycles"
    packages: dict[str, set[str]] = {}
    for src, targets in graph.items():
        packages.setdefault(unit(src), set()).update(unit(t) for t in targets if unit(t) != unit(src))
    packages.pop("__init__", None)
    assert cycles(packages) == [], "package import cycles"


def test_the_check_catches_a_cycle_and_an_upward_edge():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    table = layers_from_docs()
    assert table["gallery"] < table["models"] < table["api"] < table["cli"]  # so models -> api is upward


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_no_source_module_over_400_lines(path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(ROOT)} has {n} lines (split it by job)"
