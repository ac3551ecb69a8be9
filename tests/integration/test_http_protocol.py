"""errand's HTTP protocol: one socket write per small response, streams not held back."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from errand.api.http.http_limits import MAX_TRAILER_BYTES
from errand.api.http.http_protocol import ErrandHttpToolsProtocol
from support.stack import Stack, serve_api

WRITES: list[bytes] = []


class _RecordingTransport:
    """The real socket transport, with every write noted."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport

    def write(self, data: bytes) -> None:
        WRITES.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class RecordingProtocol(ErrandHttpToolsProtocol):
    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = _RecordingTransport(transport)  # type: ignore[assignment]


class App:
    """/small answers at once; /stream sends its head, then its body when released."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"5")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if scope["path"] == "/stream":
            await self.release.wait()
        await send({"type": "http.response.body", "body": b"hello"})


@pytest.fixture
async def served() -> AsyncIterator[tuple[App, int]]:
    app = App()
    async with serve_api(None, app, http=RecordingProtocol) as base_url:
        yield app, int(base_url.rsplit(":", 1)[1])


async def request(port: int, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
    await writer.drain()
    return reader, writer


async def test_a_small_response_leaves_in_one_write(served: tuple[App, int]) -> None:
    _, port = served
    WRITES.clear()
    reader, writer = await request(port, "/small")
    with contextlib.closing(writer):
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        body = await asyncio.wait_for(reader.readexactly(5), 5)
    assert head.startswith(b"HTTP/1.1 200 OK") and body == b"hello"
    assert len(WRITES) == 1, WRITES
    assert WRITES[0].startswith(b"HTTP/1.1 200") and WRITES[0].endswith(b"hello")


async def test_a_stream_gets_its_head_before_its_first_chunk(served: tuple[App, int]) -> None:
    app, port = served
    WRITES.clear()
    reader, writer = await request(port, "/stream")
    with contextlib.closing(writer):
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)  # body not released yet
        assert head.startswith(b"HTTP/1.1 200 OK")
        app.release.set()
        assert await asyncio.wait_for(reader.readexactly(5), 5) == b"hello"
    assert len(WRITES) == 2, WRITES


async def test_keep_alive_requests_each_get_their_answer(served: tuple[App, int]) -> None:
    _, port = served
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    with contextlib.closing(writer):
        for _ in range(3):
            writer.write(b"GET /small HTTP/1.1\r\nhost: x\r\n\r\n")
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert b"content-length: 5" in head.lower()
            assert await asyncio.wait_for(reader.readexactly(5), 5) == b"hello"


# --- the trailer section of a chunked body (the lines after its last chunk) -----------

REPORT_BODY = b'{"userId": "u-trailer", "reportType": "activity"}'


def report_head(stack: Stack) -> bytes:
    """The head of a chunked POST /reports that sends the stack client's key."""
    assert stack.client is not None
    return (
        b"POST /reports HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"authorization: Bearer %s\r\ntransfer-encoding: chunked\r\n\r\n"
        % stack.client.api_key.encode()
    )


def chunked(body: bytes, size: int) -> bytes:
    """`body` as chunks of `size` bytes, without the last (empty) chunk."""
    parts = [body[i : i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in parts)


async def send_endless_trailers(stack: Stack, piece: bytes) -> tuple[bytes, int, float]:
    """Send a chunked POST whose trailer section keeps coming, a KiB or so at a time, until
    the server answers and closes; the answer, the trailer bytes sent, the seconds taken."""
    port = int(stack.base_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answer = asyncio.create_task(reader.read())  # everything until the server closes
    started = asyncio.get_running_loop().time()
    sent = 0
    with contextlib.closing(writer):
        writer.write(report_head(stack) + chunked(REPORT_BODY, 16) + b"0\r\nx-endless: ")
        with contextlib.suppress(ConnectionError):
            while not answer.done() and sent < 4 * 1024 * 1024:
                writer.write(piece)
                await writer.drain()
                sent += len(piece)
                await asyncio.sleep(0.001)
        reply = await asyncio.wait_for(answer, 5)
    return reply, sent, asyncio.get_running_loop().time() - started


@pytest.mark.parametrize(
    "piece",
    [b"".join(b"x-t-%d: v\r\n" % i for i in range(100)), b"a" * 1024],
    ids=["endless-trailer-lines", "one-endless-trailer-line"],
)
async def test_a_trailer_section_that_never_ends_is_cut_off(stack: Stack, piece: bytes) -> None:
    reply, sent, seconds = await send_endless_trailers(stack, piece)
    assert reply.startswith(b"HTTP/1.1 431"), reply[:200]
    assert b"application/problem+json" in reply and b"trailer section" in reply
    assert sent < MAX_TRAILER_BYTES + 128 * 1024, sent  # the limit, one read, and the pacing
    assert seconds < 5
    assert (await stack.http.get("/readyz")).status_code == 200


async def test_a_chunked_body_with_a_small_trailer_is_served(stack: Stack) -> None:
    await stack.stop_workers()
    port = int(stack.base_url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    with contextlib.closing(writer):
        writer.write(report_head(stack) + chunked(REPORT_BODY, 1) + b"0\r\nx-checksum: abc\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 202"), head


async def test_a_trailer_section_under_the_limit_is_served_however_it_arrives(
    stack: Stack,
) -> None:
    await stack.stop_workers()
    port = int(stack.base_url.rsplit(":", 1)[1])
    trailers = b"".join(b"x-t-%04d: %s\r\n" % (i, b"v" * 40) for i in range(240))
    assert 12 * 1024 < len(trailers) < MAX_TRAILER_BYTES
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    with contextlib.closing(writer):
        writer.write(report_head(stack) + chunked(REPORT_BODY, 16) + b"0\r\n")
        for start in range(0, len(trailers), 1000):  # one read per piece, as a slow client
            writer.write(trailers[start : start + 1000])
            await writer.drain()
            await asyncio.sleep(0.005)
        writer.write(b"\r\n")
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 202"), head
