"""A minimal HTTP/1.1 client on asyncio streams, for latency probes and the fallback load generator.

It adds almost nothing between "send" and "received" (no pools, no header objects),
so the latencies it measures are the server's. Keep-alive, Content-Length and
chunked bodies (SSE streams) are all it understands.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import orjson


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    sent_at: float = 0.0  # time.time() just before the request was written
    received_at: float = 0.0  # time.time() once the whole reply was read

    def json(self) -> object:
        return orjson.loads(self.body)


DEFAULT_HEADERS: dict[str, str] = {}
"""Sent on every connection made after it is set (the bench's API key)."""


@dataclass
class RawHttp:
    """One keep-alive connection to 127.0.0.1:port."""

    port: int
    host: str = "127.0.0.1"
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    extra_headers: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_HEADERS))

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
            self.writer = None

    def _head(self, method: str, path: str, body: bytes | None) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in self.extra_headers.items()]
        if body is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")

    async def request(self, method: str, path: str, payload: object | None = None) -> Reply:
        if self.writer is None:
            await self.connect()
        assert self.reader is not None and self.writer is not None
        body = orjson.dumps(payload) if payload is not None else None
        sent_at = time.time()
        self.writer.write(self._head(method, path, body))
        status, headers = await self._read_head()
        if headers.get("transfer-encoding") == "chunked":
            content = b"".join([chunk async for chunk in self._chunks()])
        else:
            content = await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return Reply(status, headers, content, sent_at, time.time())

    async def stream(self, path: str) -> AsyncIterator[bytes]:
        """GET `path` and yield the chunks of its chunked body as they arrive."""
        if self.writer is None:
            await self.connect()
        assert self.writer is not None
        self.writer.write(self._head("GET", path, None))
        status, _ = await self._read_head()
        if status != 200:
            raise RuntimeError(f"GET {path} answered {status}")
        async for chunk in self._chunks():
            yield chunk

    async def _read_head(self) -> tuple[int, dict[str, str]]:
        assert self.reader is not None
        raw = await self.reader.readuntil(b"\r\n\r\n")
        first, *rest = raw.decode("latin-1").split("\r\n")
        headers = {}
        for line in rest:
            if ":" in line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        return int(first.split(" ", 2)[1]), headers

    async def _chunks(self) -> AsyncIterator[bytes]:
        assert self.reader is not None
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                return
            data = await self.reader.readexactly(size + 2)
            yield data[:-2]


@dataclass
class LoadResult:
    requests: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_us: list[float] = field(default_factory=list)


async def python_load(
    port: int, make_request: object, connections: int, seconds: float
) -> LoadResult:
    """Closed-loop load from this process: `connections` keep-alive clients, `seconds` long.

    `make_request(n)` returns (method, path, payload) for the n-th request of a client.
    Slower than wrk and it competes for the same CPU: used only when wrk is missing.
    """
    result = LoadResult()
    deadline = time.monotonic() + seconds

    async def client(index: int) -> None:
        http = RawHttp(port)
        n = 0
        try:
            while time.monotonic() < deadline:
                method, path, payload = make_request(index * 10_000_000 + n)  # type: ignore[operator]
                n += 1
                t0 = time.perf_counter()
                try:
                    reply = await http.request(method, path, payload)
                except (OSError, asyncio.IncompleteReadError):
                    result.errors += 1
                    await http.close()
                    continue
                result.latencies_us.append((time.perf_counter() - t0) * 1e6)
                result.requests += 1
                if reply.status >= 400:
                    result.errors += 1
        finally:
            await http.close()

    start = time.monotonic()
    await asyncio.gather(*(client(i) for i in range(connections)))
    result.seconds = time.monotonic() - start
    return result
