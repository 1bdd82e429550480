"""The house rules, checked from the code's own imports (``make lint`` runs this).

    python tools/layers.py            # exit 1 and one line per breach

1. **Layers.** Every module belongs to one floor (:data:`FLOORS`, longest name first, so
   ``monitor.renewal.settings`` sits below ``monitor.config`` although ``monitor.renewal`` sits
   above it).  A module imports only from floors below its own, or from its own room (the
   entry of :data:`FLOORS` it matched).  Rooms on one floor are independent of each other.
   Imports inside functions count (they run, later), and so do imports under
   ``if TYPE_CHECKING:`` (a type from above is a dependency on above too).
2. **No circles.** No two modules import each other, directly or around a loop: every import
   counts here, inside functions and for types too.
3. **SQL stays in the store.** ``sqlalchemy``, ``sqlmodel`` and ``alembic`` are imported only by
   ``monitor.store`` (a ``Session`` type under ``TYPE_CHECKING`` elsewhere is a type, not SQL:
   the one place where ``TYPE_CHECKING`` makes a difference).
4. **Extension points are reached through their registry.** Outside ``notifications`` only its
   faces ``base``, ``settings`` and ``registry`` are imported, so a channel module (a new one
   too) is reached through the registry; outside ``monitor.renewal.solvers`` only the package
   itself (:data:`FACES`).
5. **Size.** No module over :data:`MAX_LINES` lines.

The floors are the architecture (docs/architecture.md draws them); change them there first.
A package-level layers contract (import-linter's) cannot place a feature's ``settings`` module
below the configuration while the feature sits above it, which is the point of rule 1's
longest-name match; so this is a small script over :mod:`ast` instead.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("monitor", "checks", "notifications")
MAX_LINES = 300
DATABASE = ("sqlalchemy", "sqlmodel", "alembic")

# Bottom floor first.  Each inner tuple is one floor; each name on it one room (a module or a
# package with everything under it, unless a longer name claims part of it).
FLOORS: tuple[tuple[str, ...], ...] = (
    # the ground: pure rules and the helpers everything may use
    ("checks", "monitor", "monitor.errors", "monitor.files", "monitor.clock", "monitor.aio"),
    # the vocabulary every package speaks, and helpers built on the ground
    ("monitor.results", "monitor.secrets", "monitor.logs", "monitor.certview"),
    # what every settings model is built from
    ("monitor.config.common", "monitor.config.units"),
    # each feature's own settings models, which the configuration file is made of
    (
        "notifications.settings",
        "monitor.alerts.settings",
        "monitor.renewal.settings",
        "monitor.observed.settings",
    ),
    # the alert lifecycle, a pure function of findings and settings like the rules (the store
    # keeps its states), and the tracking policy the configuration derives (its routing table)
    ("monitor.alerts.lifecycle", "monitor.alerts.policy"),
    ("monitor.config", "monitor.examples"),
    # the edges: the network and the notification channels
    ("monitor.probe", "notifications", "monitor.observed"),
    ("monitor.capture", "monitor.store"),
    ("monitor.alerts", "monitor.reports"),
    ("monitor.pipeline",),
    ("monitor.renewal",),
    ("monitor.service", "monitor.demo"),
    ("monitor.cli",),
    ("monitor.__main__",),
)


# A package's faces: outside the package, only these of its modules are imported (the rest,
# every channel module, every solver, is reached through the registry among them).
FACES: dict[str, tuple[str, ...]] = {
    "notifications": ("base", "settings", "registry"),
    "monitor.renewal.solvers": (),  # the package itself: its __init__ is the registry
}


@dataclass(frozen=True)
class Import:
    source: str  # module doing the import
    target: str  # module imported
    path: Path
    line: int
    top_level: bool  # runs at import time
    typing_only: bool  # under ``if TYPE_CHECKING:``


def room(module: str) -> tuple[int, str] | None:
    """The floor and room of ``module``: the longest entry of :data:`FLOORS` it is under."""
    best: tuple[int, str] | None = None
    for floor, names in enumerate(FLOORS):
        for name in names:
            under = module == name or (module.startswith(name + ".") and name != "monitor")
            if under and (best is None or len(name) > len(best[1])):
                best = (floor, name)
    return best


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources(root: Path = ROOT) -> Iterator[Path]:
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if "migrations" not in path.parts:
                yield path


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(path: Path, root: Path = ROOT) -> Iterator[Import]:
    """Every import in ``path``, resolved to absolute module names."""
    source = module_name(path, root)
    package = source if path.name == "__init__.py" else source.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))

    def visit(node: ast.AST, top: bool, typing: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(source, alias.name, path, child.lineno, top, typing)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")[: len(package.split(".")) - child.level + 1]
                    stem = ".".join(base + ([child.module] if child.module else []))
                else:
                    stem = child.module or ""
                # ``from monitor.store import engine`` imports the module monitor.store.engine
                for alias in child.names:
                    full = f"{stem}.{alias.name}"
                    target = full if _exists(full, root) else stem
                    yield Import(source, target, path, child.lineno, top, typing)
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    yield from visit(ast.Module(body=[stmt], type_ignores=[]), top, True)
                for stmt in child.orelse:
                    yield from visit(ast.Module(body=[stmt], type_ignores=[]), top, typing)
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                yield from visit(child, False, typing)
            else:
                yield from visit(child, top, typing)

    yield from visit(tree, True, False)


def _exists(module: str, root: Path) -> bool:
    relative = Path(*module.split("."))
    return (root / relative.with_suffix(".py")).exists() or (root / relative).is_dir()


def ours(module: str) -> bool:
    return module.split(".")[0] in PACKAGES


def check(root: Path = ROOT) -> list[str]:
    """Every breach of the house rules in the tree at ``root``, one line each."""
    breaches: list[str] = []
    graph: dict[str, set[str]] = {}
    where: dict[tuple[str, str], Import] = {}
    for path in sources(root):
        name = module_name(path, root)
        lines = len(path.read_text().splitlines())
        rel = path.relative_to(root)
        if lines > MAX_LINES:
            breaches.append(f"{rel}: {lines} lines, over {MAX_LINES}: split it by responsibility")
        mine = room(name)
        if mine is None:
            breaches.append(f"{rel}: {name} is on no floor: add it to FLOORS in tools/layers.py")
            continue
        graph.setdefault(name, set())
        seen: set[tuple[int, str]] = set()
        for imp in imports(path, root):
            here = f"{rel}:{imp.line}"
            if (imp.line, imp.target) in seen:
                continue
            seen.add((imp.line, imp.target))
            if imp.target.split(".")[0] in DATABASE and not name.startswith("monitor.store"):
                if not imp.typing_only:
                    breaches.append(
                        f"{here}: {name} imports {imp.target}: SQL runs only in monitor.store; "
                        "add a read model or a write there"
                    )
                continue
            if not ours(imp.target):
                continue
            theirs = room(imp.target)
            if theirs is None or theirs[1] == mine[1]:
                pass
            elif theirs[0] >= mine[0]:
                how = "on the same floor as" if theirs[0] == mine[0] else "above"
                breaches.append(
                    f"{here}: {name} imports {imp.target}, which is {how} it "
                    f"({mine[1]} on floor {mine[0] + 1}, {theirs[1]} on floor {theirs[0] + 1}): "
                    "move the shared part down, or pass it in"
                )
            for package, faces in FACES.items():
                inside = name == package or name.startswith(package + ".")
                module = imp.target.removeprefix(package + ".").split(".")[0]
                behind = imp.target.startswith(package + ".") and module not in faces
                if behind and not inside:
                    breaches.append(
                        f"{here}: {name} imports {imp.target}: reach it through the registry "
                        f"of {package}"
                    )
            if imp.target != name:
                graph[name].add(imp.target)
                where[(name, imp.target)] = imp
    for circle in circles(graph):
        first = where[(circle[0], circle[1])]
        ring = " -> ".join([*circle, circle[0]])
        breaches.append(
            f"{first.path.relative_to(root)}:{first.line}: import circle {ring}: "
            "the lower one must not import the higher"
        )
    return breaches


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each as one loop."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(_loop(graph, set(component)))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            strong(v)
    return found


def _loop(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """One loop through ``component``, starting at its first module by name."""
    start = min(component)
    path, seen = [start], {start}
    while True:
        step = sorted(w for w in graph[path[-1]] if w in component)
        if start in step and len(path) > 1:
            return path
        step = [w for w in step if w not in seen] or [start]
        if step[0] == start:
            return path
        path.append(step[0])
        seen.add(step[0])


def main() -> int:
    breaches = check()
    for line in breaches:
        print(line)
    if breaches:
        print(
            f"layers: {len(breaches)} breach(es); the floors are in tools/layers.py",
            file=sys.stderr,
        )
        return 1
    print(
        "layers: every import runs down, no circles, SQL only in the store, no module over "
        f"{MAX_LINES} lines"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
