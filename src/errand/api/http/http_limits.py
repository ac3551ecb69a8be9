"""Limits on a request's head and trailer section, which uvicorn's httptools parser does not have.

uvicorn's h11 protocol refuses a head over 16 KiB, but the httptools protocol errand
runs for speed buffers a head of any size: one client sending a 1 GB header line would
make the API process hold 1 GB. The same holds for the trailer section of a chunked
body (the header lines after its last chunk), which uvicorn even appends to the
request's headers. `HeadLimitedHttpToolsProtocol` counts the bytes of a request head
or trailer section that is still incomplete and answers `431` (then closes) past the
limit, so neither costs more than the limit plus one read (64 KiB). Trailer fields are
dropped: an ASGI request has no trailers, and they must not pose as headers.
"""

from __future__ import annotations

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_HEAD_BYTES = 16 * 1024  # h11's default; nginx allows 4 x 8 KiB
MAX_TRAILER_BYTES = MAX_HEAD_BYTES


def _problem_431(detail: str) -> bytes:
    body = orjson.dumps(
        {
            "type": "urn:errand:problem:headers-too-large",
            "title": "Request Header Fields Too Large",
            "status": 431,
            "detail": detail,
        }
    )
    return (
        b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
        b"content-type: application/problem+json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n"
        b"connection: close\r\n\r\n" + body
    )


HEAD_TOO_LARGE = f"the request line and headers are over {MAX_HEAD_BYTES} bytes"
TRAILERS_TOO_LARGE = f"the trailer section of the chunked body is over {MAX_TRAILER_BYTES} bytes"


class HeadLimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a cap on the request line plus headers, and on trailers.

    Two counts enforce the head's: the raw bytes of a head still incomplete after a read
    (bounds the memory a slow, endless head can take), and the parsed size of a head
    that completed within one read (the exact limit for everything else). The trailer
    section's raw count starts after a chunk header that no body followed (the last,
    empty chunk): every later read with no body in it is trailer bytes.
    """

    _head_open = False
    _head_bytes = 0
    _head_size = 0
    _too_large = False
    _problem = HEAD_TOO_LARGE
    _after_chunk_header = False  # a chunk header with no body yet: maybe the last chunk
    _trailer_bytes = 0
    _trailer_parsed = 0  # trailer field bytes parsed during the current read

    def data_received(self, data: bytes) -> None:
        in_trailers, self._trailer_parsed = self._after_chunk_header, 0
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self._head_open:  # still incomplete after this read: all of it is head
            self._head_bytes += len(data)
            self._too_large = self._too_large or self._head_bytes > MAX_HEAD_BYTES
        elif in_trailers and self._after_chunk_header:  # no body came: all of it is trailers
            self._trailer_bytes += len(data) - self._trailer_parsed  # those fields are in it
            if self._trailer_bytes > MAX_TRAILER_BYTES:
                self._too_large, self._problem = True, TRAILERS_TOO_LARGE
        if self._too_large:
            self._refuse()

    def _refuse(self) -> None:
        """Answer 431 (unless the app has answered already) and close the connection."""
        self._head_open = self._after_chunk_header = False
        cycle = self.cycle
        if cycle is None or not cycle.response_started:
            self.transport.write(_problem_431(self._problem))
        self.transport.close()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_open, self._head_bytes, self._head_size = True, 0, 0
        self._after_chunk_header, self._trailer_bytes = False, 0

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._head_open:  # a trailer field: counted, never a header of the request
            self._trailer_parsed += len(name) + len(value) + 4
            self._trailer_bytes += len(name) + len(value) + 4
            if self._trailer_bytes > MAX_TRAILER_BYTES:
                self._too_large, self._problem = True, TRAILERS_TOO_LARGE
            return
        super().on_header(name, value)
        self._head_size += len(name) + len(value) + 4

    def on_headers_complete(self) -> None:
        self._head_open = False
        if self._head_size > MAX_HEAD_BYTES:
            self._too_large = True  # answered in data_received, once the parser returns
            return
        super().on_headers_complete()

    def on_chunk_header(self) -> None:
        self._after_chunk_header = True

    def on_body(self, body: bytes) -> None:
        self._after_chunk_header, self._trailer_bytes = False, 0
        if not self._too_large:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._after_chunk_header = False
        if not self._too_large:
            super().on_message_complete()
