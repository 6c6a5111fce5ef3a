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

#: cycles and private imports tolerated for now: none since the redesign (issue 15). The test fails for any
#: other one, and for an entry here that no longer exists (so a list, if one is ever needed, only shrinks)
KNOWN_CYCLES: set[frozenset[str]] = set()
KNOWN_PRIVATE: set[tuple[str, str]] = set()

#: the floors of the package, bottom first (docs/engine.md, "Structure"): a module may import its own floor and
#: the floors below, never one above. Named by the first part below ``trainlab`` ("trainlab" itself: the
#: package's ``__init__``). Modules named ``testing`` (the contract suites and test helpers shipped in the
#: package) stand on the top floor: they may import anything, and nothing in ``trainlab/`` imports them.
FLOORS: list[tuple[str, set[str]]] = [
    ("base", {"errors", "_html", "plotting", "metrics", "runtime", "_rundir", "_command", "_config_tables"}),
    ("engine", {"trainlab", "population", "nn", "optim", "init", "export"}),
    ("around the engine", {"regularize", "second_order", "data", "augment", "schedule", "transfer", "gradcheck"}),
    ("training", {"config", "labels", "train"}),
    ("a run", {"build", "run", "io", "checkpoint", "evaluate", "ensemble"}),
    ("applications", {"diagnose", "search", "experiments", "report", "notebook", "lab"}),
    ("front", {"cli"}),
]
TOP = len(FLOORS)


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


def floor(module: str) -> int:
    """The floor of a module (``TOP`` for the ``testing`` modules)."""
    parts = module.split(".")
    if parts[-1] == "testing":
        return TOP
    first = parts[1] if len(parts) > 1 else "trainlab"
    for i, (_, names) in enumerate(FLOORS):
        if first in names:
            return i
    raise KeyError(f"{module}: its part '{first}' stands on no floor; add it to FLOORS (and the picture in "
                   "docs/engine.md)")


def upward_imports(g: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} ({FLOORS[floor(a)][0] if floor(a) < TOP else 'testing'}) imports {b} "
                  f"({FLOORS[floor(b)][0] if floor(b) < TOP else 'testing'})"
                  for a, bs in g.items() for b in bs if floor(b) > floor(a))


def test_every_import_goes_down_the_floors() -> None:
    g = graph()
    unplaced = []
    for name in g:
        try:
            floor(name)
        except KeyError as e:
            unplaced.append(str(e))
    assert not unplaced, unplaced
    assert not upward_imports(g), upward_imports(g)


def test_the_checker_finds_a_cycle_and_a_private_import() -> None:
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(g) == [frozenset({"a", "b", "c"})]
    assert upward_imports({"trainlab.nn._linear": {"trainlab.train._trainer"}, "trainlab.cli": {"trainlab.nn"},
                           "trainlab.nn.testing": {"trainlab.io"}}) == [
        "trainlab.nn._linear (engine) imports trainlab.train._trainer (training)"]
