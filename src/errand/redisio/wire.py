"""The pipelined client's connection: commands written back to back, replies matched in order.

See redisio/pipelined.py for why; this module is the socket half of PipelinedRedis.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Any

import hiredis
from redis._parsers.base import BaseParser
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, InvalidResponse, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

# A write leaves at the end of the event-loop turn, or as soon as this many commands wait:
# an early write lets Redis start on a batch while the client still works on the rest of
# the turn, so the two overlap instead of taking turns. With only end-of-turn writes a
# 32-slot worker settled into one lockstep cohort and drained 1,450 jobs/s; flushing at
# 16 (or 8) gave 2,900 on the same box. See docs/performance.md.
FLUSH_AT = 16


def parse_error(message: str) -> Exception:
    error: Exception = BaseParser.parse_error(message)  # type: ignore[no-untyped-call]
    return error


def wire_args(args: Sequence[Any]) -> tuple[Any, ...]:
    """redis-py lets a command name carry literal words ('SCRIPT LOAD'); Redis wants them apart."""
    first = args[0]
    if isinstance(first, str) and " " in first:
        return (*first.split(), *args[1:])
    return tuple(args)


def pack_commands(commands: Sequence[Sequence[Any]]) -> bytes:
    try:
        return b"".join(hiredis.pack_command(wire_args(args)) for args in commands)
    except TypeError as err:
        raise DataError(f"{err} (Convert to bytes, str, int or float first.)") from err


class Wire(asyncio.Protocol):
    """One TCP connection: commands written back to back, replies matched in order."""

    def __init__(self, reply_timeout_s: float | None = None) -> None:
        self.transport: Any = None
        self.reader = hiredis.Reader(
            encoding="utf-8",
            errors="strict",
            replyError=parse_error,
            protocolError=InvalidResponse,
        )
        self.waiters: deque[asyncio.Future[Any]] = deque()
        self.closed = False
        self.loop = asyncio.get_running_loop()
        self.outgoing: list[bytes] = []
        self.flush_pending = False
        # Reply deadline (ERRAND_REDIS_TIMEOUT_S): a server that stops answering (frozen,
        # partitioned) fails every waiter instead of hanging them. One timer per wire
        # watches the oldest waiter; `sent_at` runs in step with `waiters`.
        self.reply_timeout_s = reply_timeout_s
        self.sent_at: deque[float] = deque()
        self._watchdog: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:  # uvloop's is no asyncio.Transport
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        waiters = self.waiters
        while waiters:
            try:
                reply = self.reader.gets()
            except UnicodeDecodeError as err:  # hiredis consumed that reply and stays in sync
                reply = err
            except Exception as err:  # a protocol error: the stream is lost
                self._fail(RedisConnectionError(f"unreadable reply from Redis: {err}"))
                if self.transport is not None:
                    self.transport.abort()
                return
            if reply is False:
                return
            waiter = waiters.popleft()
            if self.sent_at:
                self.sent_at.popleft()
            if waiter.done():  # its caller gave up (cancelled); the reply is just consumed
                continue
            if isinstance(reply, ResponseError | UnicodeDecodeError):
                waiter.set_exception(reply)
            else:
                waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(RedisConnectionError(f"connection to Redis lost: {exc or 'closed'}"))

    def _fail(self, err: Exception) -> None:
        self.closed = True
        self.sent_at.clear()
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(err)

    def send(self, packed: bytes, replies: int) -> list[asyncio.Future[Any]]:
        """Queue commands; everything sent in one event-loop turn leaves in one write."""
        if self.closed or self.transport is None or self.transport.is_closing():
            raise RedisConnectionError("connection to Redis is closed")
        futures = [self.loop.create_future() for _ in range(replies)]
        self.waiters.extend(futures)
        if self.reply_timeout_s is not None:
            self.sent_at.extend([self.loop.time()] * replies)
            if self._watchdog is None:
                self._watchdog = self.loop.call_later(self.reply_timeout_s, self._check_replies)
        if not self.flush_pending:
            self.flush_pending = True
            self.loop.call_soon(self._flush)
        self.outgoing.append(packed)
        if len(self.outgoing) >= FLUSH_AT:
            self._write_out()
        return futures

    def _check_replies(self) -> None:
        """Fail the wire when its oldest waiter has had no reply within the timeout."""
        self._watchdog = None
        if self.closed or not self.sent_at or self.reply_timeout_s is None:
            return
        late_s = self.loop.time() - self.sent_at[0]
        if late_s >= self.reply_timeout_s:
            self._fail(RedisTimeoutError(f"Redis did not answer within {self.reply_timeout_s:g} s"))
            if self.transport is not None:
                self.transport.abort()  # replies after this point would match the wrong waiter
            return
        self._watchdog = self.loop.call_later(self.reply_timeout_s - late_s, self._check_replies)

    def _flush(self) -> None:
        self.flush_pending = False
        self._write_out()

    def _write_out(self) -> None:
        data, self.outgoing = self.outgoing, []
        if (
            data
            and not self.closed
            and self.transport is not None
            and not self.transport.is_closing()
        ):
            self.transport.write(b"".join(data) if len(data) > 1 else data[0])

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()
