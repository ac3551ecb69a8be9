"""errand as real OS processes: `errand up`, `errand worker`, `errand api` subprocesses.

Every process is started by the test, logs to a file under the test's tmp dir, and is
stopped by its own pid (never by name). `/proc` gives the process tree and RSS, so a
test can prove that nothing it started outlives it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from errand.settings import Settings
from support.stack import FAST_DEFAULTS
from support.waiting import wait_sync


def settings_env(**values: Any) -> dict[str, str]:
    """`ERRAND_*` variables for Settings keyword values; a None value sets nothing."""
    env = {}
    for name, value in values.items():
        if value is None:
            continue
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        env[f"ERRAND_{name.upper()}"] = text
    return env


def env_for(settings: Settings, **overrides: Any) -> dict[str, str]:
    """The environment that makes a subprocess build the same Settings (plus `overrides`)."""
    values: dict[str, Any] = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, Enum):
            value = value.value
        values[name] = value
    values.update(overrides)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERRAND_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(settings_env(**values))
    return env


def errand_env(**values: Any) -> dict[str, str]:
    """The parent's environment without any ERRAND_* variable, plus fast test settings.

    Subprocesses run with `ERRAND_AUTH=none` and no rate limit unless a test asks: the
    tests of `errand up` and friends are about processes (they poll fast), and
    tests/e2e/test_api_keys.py covers keys across processes.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERRAND_")}
    env["PYTHONUNBUFFERED"] = "1"
    quiet = {"auth": "none", "rate_limit_per_second": 0}
    env.update(settings_env(**{**FAST_DEFAULTS, **quiet, **values}))
    return env


# --- /proc helpers -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProcInfo:
    pid: int
    ppid: int
    start_ticks: int
    state: str
    cmdline: str


