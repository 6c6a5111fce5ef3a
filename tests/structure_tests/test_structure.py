"""The package's structure: no import cycle inside ``trainlab/``, no private name of another package.

Every ``import`` statement counts, also those inside functions (a local import hides a dependency;
it does not remove it). A module depends on the module it imports from; ``from pkg import name``
depends on ``pkg.name`` when that is a module, else on ``pkg`` (its ``__init__``).

"Private": a module path or name with a leading underscore (``trainlab.nn._linear``, ``_build``).
A module may use the private parts of its own package (``trainlab/nn/*`` -> ``trainlab.nn._linear``)
and of packages below it, but not of a sibling or parent package: those import the public name
from the package's ``__init__``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "trainlab"

#: cycles and private imports that exist today and that the redesign (issue 15) removes; the test
#: fails for any *other* one, and for an entry here that no longer exists (so the list only shrinks)
KNOWN_CYCLES: set[frozenset[str]] = {
    frozenset({"trainlab.cli", "trainlab.diagnose.cli", "trainlab.report.cli"}),
}
KNOWN_PRIVATE: set[tuple[str, str]] = {
    ("trainlab.cli", "trainlab.search._cli"),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in ROOT.rglob("*.py")}


def imports(name: str, path: Path, known: set[str]) -> list[str]:
    """The trainlab modules ``name`` imports (every import statement, also function-local)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name.startswith("trainlab")]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")
                up = up[: len(up) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            if not base.startswith("trainlab"):
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                out.append(sub if sub in known else base)
    return [m for m in out if m in known and m != name]


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: set(imports(name, path, known)) for name, path in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[frozenset[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(frozenset(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def private_imports(g: dict[str, set[str]]) -> set[tuple[str, str]]:
    bad = set()
    mods = modules()
    for name, path in mods.items():
        own = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("trainlab"):
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names
                                           if not any(q.startswith("_") for q in node.module.split("."))]
            for t in targets:
                if not t.startswith("trainlab"):
                    continue
                parts = t.split(".")
                for i, part in enumerate(parts):
                    if part.startswith("_") and not part.startswith("__"):
                        owner = ".".join(parts[:i])  # the package whose private part this is
                        if not (own == owner or own.startswith(owner + ".")):
                            bad.add((name, t))
                        break
    return bad


def test_no_import_cycle() -> None:
    found = set(cycles(graph()))
    new = [sorted(c) for c in found - KNOWN_CYCLES]
    gone = [sorted(c) for c in KNOWN_CYCLES - found]
    assert not new, f"import cycles inside trainlab/: {new}"
    assert not gone, f"these known cycles are gone: remove them from KNOWN_CYCLES: {gone}"


def test_no_private_name_of_another_package() -> None:
    found = private_imports(graph())
    new = sorted(found - KNOWN_PRIVATE)
    gone = sorted(KNOWN_PRIVATE - found)
    assert not new, f"modules importing another package's private names: {new}"
    assert not gone, f"these are fixed: remove them from KNOWN_PRIVATE: {gone}"


def test_the_checker_finds_a_cycle_and_a_private_import() -> None:
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(g) == [frozenset({"a", "b", "c"})]
