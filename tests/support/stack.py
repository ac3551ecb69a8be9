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

from errand.api.app import create_app
from errand.api.http.http_protocol import ErrandHttpToolsProtocol
from errand.engine.runner import WorkerProcess
from errand.keys import ANONYMOUS_CLIENT, Keys, QueueName
from errand.redisio.connection import connect
from errand.server.embedded import free_port
from errand.settings import Settings, WorkerEngine

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


@dataclass
class Stack:
    settings: Settings
    base_url: str
    http: httpx.AsyncClient
    redis: Any
    workers: list[WorkerProcess]
    app: Any = None

    @property
    def client_id(self) -> str:
        """The client whose jobs this stack's requests create."""
        return ANONYMOUS_CLIENT

    @property
    def keys(self) -> Keys:
        return Keys(self.settings.queue_prefix, self.settings.partitions)

    async def outbox_raw(self) -> list[str]:
        """The simulated outbox of every partition, newest first (as one LRANGE would be)."""
        return await read_outbox(self.redis, self.keys)

    @property
    def admin(self) -> dict[str, str]:
        token = self.settings.admin_token
        assert token is not None
        return {"Authorization": f"Bearer {token.get_secret_value()}"}

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
        if with_worker:
            await stack.start_worker()
        try:
            yield stack
        finally:
            await stack.stop_workers()
            await redis.aclose()
