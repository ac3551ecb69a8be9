"""`errand up`: embedded Valkey, the API and worker processes, supervised as one service."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from errand.logs import redact
from errand.secrets_store import LocalSecrets, load_or_create
from errand.server.embedded import EmbeddedValkey
from errand.settings import Durability, Settings

RESTART_DELAY_S = 1.0
READY_TIMEOUT_S = 60.0


def _die_with_parent() -> None:
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0


@dataclass
class UpOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    api_workers: int = 1
    worker_processes: int = 1
    concurrency: int | None = None
    extra_env: dict[str, str] = field(default_factory=dict)


class Supervisor:
    """Starts every part, restarts a part that dies, stops all of them on SIGTERM/SIGINT."""

    def __init__(self, settings: Settings, options: UpOptions) -> None:
        self.settings = settings
        self.options = options
        self.valkey: EmbeddedValkey | None = None
        self.children: list[Child] = []
        self.stopping = False
        self.secrets: LocalSecrets | None = None
        self.notes: list[str] = []

    # --- environment for the children -------------------------------------
    def _child_env(self, redis_url: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.options.extra_env)
        env["ERRAND_REDIS_URL"] = redis_url
        env["ERRAND_DATA_DIR"] = str(self.settings.data_dir.resolve())
        self.secrets = load_or_create(self.settings.data_dir)
        if self.settings.admin_token is None:
            env["ERRAND_ADMIN_TOKEN"] = self.secrets.admin_token
            self.notes.append(f"admin token      {self.secrets.admin_token}")
        if self.settings.webhook_secret is None:
            env["ERRAND_WEBHOOK_SECRET"] = self.secrets.webhook_secret
            self.notes.append(f"webhook secret   {self.secrets.webhook_secret}")
        if "ERRAND_WEBHOOK_ALLOW_PRIVATE" not in os.environ:
            env["ERRAND_WEBHOOK_ALLOW_PRIVATE"] = "true"
            self.notes.append(
                "private webhook URLs are allowed (ERRAND_WEBHOOK_ALLOW_PRIVATE=true) "
                "for local development"
            )
        return env

    def _children(self) -> list[Child]:
        py = [sys.executable, "-m", "errand"]
        o = self.options
        api = Child("api", [*py, "api", "--host", o.host, "--port", str(o.port),
                            "--workers", str(o.api_workers)])
        workers = []
        for n in range(o.worker_processes):
            argv = [*py, "worker"]
            if o.concurrency:
                argv += ["--concurrency", str(o.concurrency)]
            if self.settings.worker_metrics_port:  # one port per worker process
                argv += ["--metrics-port", str(self.settings.worker_metrics_port + n)]
            workers.append(Child(f"worker-{n + 1}", argv))
        return [api, *workers]

    # --- lifecycle ------------------------------------------------------
    def start(self) -> None:
        data_dir = self.settings.data_dir.resolve()
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # job data: owner only
        if self.settings.embedded:
            self.valkey = EmbeddedValkey(
                data_dir / "valkey", self.settings.embedded_port, self.settings.durability
            )
            self.valkey.start()
            redis_url = self.valkey.url
        else:
            assert self.settings.redis_url is not None
            redis_url = self.settings.redis_url
            if self.settings.durability is Durability.STRICT:
                self.notes.append(
                    "ERRAND_DURABILITY=strict cannot reach an external Redis: configure it "
                    "with appendonly yes and appendfsync always (docs/scaling.md)"
                )
        self.redis_url = redis_url
        self.env = self._child_env(redis_url)
        self.children = self._children()
        for child in self.children:
            self._spawn(child)

    def _spawn(self, child: Child) -> None:
        child.process = subprocess.Popen(
            child.argv, env=self.env, stdin=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=_die_with_parent,
        )

    def wait_ready(self) -> bool:
        url = f"http://{self.options.host}:{self.options.port}/readyz"
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline and not self.stopping:
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as reply:
                if reply.status == 200:
                    return True
            time.sleep(0.1)
        return False

    def supervise(self) -> None:
        """Until asked to stop: restart any part that exits."""
        while not self.stopping:
            for child in self.children:
                proc = child.process
                if proc is not None and proc.poll() is not None and not self.stopping:
                    print(f"errand: {child.name} exited with {proc.returncode}; restarting",
                          file=sys.stderr, flush=True)
                    time.sleep(RESTART_DELAY_S)
                    child.restarts += 1
                    self._spawn(child)
            time.sleep(0.2)

    def request_stop(self, *_: object) -> None:
        self.stopping = True

    def stop(self) -> None:
        """SIGTERM every part, wait for the grace period, then stop Valkey last."""
        self.stopping = True
        live = [c.process for c in self.children if c.process and c.process.poll() is None]
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.settings.shutdown_grace_seconds + 10
        for proc in live:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.valkey is not None:
            self.valkey.stop()

    def banner(self, version: str) -> str:
        o, s = self.options, self.settings
        base = f"http://{o.host}:{o.port}"
        fsync = "always" if s.durability == "strict" else "everysec"
        store = (
            f"{self.redis_url} (embedded Valkey, AOF {fsync})"
            if self.valkey else redact(self.redis_url)  # never print a password
        )
        lines = [
            f"errand {version} is up",
            f"  API              {base}",
            f"  docs             {base}/docs",
            f"  dashboard        {base}/admin/ui",
            f"  redis            {store}",
            f"  data             {Path(s.data_dir).resolve()}",
            f"  workers          {o.worker_processes} process(es): "
            "reports, notifications, webhooks",
            *(f"  {note}" for note in self.notes),
            "Press Ctrl-C to stop.",
        ]
        return "\n".join(lines)
