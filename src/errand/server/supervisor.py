"""`errand up`: embedded Valkey, the API and worker processes, supervised as one service."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from errand.logs import redact
from errand.secrets_store import FILE_NAME as SECRETS_FILE
from errand.secrets_store import load_or_create
from errand.server.children import STARTUP_WINDOW_S, Child
from errand.server.default_client import ensure_default_client
from errand.server.embedded import EmbeddedValkey
from errand.server.preflight import DataDirLock, StartupError, check_port_free
from errand.settings import AuthMode, Durability, Settings

READY_TIMEOUT_S = 60.0
POLL_S = 0.1
STOP_MARGIN_S = 10.0  # past the grace period, before a part that will not stop is killed
DEFAULT_DATA_DIR = Path(".errand")


@dataclass
class UpOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    api_workers: int = 1
    worker_processes: int = 1
    concurrency: int | None = None
    extra_env: dict[str, str] = field(default_factory=dict)


class Supervisor:
    """Starts every part, restarts a part that crashes, stops all of them in order.

    A part that exits before it ever worked (a busy port, a bad setting) is not
    restarted: restarting would fail the same way forever, so `errand up` ends with
    that part's reason instead (StartupError).
    """

    def __init__(self, settings: Settings, options: UpOptions) -> None:
        self.settings = settings
        self.options = options
        self.data_dir = settings.data_dir.resolve()
        self.lock = DataDirLock(self.data_dir)
        self.valkey: EmbeddedValkey | None = None
        self.api: Child | None = None
        self.workers: list[Child] = []
        self.stopping = False
        self.notes: list[str] = []
        self.redis_url = ""
        self.env: dict[str, str] = {}

    @property
    def children(self) -> list[Child]:
        return [c for c in (self.api, *self.workers) if c is not None]

    # --- environment for the children -------------------------------------
    def _child_env(self, redis_url: str) -> dict[str, str]:
        """The children's environment: the parent's, the store's URL (with its password:
        never logged), the data dir and the generated secrets the user did not set."""
        env = dict(os.environ)
        env.update(self.options.extra_env)
        env["ERRAND_REDIS_URL"] = redis_url
        env["ERRAND_DATA_DIR"] = str(self.data_dir)
        generated = load_or_create(self.data_dir)
        if self.settings.admin_token is None:
            env["ERRAND_ADMIN_TOKEN"] = generated.admin_token
        if self.settings.webhook_secret is None:
            env["ERRAND_WEBHOOK_SECRET"] = generated.webhook_secret
        if (
            self.settings.admin_token is None
            or self.settings.webhook_secret is None
            or self.settings.auth is AuthMode.KEYS
        ):
            self.notes.append(
                f"secrets          {self.data_dir / SECRETS_FILE} "
                f"(show them: {self._secrets_command()})"
            )
        self._allow_private_webhooks_on_loopback(env)
        return env

    def _allow_private_webhooks_on_loopback(self, env: dict[str, str]) -> None:
        """Bound to loopback only the machine's own users reach the API, so webhook URLs
        on private addresses (a local receiver) are allowed unless the user said
        otherwise; bound to any other address, never by default (SSRF)."""
        if "webhook_allow_private" in self.settings.model_fields_set:
            return  # the user chose: the children read the same variable
        if "ERRAND_WEBHOOK_ALLOW_PRIVATE" in self.options.extra_env:
            return
        if not is_loopback(self.options.host):
            env["ERRAND_WEBHOOK_ALLOW_PRIVATE"] = "false"
            self.notes.append(
                f"private webhook URLs are refused: the API listens on {self.options.host} "
                "(ERRAND_WEBHOOK_ALLOW_PRIVATE=true allows them)"
            )
            return
        env["ERRAND_WEBHOOK_ALLOW_PRIVATE"] = "true"
        self.notes.append(
            "private webhook URLs are allowed (ERRAND_WEBHOOK_ALLOW_PRIVATE=true): "
            "the API listens on loopback only"
        )

    def _secrets_command(self) -> str:
        """The command that prints the generated secrets (never the banner itself)."""
        if self.data_dir == DEFAULT_DATA_DIR.resolve():
            return "errand secrets"
        return f"errand secrets --data-dir {self.data_dir}"

    def _children(self) -> tuple[Child, list[Child]]:
        py = [sys.executable, "-m", "errand"]
        o = self.options
        api = Child(
            "api",
            [*py, "api", "--host", o.host, "--port", str(o.port), "--workers", str(o.api_workers)],
        )
        workers = []
        for n in range(o.worker_processes):
            argv = [*py, "worker"]
            if o.concurrency:
                argv += ["--concurrency", str(o.concurrency)]
            if self.settings.worker_metrics_port:  # one port per worker process
                argv += ["--metrics-port", str(self.settings.worker_metrics_port + n)]
            workers.append(Child(f"worker-{n + 1}", argv))
        return api, workers

    # --- lifecycle ------------------------------------------------------
    def start(self) -> None:
        """Lock the data dir, check the API port, then start Valkey, the API, the workers.

        Raises StartupError before anything runs when the data dir is in use by another
        `errand up` or the port is taken; `stop()` undoes whatever did start.
        """
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # job data: owner only
        self.lock.acquire()
        check_port_free(self.options.host, self.options.port)
        self.redis_url = self._start_store()
        self.env = self._child_env(self.redis_url)
        if self.settings.auth is AuthMode.KEYS:
            ensure_default_client(self.settings, self.redis_url, self.data_dir)
        self.api, self.workers = self._children()
        for child in self.children:
            if not self.stopping:
                child.spawn(self.env)

    def _start_store(self) -> str:
        """The Redis URL for the children: the embedded Valkey's, or ERRAND_REDIS_URL."""
        if self.settings.embedded:
            self.valkey = EmbeddedValkey(
                self.data_dir / "valkey",
                self.settings.embedded_port,
                self.settings.durability,
                password=load_or_create(self.data_dir).redis_password,
                maxmemory=self.settings.embedded_maxmemory,
            )
            try:
                self.valkey.start()
            except RuntimeError as err:
                raise StartupError(f"the embedded Valkey could not start: {err}") from err
            return self.valkey.url
        assert self.settings.redis_url is not None
        if self.settings.durability is Durability.STRICT:
            self.notes.append(
                "ERRAND_DURABILITY=strict cannot reach an external Redis: configure it "
                "with appendonly yes and appendfsync always (docs/scaling.md)"
            )
        return self.settings.redis_url

    def wait_ready(self) -> bool:
        """True once the API answers `/readyz`; False if asked to stop meanwhile.

        Raises StartupError when a part exits first, or after READY_TIMEOUT_S.
        """
        url = f"http://{self.options.host}:{self.options.port}/readyz"
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self.stopping:
            self._check_children()
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as reply:
                if reply.status == 200:
                    assert self.api is not None
                    self.api.ever_ready = True
                    return True
            if time.monotonic() > deadline:
                raise StartupError(f"the API did not answer {url} within {READY_TIMEOUT_S:g} s")
            time.sleep(POLL_S)
        return False

    def supervise(self) -> None:
        """Until asked to stop: restart a part that crashed, after its backoff.

        Raises StartupError when a part exits before it ever worked.
        """
        while not self.stopping:
            self._check_children()
            time.sleep(POLL_S)

    def _check_children(self) -> None:
        now = time.monotonic()
        for child in self.children:
            if self.stopping:
                return
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.spawn(self.env)
                continue
            code = child.exit_code
            if code is None:
                if child is not self.api and now - child.started_at >= STARTUP_WINDOW_S:
                    child.ever_ready = True  # a worker that lived through its start-up
                continue
            if not child.ever_ready:
                raise StartupError(f"{child.name} could not start: {child.reason()}")
            delay = child.schedule_restart(now)
            print(
                f"errand: {child.reason()}\nerrand: restarting {child.name} in {delay:g} s",
                file=sys.stderr,
                flush=True,
            )

    def request_stop(self, *_: object) -> None:
        """Signal handler: the main loop notices and calls `stop()` (safe to call twice)."""
        self.stopping = True

    def stop(self) -> None:
        """Stop in order: the API (no more HTTP), then the workers (they finish or hand
        back their jobs within the grace period), then Valkey last, so every hand-back
        reaches the store and its AOF is fsynced; then let go of the data dir."""
        self.stopping = True
        timeout_s = self.settings.shutdown_grace_seconds + STOP_MARGIN_S
        for group in ([self.api] if self.api else [], self.workers):
            for child in group:
                child.send_stop()
            deadline = time.monotonic() + timeout_s
            for child in group:
                child.wait_stopped(deadline)
        if self.valkey is not None:
            self.valkey.stop()
        self.lock.release()

    def banner(self, version: str) -> str:
        """What `errand up` prints once ready: where everything is, and no secret."""
        o, s = self.options, self.settings
        base = f"http://{o.host}:{o.port}"
        fsync = "always" if s.durability == "strict" else "everysec"
        store = redact(self.redis_url)  # never print a password
        if self.valkey:
            store += f" (embedded Valkey, AOF {fsync}, maxmemory {self.valkey.maxmemory})"
        lines = [
            f"errand {version} is up",
            f"  API              {base}",
            f"  docs             {base}/docs",
            f"  dashboard        {base}/admin/ui",
            f"  redis            {store}",
            f"  data             {self.data_dir}",
            f"  workers          {o.worker_processes} process(es): "
            "reports, notifications, webhooks",
            *(f"  {note}" for note in self.notes),
            "Press Ctrl-C to stop.",
        ]
        return "\n".join(lines)


def is_loopback(host: str) -> bool:
    """True for `localhost` and loopback addresses (127.0.0.0/8, ::1); False for every
    other name or address, `0.0.0.0` and `::` included."""
    if host.rstrip(".").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
