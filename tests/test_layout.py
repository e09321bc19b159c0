"""Layout rules, checked on the source with ast: no import cycle among the package's modules, no
lower layer importing a higher one, no module over 500 lines, no ``sys.path`` edits."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.core

REPO = Path(__file__).resolve().parent.parent
#: folders whose modules are checked for size and sys.path edits
CHECKED = ("edgepose", "compression", "benchmarks", "examples")
MAX_LINES = 500
#: (lower, higher): no module under the first package imports one under the second
LAYERS = [("edgepose.video", "edgepose.eval"), ("edgepose.video", "edgepose.offload"),
          ("edgepose.backends", "edgepose.models"), ("edgepose.offload", "edgepose.eval"),
          ("edgepose.offload", "edgepose.bench"), ("edgepose.offload", "edgepose.server"),
          ("edgepose.models", "edgepose.video"), ("edgepose.models", "edgepose.offload"),
          ("edgepose.protocol", "edgepose.server"), ("edgepose.protocol", "edgepose.offload")]


def _modules() -> dict[str, Path]:
    """Dotted name -> file for edgepose/ and compression/ (installed as edgepose.compression)."""
    out = {}
    for root, prefix in (("edgepose", "edgepose"), ("compression", "edgepose.compression")):
        for f in sorted((REPO / root).rglob("*.py")):
            parts = list(f.relative_to(REPO / root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([prefix, *parts])] = f
    return out


def _imports(name: str, path: Path, known) -> set[str]:
    """The package modules ``name`` imports, at module level or inside functions."""
    tree = ast.parse(path.read_text(), str(path))
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    typing_only = {id(n) for blk in ast.walk(tree) if isinstance(blk, ast.If)
                   and getattr(blk.test, "id", getattr(blk.test, "attr", "")) == "TYPE_CHECKING"
                   for n in ast.walk(blk)}  # annotations only: never imported at run time
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")
                base = ".".join(up[:len(up) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    return {n: _imports(n, p, mods) for n, p in mods.items()}


def _is_package_parent(a: str, b: str) -> bool:
    """``from pkg.sub import x`` also runs ``pkg/__init__``: that edge is not a design dependency."""
    return b.startswith(a + ".") or a.startswith(b + ".")


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    graph = {a: {b for b in bs if not _is_package_parent(a, b)} for a, bs in graph.items()}
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _files():
    for d in CHECKED:
        yield from sorted((REPO / d).rglob("*.py"))


def test_the_package_has_no_import_cycle():
    assert find_cycles(import_graph()) == []


#: Composition roots: they wire the layers together for a one-call setup, so they may import upward.
COMPOSERS = {"edgepose.offload.factory"}  # CloudEdgeRuntime.create(): estimator + embedded server + link


def test_no_lower_layer_imports_a_higher_one():
    bad = [f"{a} imports {b}" for a, bs in sorted(import_graph().items()) if a not in COMPOSERS for b in sorted(bs)
           for low, high in LAYERS if (a == low or a.startswith(low + ".")) and (b == high or b.startswith(high + "."))]
    assert bad == []


def test_no_module_is_over_500_lines():
    long = {str(f.relative_to(REPO)): n for f in _files() if (n := len(f.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_nothing_edits_sys_path():
    edits = []
    for f in [*_files(), *sorted((REPO / "tests").rglob("*.py"))]:
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name) \
                    and node.value.id == "sys":
                edits.append((str(f.relative_to(REPO)), node.lineno))
    edits = [e for e in edits if _mutates(REPO / e[0], e[1])]
    assert edits == []


def _mutates(path: Path, lineno: int) -> bool:
    line = path.read_text().splitlines()[lineno - 1]
    return any(f"sys.path.{m}" in line for m in ("insert", "append", "extend", "remove", "pop", "clear")) \
        or "sys.path[" in line and "=" in line.split("sys.path[", 1)[1] or "sys.path =" in line or "sys.path +=" in line


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"p": {"p.q"}, "p.q": {"p"}}) == []
