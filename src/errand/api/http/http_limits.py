"""A limit on the size of a request head, which uvicorn's httptools parser does not have.

uvicorn's h11 protocol refuses a head over 16 KiB, but the httptools protocol errand
runs for speed buffers a head of any size: one client sending a 1 GB header line would
make the API process hold 1 GB. `HeadLimitedHttpToolsProtocol` counts the bytes of a
request head that is still incomplete and answers `431` (then closes) past the limit,
so no head costs more than the limit plus one read (64 KiB).
"""

from __future__ import annotations

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 16 * 1024  # h11's default; nginx allows 4 x 8 KiB


def _problem_431() -> bytes:
    body = orjson.dumps(
        {
            "type": "urn:errand:problem:headers-too-large",
            "title": "Request Header Fields Too Large",
            "status": 431,
            "detail": f"the request line and headers are over {MAX_HEAD_BYTES} bytes",
        }
    )
    return (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
        b"content-type: application/problem+json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n"
        b"connection: close\r\n\r\n" + body
    )


class HeadLimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a cap on the request line plus headers.

    Two counts enforce it: the raw bytes of a head still incomplete after a read
    (bounds the memory a slow, endless head can take), and the parsed size of a head
    that completed within one read (the exact limit for everything else).
    """

    _head_open = False
    _head_bytes = 0
    _head_size = 0
    _too_large = False

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self._head_open:  # still incomplete after this read: all of it is head
            self._head_bytes += len(data)
            self._too_large = self._too_large or self._head_bytes > MAX_HEAD_BYTES
        if self._too_large:
            self._head_open = False
            self.transport.write(_problem_431())
            self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_open, self._head_bytes, self._head_size = True, 0, 0

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._head_size += len(name) + len(value) + 4

    def on_headers_complete(self) -> None:
        self._head_open = False
        if self._head_size > MAX_HEAD_BYTES:
            self._too_large = True  # answered in data_received, once the parser returns
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._too_large:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._too_large:
            super().on_message_complete()
