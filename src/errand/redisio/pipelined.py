"""PipelinedRedis: redis-py's asyncio client with its hot path on one pipelined connection.

redis-py checks a connection out of its pool, wraps each command in retry, timeout
and metrics machinery and parses the reply in Python-level coroutines: about 150 µs
of CPU per command on a 2-core box, against about 15 µs for the same command written
straight to one socket and parsed by hiredis. For a worker that sends five to ten
commands per job that difference is most of its CPU.

`PipelinedRedis` is a drop-in `redis.asyncio.Redis` (BullMQ, `register_script`,
every command method and reply callback keep working): plain commands and plain
MULTI/EXEC pipelines go back to back over one TCP connection and their replies are
matched in order, concurrency included. Blocking commands, pub/sub, WATCH
transactions, pipelines that carry scripts, and TLS or unix-socket servers take
redis-py's ordinary pooled path, so nothing that could hold the shared connection
ever runs on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.connection import Connection
from redis.client import EMPTY_RESPONSE, NEVER_DECODE
from redis.commands.core import AsyncScript
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
)
from redis.exceptions import (
    DataError,
    ExecAbortError,
    NoScriptError,
    ResponseError,
    WatchError,
)
from redis.exceptions import (
    TimeoutError as RedisTimeoutError,
)
from redis.typing import EncodableT, KeyT, ScriptTextT

from errand.redisio.wire import Wire, pack_commands, wire_args

# Commands that block, change the connection's state or stream replies: never on the wire.
_POOLED_ONLY = frozenset(
    {
        "BLPOP",
        "BRPOP",
        "BRPOPLPUSH",
        "BLMOVE",
        "BLMPOP",
        "BZPOPMIN",
        "BZPOPMAX",
        "BZMPOP",
        "XREAD",
        "XREADGROUP",
        "WAIT",
        "WAITAOF",
        "SUBSCRIBE",
        "PSUBSCRIBE",
        "SSUBSCRIBE",
        "UNSUBSCRIBE",
        "PUNSUBSCRIBE",
        "SUNSUBSCRIBE",
        "MONITOR",
        "SELECT",
        "AUTH",
        "HELLO",
        "RESET",
        "QUIT",
        "MULTI",
        "EXEC",
        "DISCARD",
        "WATCH",
        "UNWATCH",
        "CLIENT",
        "SYNC",
        "PSYNC",
        "SHUTDOWN",
        "DEBUG",
    }
)
CONNECT_RETRIES = 3
Command = tuple[tuple[Any, ...], Mapping[str, Any]]  # a pipeline's (args, options)
RETRY_BASE_S = 0.05
RETRY_CAP_S = 1.0


class PipelinedRedis(aioredis.Redis):
    """`redis.asyncio.Redis` whose non-blocking commands share one pipelined connection."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        pool = self.connection_pool
        kw = pool.connection_kwargs
        self._wire: Wire | None = None
        self._wire_lock: asyncio.Lock | None = None
        self._wire_lock_loop: asyncio.AbstractEventLoop | None = None
        self._wire_ok = (
            pool.connection_class is Connection  # plain TCP: no TLS, no unix socket
            and not self.single_connection_client
            and kw.get("protocol") in (None, 2, "2", 3, "3")
            and kw.get("credential_provider") is None
        )
        self._resp3 = kw.get("protocol") in (None, 3, "3")

    # --- the wire ----------------------------------------------------------
    async def _connect(self) -> Wire:
        kw = self.connection_pool.connection_kwargs
        loop = asyncio.get_running_loop()
        timeout = kw.get("socket_connect_timeout") or 5.0
        reply_timeout_s = kw.get("socket_timeout")
        _, wire = await asyncio.wait_for(
            loop.create_connection(
                lambda: Wire(reply_timeout_s),
                kw.get("host", "localhost"),
                int(kw.get("port", 6379)),
            ),
            timeout,
        )
        hello: list[tuple[Any, ...]] = []
        password, user = kw.get("password"), kw.get("username")
        if self._resp3:  # what redis-py speaks by default, so every reply callback fits
            auth = ("AUTH", user or "default", password) if password else ()
            hello.append(("HELLO", 3, *auth))
        elif password:
            hello.append(("AUTH", user, password) if user else ("AUTH", password))
        if int(kw.get("db") or 0):
            hello.append(("SELECT", int(kw["db"])))
        if kw.get("client_name"):
            hello.append(("CLIENT", "SETNAME", kw["client_name"]))
        if hello:
            try:
                await asyncio.gather(*wire.send(pack_commands(hello), len(hello)))
            except BaseException:
                wire.close()
                raise
        return wire

    async def _live_wire(self) -> Wire:
        wire = self._wire
        if wire is not None and not wire.closed and wire.loop is asyncio.get_running_loop():
            return wire
        loop = asyncio.get_running_loop()
        if self._wire_lock is None or self._wire_lock_loop is not loop:
            self._wire_lock, self._wire_lock_loop = asyncio.Lock(), loop
        async with self._wire_lock:
            wire = self._wire
            if wire is None or wire.closed or wire.loop is not asyncio.get_running_loop():
                if wire is not None:
                    wire.close()
                self._wire = wire = await self._connect()
        return wire

    async def _round_trip(self, packed: bytes, replies: int) -> list[Any]:
        """Send packed commands; the replies (errors as exception objects) in order.

        A connection that cannot be made or that breaks is retried with a short backoff,
        like the pooled client's retry policy.
        """
        for attempt in range(CONNECT_RETRIES + 1):
            try:
                wire = await self._live_wire()
                futures = wire.send(packed, replies)
                results = list(await asyncio.gather(*futures, return_exceptions=True))
                if all(isinstance(r, RedisConnectionError) for r in results):
                    raise results[0]  # e.g. LOADING after a restart: retried like a lost link
                return results
            except RedisTimeoutError:
                raise  # the server took a command and went silent: retrying only waits longer
            except (RedisConnectionError, OSError, TimeoutError) as err:
                if attempt == CONNECT_RETRIES:
                    if isinstance(err, RedisConnectionError | RedisTimeoutError):
                        raise
                    raise RedisConnectionError(f"cannot reach Redis: {err}") from err
                await asyncio.sleep(min(RETRY_CAP_S, RETRY_BASE_S * 2**attempt))
        raise AssertionError("unreachable")

    async def _call(self, args: Sequence[Any]) -> Any:
        """One command, one reply: the hot path, kept free of gather() and list building."""
        try:
            packed = hiredis.pack_command(wire_args(args))
        except TypeError as err:
            raise DataError(f"{err} (Convert to bytes, str, int or float first.)") from err
        wire = self._wire
        if wire is not None and not wire.closed and wire.loop is asyncio.get_running_loop():
            with contextlib.suppress(RedisConnectionError):
                return await wire.send(packed, 1)[0]
        [reply] = await self._round_trip(packed, 1)
        if isinstance(reply, BaseException):
            raise reply
        return reply

    # --- redis-py entry points ---------------------------------------------
    async def execute_command(self, *args: Any, **options: Any) -> Any:
        command = args[0]
        if not self._wire_ok or not isinstance(command, str) or NEVER_DECODE in options:
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        word = command.split(" ", 1)[0].upper() if " " in command else command.upper()
        if word in _POOLED_ONLY:
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        try:
            reply = await self._call(args)
        except ResponseError:
            if EMPTY_RESPONSE in options:
                return options[EMPTY_RESPONSE]
            raise
        if options:
            options.pop(EMPTY_RESPONSE, None)
            options.pop("keys", None)
        callback = self.response_callbacks.get(command)
        if callback is None:
            return reply
        value = callback(reply, **options)
        return await value if inspect.isawaitable(value) else value

    def register_script(self, script: ScriptTextT) -> AsyncScript:  # type: ignore[override]
        return WireScript(self, script)

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        if not self._wire_ok:
            return super().pipeline(transaction, shard_hint)
        return PipelinedPipeline(self, transaction, shard_hint)

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        if self._wire is not None:
            self._wire.close()
            self._wire = None
        await super().aclose(close_connection_pool)

    async def _run_stack(self, commands: Sequence[Command], transaction: bool) -> list[Any]:
        """Send a pipeline's stack in one write; raw replies in order, errors as objects."""
        wire_commands = [args for args, options in commands if EMPTY_RESPONSE not in options]
        if transaction:
            wire_commands = [("MULTI",), *wire_commands, ("EXEC",)]
        replies = await self._round_trip(pack_commands(wire_commands), len(wire_commands))
        if not transaction:
            return _spread(commands, replies)
        queued, executed = replies[1:-1], replies[-1]
        if isinstance(executed, ExecAbortError | ResponseError):
            first = next((r for r in queued if isinstance(r, ResponseError)), executed)
            raise first
        if isinstance(executed, BaseException):
            raise executed
        if executed is None:
            raise WatchError("Watched variable changed.")
        return _spread(commands, list(executed))


