"""The exact versions of the libraries whose internals errand relies on, checked at start.

errand reaches past these libraries' public APIs for speed: the fast engine builds
the KEYS/ARGV of bullmq's Lua scripts itself (workers/fastjob.py, fastloop.py), the
API subclasses uvicorn's httptools protocol (api/http_limits.py, http_protocol.py),
and the pipelined client overrides redis-py's connection internals
(queue/pipelined.py). Each was written against one version; another version may
change what they touch without a word, so `errand up`, `api` and `worker` refuse to
start on anything else. tests/unit/test_script_args.py compares the fast engine's
arguments with bullmq's own for the installed version, tests/unit/test_add_args.py the
add-script calls the API builds (queue/addargs.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib.metadata import PackageNotFoundError, version

# distribution -> (version errand was written against, what errand relies on)
PINNED: Mapping[str, tuple[str, str]] = {
    "bullmq": ("3.4.4", "errand's fast engine and add calls (the KEYS/ARGV of its Lua scripts)"),
    "redis": ("8.1.0", "errand's pipelined Redis client (redis-py's connection internals)"),
    "uvicorn": ("0.54.0", "errand's HTTP protocol (uvicorn's HttpToolsProtocol)"),
    "httptools": ("0.9.0", "errand's HTTP protocol (the parser HttpToolsProtocol drives)"),
}
LOCK_HINT = (
    "Install from the lock file: `python3 run.py up` does, or "
    "`pip install --require-hashes -r requirements/runtime.lock`."
)


class PinMismatch(RuntimeError):
    """An installed library is not the version errand's use of its internals was written for."""


def _installed(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def pin_problems(installed: Callable[[str], str | None] = _installed) -> list[str]:
    """One sentence per pinned library whose installed version differs (none when all match)."""
    problems = []
    for dist, (wanted, user) in PINNED.items():
        found = installed(dist)
        if found != wanted:
            problems.append(
                f"{user} was written for {dist} {wanted}; found {found or 'none installed'}."
            )
    return problems


def check_pins(installed: Callable[[str], str | None] = _installed) -> None:
    """Raise PinMismatch, naming every mismatch and the fix, unless all pins match."""
    problems = pin_problems(installed)
    if problems:
        raise PinMismatch("\n".join([*problems, LOCK_HINT]))
