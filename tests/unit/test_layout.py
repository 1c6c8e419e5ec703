"""The package layout's rules (docs/architecture.md), checked on the source tree.

- no import cycle between modules of `harness` and `algorithms`, imports inside functions counted;
- at most 8 modules directly in `harness/`;
- no module in `harness/` or `algorithms/` over 450 lines;
- typer is imported only under `harness/cli/`.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("harness", "algorithms")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _resolve(target: str, modules: dict[str, Path]) -> str | None:
    """The longest known module that `target` names (a.b.c -> a.b if c is a name in a.b)."""
    while target:
        if target in modules:
            return target
        target = target.rpartition(".")[0]
    return None


def import_graph() -> dict[str, set[str]]:
    """module -> modules it imports (anywhere in its body); a package's __init__ is its own node."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        is_pkg = path.name == "__init__.py"
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if is_pkg else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                targets = [f"{mod}.{a.name}" for a in node.names] + [mod]
            for t in targets:
                dep = _resolve(t, modules)
                if dep is not None and dep != name and not name.startswith(dep + "."):
                    # importing a submodule runs its package's __init__ too; a package importing its own
                    # submodules (re-exports) is not a cycle through the package
                    graph[name].add(dep)
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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


def test_cycle_finder_finds_a_cycle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles (imports inside functions counted): " + "; ".join(" <-> ".join(c) for c in cycles)


def test_at_most_eight_modules_directly_in_harness():
    top = sorted(p.name for p in (ROOT / "harness").glob("*.py"))
    assert len(top) <= 8, top


def test_no_module_over_450_lines():
    long = {str(p.relative_to(ROOT)): n for p in _modules().values() if (n := len(p.read_text().splitlines())) > 450}
    assert not long, long


def test_only_cli_imports_typer():
    users = [m for m, deps in _imports_of_external("typer").items() if deps and not m.startswith("harness.cli")]
    assert not users, users


def _imports_of_external(top: str) -> dict[str, bool]:
    found = {}
    for name, path in _modules().items():
        tree = ast.parse(path.read_text())
        found[name] = any(
            (isinstance(n, ast.Import) and any(a.name.split(".")[0] == top for a in n.names))
            or (isinstance(n, ast.ImportFrom) and not n.level and (n.module or "").split(".")[0] == top)
            for n in ast.walk(tree)
        )
    return found
