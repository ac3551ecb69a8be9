"""One supervised child process of `errand up`: spawn, stderr tail, restart backoff, stop."""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import IO

_PR_SET_PDEATHSIG = 1
TAIL_LINES = 12
BACKOFF_FIRST_S = 1.0
BACKOFF_CAP_S = 30.0
STABLE_AFTER_S = 60.0  # a child that ran this long before it crashed starts afresh at 1 s
STARTUP_WINDOW_S = 10.0  # a worker that dies this soon after its first start never started


def die_with_parent() -> None:
    """Linux: the child gets SIGTERM if the supervisor dies (even SIGKILLed): no orphans."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _copy_lines(source: IO[bytes], tail: deque[str]) -> None:
    """Pass a child's stderr through to ours, keeping the last lines to explain an exit."""
    with contextlib.suppress(OSError, ValueError):
        for line in source:
            tail.append(line.decode(errors="replace").rstrip())
            sys.stderr.buffer.write(line)
            sys.stderr.buffer.flush()


@dataclass
class Child:
    """A part of the service (the API or one worker) and what its supervisor knows of it."""

    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    ever_ready: bool = False
    failures: int = 0  # crashes in a row, for the backoff
    restart_at: float | None = None
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    _reader: threading.Thread | None = None

    def spawn(self, env: dict[str, str]) -> None:
        """Start in a session of its own, so a terminal's Ctrl-C reaches only the supervisor."""
        self.process = subprocess.Popen(
            self.argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        assert self.process.stderr is not None
        self._reader = threading.Thread(
            target=_copy_lines,
            args=(self.process.stderr, self.tail),
            name=f"stderr-{self.name}",
            daemon=True,
        )
        self._reader.start()
        self.started_at = time.monotonic()
        self.restart_at = None

    @property
    def exit_code(self) -> int | None:
        """None while it runs (or was never started)."""
        return None if self.process is None else self.process.poll()

    def reason(self) -> str:
        """Why it exited: its exit status and the last lines it wrote to stderr."""
        if self._reader is not None:
            self._reader.join(timeout=2)  # let the last lines arrive
        lines = "\n".join(f"    {line}" for line in self.tail) or "    (no output on stderr)"
        return f"{self.name} exited with {self.exit_code}; its last lines on stderr:\n{lines}"

    def schedule_restart(self, now: float) -> float:
        """After a crash: back off 1 s, 2 s, 4 s ... up to 30 s; a long good run resets it."""
        if now - self.started_at >= STABLE_AFTER_S:
            self.failures = 0
        delay = min(BACKOFF_FIRST_S * 2.0**self.failures, BACKOFF_CAP_S)
        self.failures += 1
        self.restart_at = now + delay
        return delay

    def send_stop(self) -> None:
        """SIGTERM, which the API and workers answer with their graceful shutdown."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)

    def wait_stopped(self, deadline: float) -> None:
        """Wait until it exits, SIGKILLing it at `deadline` (a monotonic time)."""
        proc = self.process
        if proc is None:
            return
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
