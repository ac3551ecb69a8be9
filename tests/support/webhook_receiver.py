"""A real webhook receiver for tests: Starlette under uvicorn on 127.0.0.1, in the test's loop.

Every request is recorded (path, headers, raw body, arrival time). What each path
answers is scripted: a list of status codes used in turn (the last one repeats),
where `HANG` means "never answer" (until the receiver stops). Tests verify the
recorded deliveries with `standardwebhooks` after awaiting them, not in the handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn
from standardwebhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from errand.server.embedded import free_port
from support.waiting import wait_for

HANG = -1


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    received_s: float
    answered: int

    @property
    def payload(self) -> Any:
        return orjson.loads(self.body)

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def timestamp_s(self) -> int:
        return int(self.headers["webhook-timestamp"])

    def verify(self, secret: str) -> Any:
        """The payload, once `standardwebhooks` has verified the signature with `secret`."""
        return Webhook(secret).verify(self.body, self.headers)


@dataclass
class WebhookReceiver:
    base_url: str = ""
    received: list[Received] = field(default_factory=list)
    scripts: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [200]))
    on_delivery: Callable[[Received], Awaitable[None]] | None = None
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def answer(self, path: str, *statuses: int) -> None:
        """Script the answers of `path`: each status in turn, the last one for ever after."""
        self.scripts[path] = list(statuses)

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def wait_for(self, path: str, count: int = 1, timeout_s: float = 10.0) -> list[Received]:
        async def probe() -> list[Received]:
            return self.at(path)

        return await wait_for(
            probe,
            lambda got: len(got) >= count,
            timeout_s,
            what=f"{count} webhook deliveries to {path}",
        )

    async def _handle(self, request: Request) -> Response:
        path = request.url.path
        body = await request.body()
        script = self.scripts[path]
        status = script.pop(0) if len(script) > 1 else script[0]
        record = Received(path, dict(request.headers), body, time.time(), status)
        if self.on_delivery is not None:  # before recording, so awaiting the record awaits it
            await self.on_delivery(record)
        self.received.append(record)
        if status == HANG:
            await self._release.wait()
            status = 200
        return Response(b"ok" if status < 300 else b"no", status)


@contextlib.asynccontextmanager
async def serve_receiver() -> AsyncIterator[WebhookReceiver]:
    """A receiver on a free 127.0.0.1 port for the duration of the block."""
    receiver = WebhookReceiver()
    app = Starlette(routes=[Route("/{path:path}", receiver._handle, methods=["POST"])])
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            loop="none",
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    receiver.base_url = f"http://127.0.0.1:{port}"
    try:
        yield receiver
    finally:
        receiver._release.set()
        server.should_exit = True
        await task
