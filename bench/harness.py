"""Process plumbing for the benchmarks: servers, child processes, CPU, RSS and machine load.

Everything the bench starts is a child of this process, recorded by pid, and
stopped by pid (SIGTERM, then SIGKILL) when the bench ends, whatever happens.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from errand.server.embedded import EmbeddedValkey, free_port  # noqa: E402
from errand.settings import Durability  # noqa: E402

PY = sys.executable
CLK_TCK = os.sysconf("SC_CLK_TCK")
_STARTED: list[subprocess.Popen[bytes]] = []
_SERVERS: list[EmbeddedValkey] = []
_SCRATCH: list[Path] = []


def scratch_dir(name: str) -> Path:
    """A fresh directory under /tmp, removed when the bench ends."""
    path = Path(tempfile.mkdtemp(prefix=f"errand-bench-{name}-"))
    _SCRATCH.append(path)
    return path


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages, as /proc/loadavg shows them."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def loadavg_1m() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (not its children)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mib(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of one process in MiB."""
    now = peak = 0.0
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                now = int(line.split()[1]) / 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    return now, peak


def children_of(pid: int) -> list[int]:
    """Direct and indirect child pids (via /proc/<pid>/task/*/children)."""
    found: list[int] = []
    queue = [pid]
    while queue:
        parent = queue.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            with contextlib.suppress(OSError):
                kids = [int(k) for k in (task / "children").read_text().split()]
                found.extend(kids)
                queue.extend(kids)
    return found


def start_valkey(name: str) -> EmbeddedValkey:
    """A fresh embedded Valkey (the same binary and flags as `errand up`) on a free port."""
    server = EmbeddedValkey(scratch_dir(f"valkey-{name}"), durability=Durability.NORMAL)
    server.start()
    _SERVERS.append(server)
    return server


def spawn(
    argv: list[str], env: dict[str, str], log: Path, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """A child process whose output goes to `log`; stopped at exit if still running."""
    out = log.open("wb")
    proc = subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=cwd,
        start_new_session=True,
    )
    _STARTED.append(proc)
    return proc


def stop(proc: subprocess.Popen[bytes] | None, timeout_s: float = 15.0) -> None:
    """SIGTERM the process (and its session, which only it and its children share), then SIGKILL."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


@atexit.register
def stop_everything() -> None:
    for proc in reversed(_STARTED):
        stop(proc, 10)
    for server in _SERVERS:
        with contextlib.suppress(Exception):
            server.stop()
    for path in _SCRATCH:  # Valkey data (AOF) and logs: tens of MB a run
        shutil.rmtree(path, ignore_errors=True)


def errand_env(redis_url: str, prefix: str, **extra: str) -> dict[str, str]:
    """The environment of an errand process: errand's defaults (log level included) unless
    `extra` says otherwise; the caller's own ERRAND_* variables never leak in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERRAND_")}
    env.update(
        {
            "ERRAND_REDIS_URL": redis_url,
            "ERRAND_QUEUE_PREFIX": prefix,
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def wait_http(url: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as reply:
            if reply.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200 within {timeout_s:g} s")


def wait_port(port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout_s:g} s")


@dataclass
class Service:
    """A started errand or reference process tree, for RSS and CPU accounting."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int = 0
    log: Path | None = None
    notes: list[str] = field(default_factory=list)

    def pids(self) -> list[int]:
        return [self.proc.pid, *children_of(self.proc.pid)]

    def rss(self) -> list[tuple[int, float, float]]:
        return [(pid, *rss_mib(pid)) for pid in self.pids()]

    def cpu(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids())

    def stop(self) -> None:
        stop(self.proc)


__all__ = [
    "PY",
    "ROOT",
    "Service",
    "children_of",
    "cpu_seconds",
    "errand_env",
    "free_port",
    "loadavg",
    "loadavg_1m",
    "rss_mib",
    "scratch_dir",
    "spawn",
    "start_valkey",
    "stop",
    "wait_http",
    "wait_port",
]
