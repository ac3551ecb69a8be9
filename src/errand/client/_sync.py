"""Client: runs the operations with blocking httpx calls."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Generator, Iterator
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from errand.client._base import ClientBase
from errand.client._binding import SyncDriver
from errand.client._operations import Operations
from errand.client._protocol import Attempt, Emit, Op, OpenStream, Sleep, Step, advance

T = TypeVar("T")


class _Stream:
    """The one event stream an operation holds open at a time."""

    def __init__(self) -> None:
        self.response: httpx.Response | None = None
        self.lines: Iterator[str] = iter(())

    def open(self, http: httpx.Client, request: httpx.Request) -> httpx.Response:
        self.__exit__()
        self.response = http.send(request, stream=True)
        if self.response.is_error:
            self.response.read()
        self.lines = self.response.iter_lines()
        return self.response

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.response is not None:
            self.response.close()


class Client(Operations, ClientBase[httpx.Client], SyncDriver):
    """The errand API, blocking. Use as `with Client(url, api_key=...) as errand:`."""

    _http_class = httpx.Client

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _run(self, op: Op[T]) -> T:
        results = self._iterate(op)
        try:
            return next(results)
        finally:
            results.close()

    def _iterate(self, op: Op[T]) -> Generator[T, None, None]:
        with _Stream() as stream, contextlib.closing(op):
            reply = None
            while (step := advance(op, reply)) is not None:
                reply = (
                    (yield step.value) if isinstance(step, Emit) else self._perform(step, stream)
                )

    def _perform(self, step: Step, stream: _Stream) -> Any:
        if isinstance(step, Sleep):
            return time.sleep(step.seconds)
        try:
            if isinstance(step, Attempt):
                return self._http.send(self._build(step.request))
            if isinstance(step, OpenStream):
                return stream.open(self._http, self._build(step.request))
            return next(stream.lines, None)
        except httpx.TransportError as err:
            return err