def proc_info(pid: int) -> ProcInfo | None:
    """The process as /proc shows it now, or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        raw_cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name is in parentheses and may contain spaces: split after the last ')'.
    rest = stat[stat.rindex(")") + 2 :].split()
    cmdline = raw_cmd.replace(b"\0", b" ").decode(errors="replace").strip()
    return ProcInfo(pid, int(rest[1]), int(rest[19]), rest[0], cmdline)


def descendants(pid: int) -> list[ProcInfo]:
    """Every live process below `pid` (children, grandchildren, ...)."""
    infos = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            info = proc_info(int(entry.name))
            if info is not None:
                infos.append(info)
    children: dict[int, list[ProcInfo]] = {}
    for info in infos:
        children.setdefault(info.ppid, []).append(info)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child.pid)
    return found


def still_running(info: ProcInfo) -> bool:
    """True while the very process `info` describes lives (a reused pid does not count)."""
    now = proc_info(info.pid)
    return now is not None and now.start_ticks == info.start_ticks and now.state != "Z"


def rss_bytes(pid: int) -> int:
    """Resident set size of one process (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except FileNotFoundError:
        pass
    return 0


# --- processes -----------------------------------------------------------------------


@dataclass
class ErrandProcess:
    """One errand subprocess started by a test."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    info: ProcInfo | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def send(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def wait(self, timeout_s: float) -> int:
        return self.popen.wait(timeout_s)

    def kill(self) -> int:
        """SIGKILL and reap."""
        self.send(signal.SIGKILL)
        return self.popen.wait(10)

    def terminate(self, timeout_s: float = 30.0) -> int:
        """SIGTERM; SIGKILL if it has not exited within `timeout_s`. Returns the exit code."""
        self.send(signal.SIGTERM)
        try:
            return self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return self.kill()


@dataclass
class Processes:
    """Starts errand subprocesses and, at teardown, stops every one still running (by pid)."""

    log_dir: Path
    started: list[ErrandProcess] = field(default_factory=list)
    tree: dict[int, ProcInfo] = field(default_factory=dict)
    _serial: int = 0

    def spawn(self, name: str, args: list[str], env: Mapping[str, str]) -> ErrandProcess:
        return self.run(name, [sys.executable, "-m", "errand", *args], env)

    def run(
        self, name: str, argv: list[str], env: Mapping[str, str], cwd: Path | None = None
    ) -> ErrandProcess:
        """Start any command in a session of its own (its pid is its process group)."""
        self._serial += 1
        log_path = self.log_dir / f"{self._serial:03d}-{name}.log"
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                argv,
                env=dict(env),
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc = ErrandProcess(name, popen, log_path)
        proc.info = proc_info(popen.pid)
        self.started.append(proc)
        return proc

    def up(self, port: int, env: Mapping[str, str], *extra: str) -> ErrandProcess:
        return self.spawn("up", ["up", "--port", str(port), *extra], env)

    def worker(self, env: Mapping[str, str], *extra: str, name: str = "worker") -> ErrandProcess:
        return self.spawn(name, ["worker", *extra], env)

    def api(self, port: int, env: Mapping[str, str], *extra: str) -> ErrandProcess:
        return self.spawn("api", ["api", "--port", str(port), *extra], env)

    def remember_tree(self, proc: ErrandProcess) -> list[ProcInfo]:
        """Record the processes below `proc` now, so teardown can prove they are gone."""
        below = descendants(proc.pid)
        for info in below:
            self.tree[info.pid] = info
        return below

    def leftovers(self) -> list[ProcInfo]:
        """Recorded processes (and started ones) that still run."""
        known = list(self.tree.values()) + [p.info for p in self.started if p.info]
        return [info for info in known if still_running(info)]

    def stop_all(self) -> None:
        for proc in self.started:
            if proc.alive:
                proc.terminate(timeout_s=15)
        for info in self.leftovers():
            with contextlib.suppress(ProcessLookupError):
                os.kill(info.pid, signal.SIGKILL)


def http_status(url: str, timeout_s: float = 2.0) -> int | None:
    """The status of a GET, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return None


def wait_ready(base_url: str, proc: ErrandProcess | None = None, timeout_s: float = 60.0) -> None:
    """Wait until `{base_url}/readyz` answers 200; fail early if `proc` exits."""

    def probe() -> int | None:
        if proc is not None and not proc.alive:
            tail = proc.log()[-4000:]
            raise AssertionError(f"{proc.name} exited with {proc.returncode}:\n{tail}")
        return http_status(f"{base_url}/readyz", timeout_s=1.0)

    wait_sync(probe, lambda status: status == 200, timeout_s=timeout_s, what=f"{base_url}/readyz")


def wait_log(proc: ErrandProcess, text: str, timeout_s: float = 60.0) -> str:
    """Wait until `text` shows in the process's output; returns the whole output."""

    def probe() -> str:
        out = proc.log()
        if text not in out and not proc.alive:
            raise AssertionError(f"{proc.name} exited with {proc.returncode}:\n{out[-4000:]}")
        return out

    return wait_sync(probe, lambda out: text in out, timeout_s=timeout_s, what=repr(text))


@contextlib.contextmanager
def processes(log_dir: Path) -> Iterator[Processes]:
    procs = Processes(log_dir)
    try:
        yield procs
    finally:
        procs.stop_all()


def elapsed_since(start: float) -> float:
    return time.monotonic() - start


READY_LINE = " started on "  # what `errand worker` logs once its BullMQ workers run


@dataclass
class WorkerPool:
    """N `errand worker` processes that a chaos test kills at random and restarts.

    `kills` counts the SIGKILLs the test sent; `crashes` the exits it did not cause
    (fault injection: a worker SIGKILLing itself); `restarts` the replacements started.
    """

    procs: Processes
    env: Mapping[str, str]
    size: int
    args: tuple[str, ...] = ()
    workers: list[ErrandProcess] = field(default_factory=list)
    kills: int = 0
    crashes: int = 0
    restarts: int = 0
    min_ready_s: float = 0.25
    _killed: set[int] = field(default_factory=set)
    _ready_since: dict[int, float] = field(default_factory=dict)

    def start(self) -> None:
        for n in range(self.size):
            self.workers.append(self.procs.worker(self.env, *self.args, name=f"worker{n}"))

    @property
    def pids(self) -> list[int]:
        return [w.pid for w in self.workers if w.alive]

    def kill_random(self, rng: Any, among: Collection[int] | None = None) -> ErrandProcess | None:
        """SIGKILL a random worker (one whose pid is in `among`, if given) that has been
        taking jobs for `min_ready_s` (a kill during start-up would only test Python's
        import time, and kills faster than start-ups would stop all progress); None when no
        such worker is there yet."""
        now = time.monotonic()
        alive = [
            worker
            for worker in self.workers
            if worker.alive
            and (among is None or worker.pid in among)
            and READY_LINE in worker.log()
            and now - self._ready_since.setdefault(worker.pid, now) >= self.min_ready_s
        ]
        if not alive:
            return None
        victim = rng.choice(alive)
        self._killed.add(victim.pid)
        victim.send(signal.SIGKILL)
        self.kills += 1
        return victim

    def revive(self) -> int:
        """Replace every worker that exited; returns how many were replaced."""
        replaced = 0
        for n, worker in enumerate(self.workers):
            code = worker.returncode
            if code is None:
                continue
            if worker.pid not in self._killed:
                self.crashes += 1
            self.workers[n] = self.procs.worker(self.env, *self.args, name=f"worker{n}")
            self.restarts += 1
            replaced += 1
        return replaced

    def stop(self, timeout_s: float = 30.0) -> list[int]:
        """SIGTERM every worker once it runs (a restarted one may still be importing and
        would die of the signal before its handler exists); their exit codes. A worker
        the last chaos tick SIGKILLed may not have exited yet: it is not asked again."""
        codes = []
        for worker in self.workers:
            if worker.pid in self._killed:
                continue
            wait_sync(
                lambda w=worker: READY_LINE in w.log() or not w.alive,
                timeout_s=timeout_s,
                what=f"{worker.name} to finish starting",
            )
            if worker.alive:
                codes.append(worker.terminate(timeout_s))
        return codes