def _spread(commands: Sequence[Command], replies: list[Any]) -> list[Any]:
    """Put EMPTY_RESPONSE placeholders back where their commands were never sent."""
    if len(replies) == len(commands):
        return replies
    it = iter(replies)
    return [
        options[EMPTY_RESPONSE] if EMPTY_RESPONSE in options else next(it)
        for _, options in commands
    ]


class PipelinedPipeline(Pipeline):
    """A redis-py pipeline that runs plain stacks over its client's pipelined connection."""

    def __init__(self, client: PipelinedRedis, transaction: bool, shard_hint: str | None) -> None:
        super().__init__(client.connection_pool, client.response_callbacks, transaction, shard_hint)
        self._client = client

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        stack = self.command_stack
        if not stack or self.watching or self.scripts or self.explicit_transaction:
            return await super().execute(raise_on_error)
        try:
            replies = await self._client._run_stack(stack, self.is_transaction)
            return await self._finish(stack, replies, raise_on_error)
        finally:
            await self.reset()  # type: ignore[no-untyped-call]

    async def _finish(
        self, stack: list[Any], replies: list[Any], raise_on_error: bool
    ) -> list[Any]:
        if raise_on_error:
            for number, (reply, (args, _)) in enumerate(zip(replies, stack, strict=True), 1):
                if isinstance(reply, ResponseError):
                    self.annotate_exception(reply, number, args)
                    raise reply
        data = []
        for reply, (args, options) in zip(replies, stack, strict=True):
            value = reply
            if not isinstance(reply, Exception):
                callback = self.response_callbacks.get(args[0])
                if callback is not None:
                    opts = {k: v for k, v in options.items() if k not in ("keys", EMPTY_RESPONSE)}
                    value = callback(reply, **opts)
                    if inspect.isawaitable(value):
                        value = await value
            data.append(value)
        return data


