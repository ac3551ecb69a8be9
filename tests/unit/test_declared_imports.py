"""Every third-party package src/errand imports is declared in pyproject's dependencies.

A package that arrives only as another's dependency (msgpack through bullmq, hiredis
through redis[hiredis]) can vanish or change major version when that other package
is upgraded; declared, it stays in the lock file on its own account.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "errand"


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_distributions() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = (re.match(r"[A-Za-z0-9._-]+", spec) for spec in project["dependencies"])
    return {normalized(m[0]) for m in names if m}


def top_level_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.partition(".")[0])
    return found


def third_party_imports() -> dict[str, set[str]]:
    """Top-level module -> the files under src/errand that import it."""
    users: dict[str, set[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        for module in top_level_imports(path):
            if module not in sys.stdlib_module_names and module != "errand":
                users.setdefault(module, set()).add(str(path.relative_to(ROOT)))
    return users


def test_every_import_is_a_declared_dependency() -> None:
    providers = packages_distributions()
    declared = declared_distributions()
    undeclared = {
        module: sorted(files)
        for module, files in third_party_imports().items()
        if not declared & {normalized(d) for d in providers.get(module, [])}
    }
    assert undeclared == {}, "imported but not in [project] dependencies"


def test_the_scan_sees_the_imports_the_fast_engine_needs() -> None:
    assert {"bullmq", "msgpack", "hiredis", "redis", "uvicorn"} <= set(third_party_imports())
