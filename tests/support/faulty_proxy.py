"""A TCP proxy on 127.0.0.1 that breaks chosen HTTP exchanges, for client resilience tests.

It runs its own event loop in a thread, so blocking clients can use it too. Every
request head that passes is recorded. Faults are armed one at a time and each
fires once, on the first request whose head contains its pattern:
- `drop_response`: the request reaches the server, which handles it; its response
  is swallowed (kept in `dropped`) and the client's connection closed.
- `cut_stream`: the response is forwarded until a chunk containing `marker` has
  passed, then the client's connection is closed mid-body.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from dataclasses import dataclass, field
from typing import Any

METHODS = (b"GET ", b"POST ", b"PUT ", b"PATCH ", b"DELETE ", b"HEAD ", b"OPTIONS ")


@dataclass
class Fault:
    kind: str  # "drop_response" or "cut_stream"
    pattern: bytes
    marker: bytes = b""


@dataclass
class FaultyProxy:
    upstream_port: int
    heads: list[bytes] = field(default_factory=list)
    dropped: list[bytes] = field(default_factory=list)
    fired: list[Fault] = field(default_factory=list)
    _faults: list[Fault] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    _thread: threading.Thread | None = None
    _server: Any = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def drop_response(self, pattern: bytes) -> None:
        self._faults.append(Fault("drop_response", pattern))

    def cut_stream(self, pattern: bytes, marker: bytes) -> None:
        self._faults.append(Fault("cut_stream", pattern, marker))

    def heads_with(self, pattern: bytes) -> list[bytes]:
        return [head for head in self.heads if pattern in head]

    def start(self) -> FaultyProxy:
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        start = asyncio.start_server(self._handle, "127.0.0.1", 0)
        self._server = asyncio.run_coroutine_threadsafe(start, self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close() -> None:
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None
        self._thread.join(10)
        self._loop.close()

    def _take_fault(self, head: bytes) -> Fault | None:
        for fault in self._faults:
            if fault.pattern in head:
                self._faults.remove(fault)
                self.fired.append(fault)
                return fault
        return None

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        state: dict[str, Fault | None] = {"fault": None}
        try:
            await asyncio.gather(
                self._upstream(client_r, up_w, state), self._downstream(up_r, client_w, state)
            )
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            for writer in (client_w, up_w):
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()

    async def _upstream(
        self,
        client_r: asyncio.StreamReader,
        up_w: asyncio.StreamWriter,
        state: dict[str, Fault | None],
    ) -> None:
        while data := await client_r.read(65536):
            if data.startswith(METHODS):
                head = data.split(b"\r\n\r\n", 1)[0]
                self.heads.append(head)
                state["fault"] = self._take_fault(head)
            up_w.write(data)
            await up_w.drain()
        up_w.close()

    async def _downstream(
        self,
        up_r: asyncio.StreamReader,
        client_w: asyncio.StreamWriter,
        state: dict[str, Fault | None],
    ) -> None:
        while data := await up_r.read(65536):
            fault = state["fault"]
            if fault is not None and fault.kind == "drop_response":
                client_w.transport.abort()
                self.dropped.append(await _whole_response(up_r, data))
                return
            client_w.write(data)
            await client_w.drain()
            if fault is not None and fault.kind == "cut_stream" and fault.marker in data:
                client_w.transport.abort()
                return
        client_w.close()


async def _whole_response(up_r: asyncio.StreamReader, data: bytes) -> bytes:
    """`data` plus what follows of its response, up to its Content-Length."""
    while b"\r\n\r\n" not in data:
        data += await up_r.read(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    lengths = [
        line.split(b":", 1)[1]
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    ]
    if lengths:
        body += await up_r.readexactly(max(0, int(lengths[0]) - len(body)))
    return head + b"\r\n\r\n" + body
