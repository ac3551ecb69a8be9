"""The package's layers: imports point down only, packages form no cycle, bullmq stays put.

The table below is the one statement of the layers; docs/architecture.md draws the
same picture. A module imports only from its own layer or below.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "errand"

# Top to bottom. Each entry is a top-level module or package under errand/.
LAYERS: list[set[str]] = [
    {"cli", "__main__", "client"},  # client: the users' side; its own test keeps it server-free
    {"server", "api", "demo"},
    {"engine", "processors"},
    {"webhooks", "mail"},
    {"queue", "metrics", "access"},  # access: clients, API keys and per-client limits
    {
        "redisio",
        "settings",
        "keys",
        "jobids",
        "statuses",
        "errors",
        "clock",
        "logs",
        "gc_tuning",
        "secrets_store",
        "pins",
        "tracing",
        "__init__",
    },
]

# bullmq is imported only by the queue model (facade, QueueEvents reader, DLQ, scripts)
# and the engine (which drives BullMQ's scripts and Worker).
BULLMQ_HOMES = {"queue", "engine"}


def _unit(module: str) -> str:
    """`errand.api.routes.jobs` -> `api`; `errand` -> `__init__`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _rank(unit: str) -> int:
    for rank, layer in enumerate(LAYERS):
        if unit in layer:
            return rank
    raise AssertionError(f"errand.{unit} is in no layer: add it to LAYERS")


def _modules() -> dict[str, ast.Module]:
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text(), str(path))
    return found


MODULES = _modules()


def _imports(tree: ast.Module) -> set[str]:
    """The modules `tree` imports (`from errand import gc_tuning` imports errand.gc_tuning)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(
                f"{node.module}.{alias.name}"
                for alias in node.names
                if f"{node.module}.{alias.name}" in MODULES
            )
    return names


def _errand_imports(tree: ast.Module) -> set[str]:
    return {name for name in _imports(tree) if name == "errand" or name.startswith("errand.")}


def test_every_module_is_in_a_layer() -> None:
    for name in MODULES:
        _rank(_unit(name))


def test_imports_point_down_only() -> None:
    upward = []
    for name, tree in MODULES.items():
        here = _unit(name)
        for imported in _errand_imports(tree):
            there = _unit(imported)
            if _rank(there) < _rank(here):
                upward.append(f"{name} imports {imported} ({here} is below {there})")
    assert not upward, "\n".join(sorted(upward))


def test_packages_form_no_cycle() -> None:
    edges: dict[str, set[str]] = defaultdict(set)
    for name, tree in MODULES.items():
        for imported in _errand_imports(tree):
            here, there = _unit(name), _unit(imported)
            if here != there:
                edges[here].add(there)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        ahead = edges[start] - seen
        return any(nxt == goal or reaches(nxt, goal, seen | {nxt}) for nxt in ahead)

    cycles = sorted(unit for unit in list(edges) if reaches(unit, unit, set()))
    assert not cycles, f"packages in an import cycle: {cycles}"


def test_bullmq_is_imported_only_by_the_queue_model_and_the_engine() -> None:
    outside = sorted(
        name
        for name, tree in MODULES.items()
        if _unit(name) not in BULLMQ_HOMES
        and any(i == "bullmq" or i.startswith("bullmq.") for i in _imports(tree))
    )
    assert not outside, f"bullmq imported outside {sorted(BULLMQ_HOMES)}: {outside}"
