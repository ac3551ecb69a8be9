"""The HTTP protocol `errand api` runs: uvicorn's httptools one, with a head-size limit
and one `send()` per small response instead of two.

uvicorn writes a response head to the socket as soon as the app sends
`http.response.start`, then the body when it sends `http.response.body`: two
syscalls, and on loopback two trips through the TCP stack, for a 200-byte answer.
`ErrandHttpToolsProtocol` gives each request a transport that holds the head back
until the body's first write (or the end of the current loop turn, so a streamed
response whose first chunk comes later is not delayed by more than that) and sends
both in one write.
"""

from __future__ import annotations

import asyncio
from typing import Any

from errand.api.http.http_limits import HeadLimitedHttpToolsProtocol

_HEAD = b"HTTP/1.1 "


class CoalescingTransport:
    """A transport whose response heads wait for the next write, at most one loop turn."""

    __slots__ = ("_flush_handle", "_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._flush_handle: asyncio.Handle | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if self._flush_handle is not None:
                self._flush_handle.cancel()
                self._flush_handle = None
            self._transport.write(held + bytes(data))
        elif isinstance(data, bytes) and data.startswith(_HEAD):
            self._held = data
            self._flush_handle = self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def flush(self) -> None:
        """Write the held head now (nothing followed it within the loop turn)."""
        self._flush_handle = None
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class ErrandHttpToolsProtocol(HeadLimitedHttpToolsProtocol):
    """uvicorn's httptools protocol with the head limit and coalesced response writes."""

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.transport is self.transport:
            # The request's task is created but has not run yet: nothing was written.
            cycle.transport = CoalescingTransport(self.transport, self.loop)  # type: ignore[assignment]
