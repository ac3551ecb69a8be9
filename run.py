#!/usr/bin/env python3
"""Bootstrap for a machine that has only Python 3.11+: makes .venv, installs errand, runs it.

    python3 run.py up [errand up options]   start the whole service (embedded Valkey, API, workers)
    python3 run.py test [pytest options]    install the test extras and run the whole test suite
    python3 run.py bench [options]          run the benchmark suite
    python3 run.py <errand command ...>     any other errand command (demo, api, worker, ...)
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"


def _say(message: str) -> None:
    print(f"[run.py] {message}", file=sys.stderr, flush=True)


def ensure_venv(extras: str) -> None:
    """Create .venv and (re)install errand when pyproject.toml or the extras changed."""
    if sys.version_info < (3, 11):  # noqa: UP036 -- run.py runs on the user's python3, before .venv
        sys.exit("errand needs Python 3.11 or newer")
    if not PY.exists():
        _say("creating .venv")
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / ".errand-install"
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extras.encode()).hexdigest()
    if stamp.exists() and stamp.read_text() == want:
        return
    _say(f"installing errand{extras} into .venv")
    pip = [str(PY), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}{extras}"], check=True)
    stamp.write_text(want)


def ensure_node_tools() -> None:
    """npm packages the interop tests use (Node BullMQ, standardwebhooks, bull-board)."""
    node_dir = ROOT / "tests" / "node"
    if not (node_dir / "package.json").exists() or shutil.which("npm") is None:
        return
    lock = node_dir / "package-lock.json"
    stamp = node_dir / "node_modules" / ".errand-install"
    want = hashlib.sha256(lock.read_bytes() if lock.exists() else b"").hexdigest()
    if stamp.exists() and stamp.read_text() == want:
        return
    _say("installing npm packages for the interop tests")
    cmd = ["npm", "ci" if lock.exists() else "install", "--no-audit", "--no-fund", "--silent"]
    subprocess.run(cmd, cwd=node_dir, check=True)
    stamp.write_text(want)


def _apt_install(why: str, *packages: str) -> None:
    """apt-get install the packages whose command is missing, when we may install packages."""
    missing = [p for p in packages if shutil.which(p) is None]
    if not missing or shutil.which("apt-get") is None or os.geteuid() != 0:
        return
    _say(f"installing {' '.join(missing)} (apt-get) for {why}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=False, env=env)


def ensure_chromium() -> None:
    """Debian's Chromium for the dashboard's browser test."""
    _apt_install("the browser test", "chromium")


def image_test_requested(pytest_args: list[str]) -> bool:
    """True when these pytest arguments select the container image test (tests/conftest.py
    runs it only then too): `-m image`, its file named, or ERRAND_TEST_IMAGE=1."""
    marks = [expr for flag, expr in itertools.pairwise(pytest_args) if flag == "-m"]
    return (
        os.environ.get("ERRAND_TEST_IMAGE") == "1"
        or any("image" in expr and "not image" not in expr for expr in marks)
        or any("test_container_image" in arg for arg in pytest_args)
    )


def ensure_image_tools(pytest_args: list[str]) -> None:
    """buildah and debootstrap, only when the (minutes-long) container image test is selected."""
    if image_test_requested(pytest_args):
        _apt_install("the container image test", "buildah", "debootstrap")


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    os.chdir(ROOT)
    if command == "test":
        ensure_venv("[test]")
        ensure_node_tools()
        ensure_chromium()
        ensure_image_tools(rest)
        code = subprocess.call([str(PY), "-m", "pytest", *rest])
        return 0 if code == 5 and "-m" in rest else code
    if command == "bench":
        ensure_venv("[test]")
        return subprocess.call([str(PY), str(ROOT / "bench" / "run.py"), *rest])
    ensure_venv("")
    return subprocess.call([str(BIN / "errand"), command, *rest])


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
