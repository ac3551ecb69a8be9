"""AsyncClient: runs the operations on asyncio with httpx.AsyncClient."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from errand.client._base import ClientBase
from errand.client._binding import AsyncDriver
from errand.client._operations import Operations
from errand.client._protocol import Attempt, Emit, Op, OpenStream, Sleep, Step, advance

T = TypeVar("T")


class _AsyncStream:
    """The one event stream an operation holds open at a time."""

    response: httpx.Response | None = None
    lines: AsyncIterator[str] | None = None

    async def open(self, http: httpx.AsyncClient, request: httpx.Request) -> httpx.Response:
        await self.__aexit__()
        response = self.response = await http.send(request, stream=True)
        if response.is_error:
            await response.aread()
        self.lines = response.aiter_lines()
        return response

    async def next_line(self) -> str | None:
        return None if self.lines is None else await anext(self.lines, None)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.response is not None:
            await self.response.aclose()


class AsyncClient(Operations, ClientBase[httpx.AsyncClient], AsyncDriver):
    """The errand API on asyncio. Use as `async with AsyncClient(url, api_key=...) as errand:`."""

    _http_class = httpx.AsyncClient

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _run(self, op: Op[T]) -> T:
        results = self._iterate(op)
        try:
            return await anext(results)
        finally:
            await results.aclose()

    async def _iterate(self, op: Op[T]) -> AsyncGenerator[T, None]:
        async with _AsyncStream() as stream:
            with contextlib.closing(op):
                reply = None
                while (step := advance(op, reply)) is not None:
                    reply = (
                        (yield step.value)
                        if isinstance(step, Emit)
                        else await self._perform(step, stream)
                    )

    async def _perform(self, step: Step, stream: _AsyncStream) -> Any:
        if isinstance(step, Sleep):
            return await asyncio.sleep(step.seconds)
        try:
            if isinstance(step, Attempt):
                return await self._http.send(self._build(step.request))
            if isinstance(step, OpenStream):
                return await stream.open(self._http, self._build(step.request))
            return await stream.next_line()
        except httpx.TransportError as err:
            return err
