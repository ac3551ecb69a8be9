"""What `errand up` checks before it starts anything: the data dir is ours, the API port is free."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from pathlib import Path

LOCK_FILE = "errand-up.lock"
HOLDER_PID_WAIT_S = 1.0  # the holder writes its pid just after it locks


class StartupError(Exception):
    """`errand up` cannot start (or a part of it could not); the message says why."""


class DataDirLock:
    """An exclusive `flock` on the data dir's lock file, held while `errand up` runs.

    Two `errand up` on one data dir would run two Valkeys on one AOF and corrupt it.
    The kernel drops the lock when the holder dies, however it dies, so a stale lock
    file never blocks a restart; the pid inside is only there to name the holder.
    """

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock and write our pid. Raises StartupError naming the holder's pid."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)  # not inherited by children
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StartupError(
                f"another errand up (pid {self._holder_pid()}) is running on data directory "
                f"{self.path.parent}; stop it first or use another ERRAND_DATA_DIR"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def _holder_pid(self) -> str:
        deadline = time.monotonic() + HOLDER_PID_WAIT_S
        while True:
            with contextlib.suppress(OSError):
                text = self.path.read_text().strip()
                if text or time.monotonic() > deadline:
                    return text or "unknown"
            time.sleep(0.02)

    def release(self) -> None:
        """Empty the pid and drop the lock (closing the file drops the flock)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)
        self._fd = None


def check_port_free(host: str, port: int) -> None:
    """Bind host:port once, as uvicorn will, so a busy port fails before anything starts.

    Without this a second service on the port would answer our `/readyz` and
    `errand up` would announce itself while its own API dies. Raises StartupError.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as err:
        raise StartupError(f"cannot resolve API host {host!r}: {err}") from err
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind(address)
        except OSError as err:
            raise StartupError(
                f"cannot listen on {host}:{port} for the API: {err.strerror or err}; "
                "choose another --port or stop what uses it"
            ) from err