class WireScript(AsyncScript):
    """A registered script whose EVALSHA goes straight onto its client's wire.

    redis-py's `AsyncScript.__call__` imports `Pipeline` and checks against it, then goes
    through `evalsha` and `execute_command` on every call: a tenth of the worker's CPU per
    job when each job runs two scripts. The reply is the same (EVALSHA has no reply
    callback); a script called with another client, or over a connection the wire does
    not serve, takes redis-py's own path.
    """

    async def __call__(
        self,
        keys: Sequence[KeyT] | None = None,
        args: Iterable[EncodableT] | None = None,
        client: Any = None,
    ) -> Any:
        redis = self.registered_client
        if (
            (client is not None and client is not redis)
            or not isinstance(redis, PipelinedRedis)
            or not redis._wire_ok
        ):
            return await super().__call__(keys, args, client)
        command = ("EVALSHA", self.sha, len(keys or ()), *(keys or ()), *(args or ()))
        try:
            return await redis._call(command)
        except NoScriptError:  # a restarted or different server: load it and go again
            self.sha = await redis.script_load(self.script)
            return await redis._call(("EVALSHA", self.sha, *command[2:]))


def pipelined_from_url(url: str, **options: Any) -> PipelinedRedis:
    """A PipelinedRedis for `url` that owns its fallback pool."""
    client = PipelinedRedis.from_url(url, **options)
    assert isinstance(client, PipelinedRedis)
    with contextlib.suppress(AttributeError):
        client.auto_close_connection_pool = True
    return client
