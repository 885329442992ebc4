"""prunebench's own import graph, read with ast: no cycle, whether or not the imports
deferred inside functions count, and nothing imports the CLI but the console-script entry
point."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "prunebench"


def modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = p.relative_to(PKG.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def graph(mods: dict[str, Path], deferred: bool = False) -> dict[str, set[str]]:
    """module -> the prunebench modules it imports at module level, or anywhere in it with
    ``deferred`` (``from pkg import sub`` is an edge to ``pkg.sub``; ``from pkg import name``
    an edge to ``pkg``)."""
    g: dict[str, set[str]] = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        seen: set[str] = set()
        tree = ast.parse(path.read_text())
        nodes = list(ast.walk(tree)) if deferred else [
            n for node in tree.body for n in ([node] + (node.body if isinstance(node, (ast.If, ast.Try)) else []))]
        for node in nodes:
            if isinstance(node, ast.Import):
                seen.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in mods]
                seen.update(subs)
                if len(subs) < len(node.names):
                    seen.add(base)
        edges = set()
        for m in seen:
            while m and m not in mods:
                m = m.rpartition(".")[0]
            if m and m != name:
                edges.add(m)
        g[name] = edges
    return g


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
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

    for v in sorted(g):
        if v not in index:
            visit(v)
    return found


def test_the_graph_reader_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_known_edges() -> None:
    g = graph(modules())
    assert "prunebench.pruning.criterion" in g["prunebench.pruning.criteria.wanda"]
    assert "prunebench.pruning.owl" in g["prunebench.pruning.scopes"]
    assert "prunebench.cli" in g["prunebench.__main__"]
    assert "prunebench.report" not in g["prunebench.sweep.launch"]  # the plugins pass write_report
    assert "prunebench.engine.loop" in graph(modules(), deferred=True)["prunebench.engine.batch"]


def test_no_import_cycles() -> None:
    assert cycles(graph(modules())) == []
    assert cycles(graph(modules(), deferred=True)) == []  # not even through imports inside functions


def test_only_the_entry_point_imports_the_cli() -> None:
    g = graph(modules(), deferred=True)
    assert sorted(m for m, deps in g.items() if "prunebench.cli" in deps) == ["prunebench.__main__"]


def test_a_registry_refuses_a_name_its_catalog_lacks() -> None:
    import pytest

    from prunebench import catalog
    from prunebench.pruning.criterion import CRITERIA, register_criterion
    from prunebench.registry import Registry

    with pytest.raises(KeyError, match=r"pruning.method 'not_in_catalog' is not in prunebench.catalog, so no config "
                                       r"could choose it: add it there first"):
        register_criterion("not_in_catalog")(lambda model, targets, ctx: {})
    assert "not_in_catalog" not in CRITERIA
    # every registry entry is a catalog name, and every catalog name has its entry
    from prunebench.pruning.criteria import CRITERIA as ALL  # loads the built-in criteria
    assert set(ALL.names()) == set(catalog.CRITERIA.names())
    reg = Registry("thing", catalog=("a",))
    reg.register("a")(object())
    with pytest.raises(KeyError, match="thing 'b' is not in prunebench.catalog"):
        reg.register("b")(object())
