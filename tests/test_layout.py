"""The package's layout stays walkable: no import cycles (module-level or inside functions), no
``_private`` name used across modules, and each stage imports only from the stages before it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "ml"

# lower stages first; a module may import from its own stage or an earlier one
STAGES = (
    ("ml.errors", "ml._lgb"),
    ("ml.card",),
    ("ml.scorecard",),
    ("ml.data",),
    ("ml.model",),
    ("ml.serving",),
    ("ml.monitor",),  # history, alerts, drift: the report reads the history for its trends
    ("ml.report",),
    ("ml.pipeline",),
    ("ml.cli", "ml.pyfunc", "ml.spark"),
    ("ml",),  # the package's own __init__ re-exports everything
)
# attributes of other libraries that merely look private
ALLOWED_PRIVATE_ATTRIBUTES = {"_asdict", "_fields", "_replace", "_make"}


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text(encoding="utf-8"), str(p)) for p in sorted(PKG.rglob("*.py"))}


def resolve(name: str, known: set[str]) -> str | None:
    """The package module an import refers to (``ml.model.booster.HealthModel`` -> ``ml.model.booster``)."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def imports(tree: ast.Module, known: set[str]) -> list[tuple[str, str, int]]:
    """(imported module, imported name or '', line) for every import of a package module, anywhere."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "ml" and (m := resolve(a.name, known)):
                    out.append((m, "", node.lineno))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "ml":
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                if sub in known:  # `from ml.cli import render` imports a module
                    out.append((sub, "", node.lineno))
                else:
                    out.append((resolve(node.module, known) or node.module, a.name, node.lineno))
    return out


def stage(mod: str) -> int:
    best = None
    for i, prefixes in enumerate(STAGES):
        for p in prefixes:
            if (mod == p or mod.startswith(p + ".")) and (best is None or len(p) > best[1]):
                best = (i, len(p))
    assert best is not None, f"{mod} belongs to no stage; add it to STAGES"
    return best[0]


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (or a self-import), by Tarjan."""
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
            if len(comp) > 1 or v in graph.get(v, ()):
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def private_names_defined(tree: ast.Module) -> set[str]:
    """Private functions, methods and attributes (``x._name = ...``) that a module defines itself."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.name.startswith("_"):
            out.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and node.attr.startswith("_"):
            out.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and node.id.startswith("_"):
            out.add(node.id)
    return out


def graph_of(mods: dict[str, ast.Module]) -> dict[str, set[str]]:
    known = set(mods)
    g: dict[str, set[str]] = {}
    for name, tree in mods.items():
        # a package's __init__ re-exports its children: importing a child is not a cycle through it
        g[name] = {m for m, _, _ in imports(tree, known) if m != name and not m.startswith(name + ".")}
    return g


def test_the_checker_finds_a_cycle():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    cycles = find_cycles(graph_of(modules()))
    assert cycles == [], f"import cycles in ml/: {cycles}"


def test_no_private_names_across_modules():
    mods = modules()
    known = set(mods)
    found = []
    for name, tree in mods.items():
        for mod, imported, line in imports(tree, known):
            if imported.startswith("_") and not imported.startswith("__") and mod != name:
                found.append(f"{name}:{line} imports {mod}.{imported}")
        own = private_names_defined(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and node.attr not in ALLOWED_PRIVATE_ATTRIBUTES
                and node.attr not in own  # a private attribute this module defines itself
            ):
                found.append(f"{name}:{node.lineno} uses {ast.unparse(node.value)}.{node.attr}")
    assert found == [], "private names used across modules:\n" + "\n".join(found)


def test_each_stage_imports_only_from_earlier_stages():
    mods = modules()
    known = set(mods)
    found = []
    for name, tree in mods.items():
        for mod, _, line in imports(tree, known):
            if mod != name and not mod.startswith(name + ".") and stage(mod) > stage(name):
                found.append(f"{name}:{line} imports {mod} (a later stage)")
    assert found == [], "\n".join(found)


@pytest.mark.parametrize("name", ["load_card", "score_table", "train", "load_model", "explain_customer", "demo"])
def test_public_api_imports_from_ml(name):
    import ml

    assert callable(getattr(ml, name))
    assert name in dir(ml) and name in ml.__all__
