"""What `errand demo` stands on: the errand it starts, its webhook receiver, its narration."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from rich.console import Console
from rich.markup import escape
from standardwebhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from errand.secrets_store import load as load_secrets
from errand.secrets_store import new_webhook_secret
from errand.server.children import die_with_parent
from errand.server.embedded import free_port

READY_TIMEOUT_S = 60.0
STEP_TIMEOUT_S = 30.0
POLL_S = 0.1
STOP_TIMEOUT_S = 20.0
DEMO_SETTINGS = {
    "ERRAND_REPORT_SECONDS": "1",
    "ERRAND_EMAIL_SEND_MS": "100",
    "ERRAND_NOTIFY_BACKOFF_MS": "300",
    "ERRAND_WEBHOOK_BACKOFF_MS": "300",
    "ERRAND_NOTIFY_CONCURRENCY": "2",  # few enough that welcomes queue up behind each other
    "ERRAND_WEBHOOK_ALLOW_PRIVATE": "true",  # the receiver is on 127.0.0.1
    "ERRAND_SHUTDOWN_GRACE_SECONDS": "3",
    "ERRAND_LOG_LEVEL": "WARNING",
}


class StepFailed(Exception):
    """A step saw something other than what the contract promises."""


@dataclass
class Target:
    url: str
    admin_token: str
    webhook_secret: str
    owned: bool
    api_key: str | None = None  # None: a server with ERRAND_AUTH=none


class Timeline:
    """Prints what happens, as it happens, with the time since the demo started."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.started = time.monotonic()

    def say(self, text: str, style: str = "") -> None:
        """One line; `text` is shown as is (server answers may contain [brackets])."""
        elapsed = time.monotonic() - self.started
        body = f"[{style}]{escape(text)}[/]" if style else escape(text)
        self.console.print(f"[dim]{elapsed:6.2f}s[/]  {body}", highlight=False)

    def ok(self, text: str) -> None:
        self.say(f"✓ {text}", "green")

    def rule(self, title: str) -> None:
        self.console.rule(f"[bold]{escape(title)}")


# --- the webhook receiver --------------------------------------------------------------


@dataclass
class Delivery:
    path: str
    webhook_id: str
    timestamp_s: int
    event: dict[str, Any] | None
    error: str | None
    answered: int


@dataclass
class Receiver:
    """Verifies every delivery with `standardwebhooks`; each path answers a scripted status list."""

    secret: str
    base_url: str = ""
    deliveries: list[Delivery] = field(default_factory=list)
    scripts: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [200]))

    async def handle(self, request: Request) -> Response:
        body, headers = await request.body(), dict(request.headers)
        script = self.scripts[request.url.path]
        status = script.pop(0) if len(script) > 1 else script[0]
        event, error = None, None
        try:
            event = Webhook(self.secret).verify(body, headers)
        except Exception as err:  # WebhookVerificationError and malformed headers alike
            error = f"{type(err).__name__}: {err}"
            status = 400
        stamp = headers.get("webhook-timestamp", "0")
        self.deliveries.append(
            Delivery(
                request.url.path,
                headers.get("webhook-id", ""),
                int(stamp) if stamp.isdigit() else 0,
                event,
                error,
                status,
            )
        )
        return Response(status_code=status)

    def at(self, path: str) -> list[Delivery]:
        return [d for d in self.deliveries if d.path == path]


