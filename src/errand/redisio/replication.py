"""The replica barrier of `ERRAND_DURABILITY=strict`: an add is acknowledged only once a
replica has it.

Redis's `WAIT n timeout` blocks until `n` replicas acknowledged every write *this
connection* sent. errand's adds go out on shared or pooled connections, so the barrier
writes a small mark into the added job's slot and sends `WAIT` right behind it on the
same connection: the replication offset only grows, so a replica that has the mark has
the job (whose MULTI had returned before the mark was sent). On a cluster both go to
the master of the job's slot.

With no replica at all (a single server, the embedded Valkey), strict keeps what it
meant before: the store's own fsync policy; the process says so once in its log.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import RedisCluster

from errand.errors import QueueUnavailable

log = logging.getLogger("errand.redis")

MARK_TTL_MS = 60_000


class ReplicaBarrier:
    """Waits, after an add, until one replica acknowledged it (strict durability)."""

    def __init__(self, redis: Any, wait_ms: int) -> None:
        self.redis = redis
        self.wait_ms = wait_ms
        self._replicated: bool | None = None  # unknown until the first add

    async def wait(self, marks: Iterable[str]) -> None:
        """One barrier per mark key (one per slot the add wrote to).

        Raises QueueUnavailable when no replica acknowledged within `wait_ms`: the job
        may exist on the master only, so the client is told to retry (with its
        Idempotency-Key, a retry answers with the same job).
        """
        if not await self._has_replicas():
            return
        for mark in set(marks):
            acked = await self._mark_and_wait(mark)
            if acked < 1:
                raise QueueUnavailable(
                    f"no replica acknowledged the job within {self.wait_ms} ms; "
                    "retry with the same Idempotency-Key"
                )

    async def _has_replicas(self) -> bool:
        if self._replicated is None:
            self._replicated = await replicas_attached(self.redis)
            if not self._replicated:
                log.warning(
                    "ERRAND_DURABILITY=strict: the store has no replica, so adds do not wait "
                    "for one; the store's own fsync policy is all strict means here"
                )
        return self._replicated

    async def _mark_and_wait(self, mark: str) -> int:
        commands = (("SET", mark, "1", "PX", MARK_TTL_MS), ("WAIT", 1, self.wait_ms))
        if isinstance(self.redis, RedisCluster):
            return await _on_node_connection(self.redis, mark, commands)
        pipe = Pipeline(self.redis.connection_pool, self.redis.response_callbacks, False, None)
        async with pipe:
            for command in commands:
                pipe.execute_command(*command)
            _, acked = await pipe.execute()
        return int(acked)


async def _on_node_connection(
    cluster: RedisCluster, key: str, commands: tuple[tuple[Any, ...], ...]
) -> int:
    """Send `commands` back to back on one connection of the master of `key`'s slot."""
    await cluster.initialize()
    node = cluster.get_node_from_key(key)
    if node is None:
        raise QueueUnavailable("no master serves the job's slot")
    connection = node.acquire_connection()
    try:
        await connection.send_packed_command(connection.pack_commands(commands))
        replies = [await connection.read_response() for _ in commands]
    except BaseException:
        await connection.disconnect()  # replies may still be in flight: never reuse it
        raise
    finally:
        node.release(connection)
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return int(replies[-1])


async def replicas_attached(redis: Any) -> bool:
    """True when every master of the store has at least one replica attached."""
    if isinstance(redis, RedisCluster):
        infos = await redis.info("replication", target_nodes=RedisCluster.PRIMARIES)
        # One node answers its INFO; several answer a dict of node name -> INFO.
        per_node = [infos] if "role" in infos else list(infos.values())
        return bool(per_node) and all(int(i.get("connected_slaves", 0)) > 0 for i in per_node)
    info = await redis.info("replication")
    return int(info.get("connected_slaves", 0)) > 0
