"""An errand stack inside the test's event loop: uvicorn on a free port and a real worker."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
import uvicorn

from errand.access.clients import ClientStore, LimitOverrides, RateLimit
from errand.api.app import create_app
from errand.api.http.http_protocol import ErrandHttpToolsProtocol
from errand.engine.runner import WorkerProcess
from errand.jobids import QueueName
from errand.keys import ANONYMOUS_CLIENT, Keys
from errand.redisio.connection import connect
from errand.server.embedded import free_port
from errand.settings import AuthMode, Settings, WorkerEngine

FAST_DEFAULTS: dict[str, Any] = {
    "report_seconds": 0.3,
    "email_send_ms": 10,
    "notify_backoff_ms": 100,
    "webhook_backoff_ms": 100,
    "admin_token": "test-admin-token",
    "webhook_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "webhook_allow_private": True,
    "shutdown_grace_seconds": 5,
    "heartbeat_seconds": 0.5,
    "stalled_interval_ms": 1000,
    "lock_duration_ms": 2000,
}

# `pytestmark = BOTH_ENGINES`: every test of the module on each worker engine (the
# `worker_engine` fixture the `stack` fixture reads, overridden by parametrization).
BOTH_ENGINES = pytest.mark.parametrize("worker_engine", [e.value for e in WorkerEngine])


async def read_outbox(redis: Any, keys: Keys) -> list[str]:
    """The raw records of every partition's simulated outbox, newest first."""
    raw = [item for key in keys.outboxes() for item in await redis.lrange(key, 0, -1)]
    return sorted(raw, key=lambda item: str(orjson.loads(item)["sentAt"]), reverse=True)


def test_settings(redis_url: str, **overrides: Any) -> Settings:
    """Settings for one test: a unique hash-tagged key prefix isolates it on the shared server."""
    values = {
        **FAST_DEFAULTS,
        "redis_url": redis_url,
        "queue_prefix": "{t" + uuid.uuid4().hex[:10] + "}",
        **overrides,
    }
    return Settings(**values)


@dataclass(frozen=True)
class ApiClient:
    """A client made through `POST /admin/clients`, with its (first) key."""

    client_id: str
    key_id: str
    api_key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


class ClientKeyAuth(httpx.Auth):
    """Sends a client's key to the client routes only, unless the request names its own
    Authorization (admin routes, other clients, tests of a missing key)."""

    CLIENT_ROUTES = ("/reports", "/notifications", "/jobs", "/schedules")

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key

    def auth_flow(self, request: httpx.Request) -> Any:
        if "authorization" not in request.headers and request.url.path.startswith(
            self.CLIENT_ROUTES
        ):
            request.headers["Authorization"] = f"Bearer {self.api_key}"
        yield request


@dataclass
class Stack:
    settings: Settings
    base_url: str
    http: httpx.AsyncClient
    redis: Any
    workers: list[WorkerProcess]
    app: Any = None
    # Whose key `http` sends to the client routes (None with ERRAND_AUTH=none). It has
    # no rate limit, so tests that are not about limits never meet one.
    client: ApiClient | None = None

    @property
    def client_id(self) -> str:
        """The client whose jobs this stack's requests create."""
        return self.client.client_id if self.client is not None else ANONYMOUS_CLIENT

    @property
    def keys(self) -> Keys:
        return Keys(self.settings.queue_prefix, self.settings.partitions)

    async def members(self, queue: str, state: str) -> list[str]:
        """The job ids in one BullMQ state (`wait`, `active`: lists; `prioritized`,
        `completed`, `failed`, `delayed`, `repeat`: sorted sets) over every partition."""
        found: list[str] = []
        for p in range(self.keys.partitions):
            key = self.keys.queue(queue, state, p)
            if state in ("wait", "active", "paused"):
                found += await self.redis.lrange(key, 0, -1)
            else:
                found += await self.redis.zrange(key, 0, -1)
        return found

    async def outbox_raw(self) -> list[str]:
        """The simulated outbox of every partition, newest first (as one LRANGE would be)."""
        return await read_outbox(self.redis, self.keys)

    @property
    def admin(self) -> dict[str, str]:
        token = self.settings.admin_token
        assert token is not None
        return {"Authorization": f"Bearer {token.get_secret_value()}"}

    async def new_client(self, name: str = "other", **body: Any) -> ApiClient:
        """A new client through the admin route; `body` adds `rateLimit` and the like."""
        reply = await self.http.post(
            "/admin/clients", json={"name": name, **body}, headers=self.admin
        )
        assert reply.status_code == 201, reply.text
        made = reply.json()
        return ApiClient(made["clientId"], made["keyId"], made["apiKey"])

    async def start_worker(
        self, queues: Sequence[QueueName] = tuple(QueueName), concurrency: int | None = None
    ) -> WorkerProcess:
        worker = WorkerProcess(self.settings, queues, concurrency)
        await worker.start()
        self.workers.append(worker)
        return worker

    async def stop_workers(self) -> None:
        for worker in self.workers:
            await worker.stop()
        self.workers.clear()


@contextlib.asynccontextmanager
async def serve_api(
    settings: Settings | None, app: Any = None, http: type[Any] = ErrandHttpToolsProtocol
) -> AsyncIterator[str]:
    """uvicorn serving create_app(settings) (or `app`) on a free loopback port, in this loop,
    with the HTTP protocol `errand api` runs (or `http`)."""
    port = free_port()
    config = uvicorn.Config(
        app or create_app(settings),
        host="127.0.0.1",
        port=port,
        loop="none",
        http=http,
        lifespan="on",
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def run_stack(settings: Settings, with_worker: bool = True) -> AsyncIterator[Stack]:
    redis = connect(settings)
    app = create_app(settings)
    # Idle keep-alive connections are dropped well before uvicorn's 5 s keep-alive
    # timeout, so a test never reuses one the server is closing (a ReadError race).
    limits = httpx.Limits(max_connections=200, keepalive_expiry=1.0)
    async with (
        serve_api(settings, app) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as http,
    ):
        stack = Stack(settings, base_url, http, redis, [], app)
        if settings.auth is AuthMode.KEYS:  # made in the store: admin routes may be off
            store = ClientStore(redis, stack.keys)
            made, issued = await store.create("tests", LimitOverrides(RateLimit(0, 0)))
            stack.client = ApiClient(made.client_id, issued.key_id, issued.api_key)
            http.auth = ClientKeyAuth(stack.client.api_key)
        if with_worker:
            await stack.start_worker()
        try:
            yield stack
        finally:
            await stack.stop_workers()
            await redis.aclose()