class _SignalFreeServer(uvicorn.Server):
    """uvicorn without its SIGINT/SIGTERM handlers: the demo owns those and stops it itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serve_receiver(secret: str) -> AsyncIterator[Receiver]:
    receiver = Receiver(secret)
    app = Starlette(routes=[Route("/{path:path}", receiver.handle, methods=["POST"])])
    port = free_port()
    server = _SignalFreeServer(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            lifespan="off",
            log_level="warning",
            access_log=False,
            loop="none",
        )
    )
    task = asyncio.create_task(server.serve())
    await _until(lambda: _ready(server, task), 10, "the webhook receiver to listen")
    receiver.base_url = f"http://127.0.0.1:{port}"
    try:
        yield receiver
    finally:
        server.should_exit = True
        await task


async def _ready(server: uvicorn.Server, task: asyncio.Task[None]) -> bool:
    if task.done():
        task.result()
    return bool(server.started)


# --- the errand under demonstration ------------------------------------------------------


@contextlib.asynccontextmanager
async def own_errand(timeline: Timeline) -> AsyncIterator[Target]:
    """`errand up` on a free port with a temporary data dir; stopped (and awaited) on exit."""
    port, token, secret = free_port(), secrets.token_urlsafe(18), new_webhook_secret()
    with tempfile.TemporaryDirectory(prefix="errand-demo-") as data_dir:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ERRAND_")}
        env.update(
            DEMO_SETTINGS,
            ERRAND_DATA_DIR=data_dir,
            ERRAND_ADMIN_TOKEN=token,
            ERRAND_WEBHOOK_SECRET=secret,
            PYTHONUNBUFFERED="1",
        )
        log_path = Path(data_dir) / "errand.log"
        argv = [sys.executable, "-m", "errand", "up", "--host", "127.0.0.1", "--port", str(port)]
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        timeline.say(f"starting errand: `errand up --port {port}` (pid {process.pid})")
        url = f"http://127.0.0.1:{port}"
        try:
            await _wait_ready(url, process, log_path)
            timeline.ok(f"errand API on {url}")
            kept = load_secrets(Path(data_dir))  # the `default` client's key, made by `up`
            api_key = kept.api_key if kept is not None else None
            yield Target(url, token, secret, owned=True, api_key=api_key)
        finally:
            await _stop(process, timeline)


async def _wait_ready(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=2) as http:

        async def ready() -> bool:
            if process.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise StepFailed(f"errand up exited with {process.returncode}:\n{tail}")
            with contextlib.suppress(httpx.HTTPError):
                return (await http.get("/readyz")).status_code == 200
            return False

        await _until(ready, READY_TIMEOUT_S, "errand to become ready")


async def _stop(process: subprocess.Popen[bytes], timeline: Timeline) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await asyncio.to_thread(process.wait)
    timeline.say(f"stopped errand (pid {process.pid}, exit code {process.returncode})")


# --- helpers the steps share ----------------------------------------------------------------


async def _until(probe: Callable[[], Awaitable[Any]], timeout_s: float, what: str) -> Any:
    """Poll `probe` until it returns something truthy; StepFailed after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not (result := await probe()):
        if time.monotonic() > deadline:
            raise StepFailed(f"timed out after {timeout_s:g} s waiting for {what}")
        await asyncio.sleep(POLL_S)
    return result


def _retry_hint(next_attempt_at: str | None) -> str:
    if not next_attempt_at:
        return ""
    due = datetime.fromisoformat(next_attempt_at.replace("Z", "+00:00"))
    return f", retrying in {max(0.0, (due - datetime.now(UTC)).total_seconds()):.1f} s"


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise StepFailed(message)


@dataclass
class Demo:
    target: Target
    http: httpx.AsyncClient
    receiver: Receiver
    timeline: Timeline
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:6])

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.target.admin_token}"}

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        reply = await self.http.post(path, json=body)
        expect(reply.status_code == 202, f"POST {path} answered {reply.status_code}: {reply.text}")
        result: dict[str, Any] = reply.json()
        return result

    async def get(self, path: str, **params: Any) -> dict[str, Any]:
        headers = self.admin if path.startswith("/admin/") else None  # else the client's key
        reply = await self.http.get(path, params=params or None, headers=headers)
        expect(reply.status_code == 200, f"GET {path} answered {reply.status_code}: {reply.text}")
        result: dict[str, Any] = reply.json()
        return result

    async def follow(
        self, job_id: str, until: Callable[[dict[str, Any]], bool], narrate: bool = True
    ) -> dict[str, Any]:
        """Poll a notification until `until` holds, narrating each change of status or attempts."""
        last: tuple[Any, ...] = ()

        async def probe() -> dict[str, Any] | None:
            nonlocal last
            view = await self.get(f"/notifications/{job_id}")
            now = (view["status"], view["attemptsMade"])
            if narrate and now != last:
                last = now
                self.timeline.say(
                    f"  {view['status']}, attempts made: {view['attemptsMade']}"
                    f"{_retry_hint(view['nextAttemptAt'])}"
                )
            return view if until(view) else None

        view: dict[str, Any] = await _until(probe, STEP_TIMEOUT_S, f"notification {job_id}")
        return view

    async def deliveries(self, path: str, count: int) -> list[Delivery]:
        """Wait for `count` deliveries to `path`, narrating each as it arrives."""
        told = 0

        async def probe() -> list[Delivery] | None:
            nonlocal told
            got = self.receiver.at(path)
            for delivery in got[told:]:
                told += 1
                verdict = "signature verified" if delivery.error is None else delivery.error
                self.timeline.say(
                    f"  receiver ← attempt {told}: webhook-id {delivery.webhook_id}, "
                    f"webhook-timestamp {delivery.timestamp_s}, {verdict} → {delivery.answered}"
                )
            return got if len(got) >= count else None

        found: list[Delivery] = await _until(probe, STEP_TIMEOUT_S, f"{count} deliveries")
        for delivery in found:
            expect(delivery.error is None, f"a delivery failed verification: {delivery.error}")
        return found
