#!/usr/bin/env python3
"""Bootstrap for a machine that has only Python 3.11+: makes .venv, installs errand, runs it.

    python3 run.py up [errand up options]   start the whole service (embedded Valkey, API, workers)
    python3 run.py test [pytest options]    install the test lock and run the whole test suite
    python3 run.py bench [options]          run the benchmark suite
    python3 run.py lock [uv options]        rewrite requirements/*.lock (e.g. --upgrade-package X)
    python3 run.py <errand command ...>     any other errand command (demo, api, worker, ...)

.venv is installed from a lock file with hashes (requirements/runtime.lock, or
requirements/test.lock for test and bench), then errand itself without dependencies.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"
RUNTIME_LOCK = ROOT / "requirements" / "runtime.lock"
TEST_LOCK = ROOT / "requirements" / "test.lock"  # runtime + test + dev: a superset of runtime
LOCK_TOOL = "uv==0.13.8"  # only `run.py lock` needs it, in a throwaway venv


def _say(message: str) -> None:
    print(f"[run.py] {message}", file=sys.stderr, flush=True)


def _pip_install(python: Path, *args: str) -> None:
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, *args], check=True)


def _lock_digest(lock: Path) -> str:
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + lock.read_bytes()).hexdigest()


def ensure_venv(lock: Path) -> None:
    """Create .venv and (re)install the lock file and errand when either changed."""
    if sys.version_info < (3, 11):  # noqa: UP036 -- run.py runs on the user's python3, before .venv
        sys.exit("errand needs Python 3.11 or newer")
    if not PY.exists():
        _say("creating .venv")
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / ".errand-install"
    installed = stamp.read_text() if stamp.exists() else ""
    good = {_lock_digest(lock)} | ({_lock_digest(TEST_LOCK)} if lock == RUNTIME_LOCK else set())
    if installed in good:
        return
    _say(f"installing {lock.relative_to(ROOT)} and errand into .venv")
    _pip_install(PY, "--require-hashes", "-r", str(lock))
    _pip_install(PY, "--no-deps", "-e", str(ROOT))
    stamp.write_text(_lock_digest(lock))


def write_locks(uv_options: list[str]) -> int:
    """Regenerate both lock files from pyproject.toml with uv, installed in a throwaway venv."""
    with tempfile.TemporaryDirectory() as tmp:
        _say(f"installing {LOCK_TOOL} into a throwaway venv")
        venv.EnvBuilder(with_pip=True).create(tmp)
        py = Path(tmp) / BIN.name / "python"
        _pip_install(py, LOCK_TOOL)
        env = dict(os.environ, UV_CUSTOM_COMPILE_COMMAND="python3 run.py lock")
        compile_ = [str(py), "-m", "uv", "pip", "compile", "pyproject.toml", "--quiet"]
        compile_ += ["--universal", "--python-version", "3.11", "--generate-hashes", *uv_options]
        selections = (  # the test lock first: the runtime lock is constrained to its pins
            (TEST_LOCK, ["--extra", "test", "--extra", "dev"]),
            (RUNTIME_LOCK, ["-c", str(TEST_LOCK.relative_to(ROOT))]),
        )
        for lock, selection in selections:
            out = str(lock.relative_to(ROOT))
            _say(f"writing {out}")
            code = subprocess.call([*compile_, *selection, "-o", out], env=env)
            if code:
                return code
    return 0


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


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM if run.py dies, even SIGKILLed."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def run_child(argv: list[str], forward: tuple[int, ...]) -> int:
    """Run a command and return its exit code, passing the `forward` signals on to it.

    run.py must not die of a signal and leave the child running: `errand up` needs
    the signal itself to stop in order. A terminal's Ctrl-C reaches both processes
    (they share the foreground process group); `errand up` treats a repeated stop
    request as one. Signals not forwarded are ignored here while the child runs.
    """
    child = subprocess.Popen(argv, preexec_fn=_die_with_parent)

    def relay(signum: int, _frame: object) -> None:
        if signum in forward:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, relay)
    code = child.wait()
    return 128 - code if code < 0 else code


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    command, rest = argv[0], argv[1:]
    os.chdir(ROOT)
    if command == "lock":
        return write_locks(rest)
    if command == "test":
        ensure_venv(TEST_LOCK)
        ensure_node_tools()
        ensure_chromium()
        ensure_image_tools(rest)
        # The terminal's Ctrl-C reaches pytest directly; a second one would cut its cleanup.
        code = run_child([str(PY), "-m", "pytest", *rest], forward=(signal.SIGTERM,))
        return 0 if code == 5 and "-m" in rest else code
    if command == "bench":
        ensure_venv(TEST_LOCK)
        return run_child(
            [str(PY), str(ROOT / "bench" / "run.py"), *rest], forward=(signal.SIGTERM,)
        )
    ensure_venv(RUNTIME_LOCK)
    return run_child([str(BIN / "errand"), command, *rest], forward=(signal.SIGINT, signal.SIGTERM))


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
