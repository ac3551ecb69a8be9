"""Lint, format and types are part of the test suite, so `python3 run.py test` enforces them.

ruff and mypy come from requirements/test.lock, so every machine runs the same
versions with the same rules (pyproject's [tool.ruff] and [tool.mypy]).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CODE = ["src", "tests", "bench", "run.py"]


def run_tool(*argv: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"{' '.join(argv)} found problems:\n{done.stdout}{done.stderr}"


def test_ruff_check() -> None:
    run_tool("ruff", "check", "--no-cache", *CODE)


def test_ruff_format() -> None:
    run_tool("ruff", "format", "--check", "--no-cache", *CODE)


def test_mypy_strict() -> None:
    run_tool("mypy", "--strict", "src")
