"""SlotRedis: the pipelined client bound to the master that owns one cluster hash slot.

Every key of a queue partition shares one hash slot (keys.py), so the fast engine can
send a partition's scripts to one master over one pipelined connection instead of
through redis-py's cluster client (several times its CPU per command). The master is
looked up in the process's `RedisCluster` map and followed as it moves:

- a `MOVED` reply (the slot migrated, or the node we talk to became a replica): the
  command did not run there, so it is sent again to the node the reply names;
- an `ASK` reply (the slot is being migrated): that one command goes through the
  cluster client, which sends it with `ASKING` to the importing node;
- a lost or refused connection (a failover): the next connection first refreshes the
  cluster's map (one `CLUSTER SLOTS` shared by the clients that ask at once) and
  connects to the slot's master as it now stands. While the slot has no master the
  commands fail (connection refused, `CLUSTERDOWN`) and their callers back off.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import AskError, MovedError, SlotNotCoveredError
from redis.exceptions import ConnectionError as RedisConnectionError

from errand.redisio.pipelined import PipelinedRedis
from errand.redisio.wire import Wire

# A slot moved twice while one command chased it is a resharding storm: give up, the
# caller retries later.
MAX_MOVES = 2
# What a slot's connection inherits from the cluster client's node connections.
_INHERITED = (
    "username",
    "password",
    "decode_responses",
    "encoding",
    "encoding_errors",
    "protocol",
    "socket_connect_timeout",
    "socket_timeout",
    "client_name",
)


class SlotRedis(PipelinedRedis):
    """A PipelinedRedis for the keys of `key`'s hash slot, on that slot's master."""

    def __init__(self, cluster: RedisCluster, key: str) -> None:
        source = cluster.nodes_manager.connection_kwargs
        kwargs = {k: source[k] for k in _INHERITED if source.get(k) is not None}
        super().__init__(host="localhost", port=0, **kwargs)
        self.cluster_client = cluster
        self.slot = key_slot(key.encode())
        self._placed = False  # whether host and port name the slot's master yet
        self._refresh = False  # whether the cluster's map must be re-read first

    @property
    def address(self) -> tuple[str, int]:
        """The master this client sends to (or last sent to)."""
        kw = self.connection_pool.connection_kwargs
        return str(kw["host"]), int(kw["port"])

    async def _connect(self) -> Wire:
        if self._wire is not None:  # a connection broke: the slot may have a new master
            self._refresh = True
        if self._refresh or not self._placed:
            await self._find_master(refresh=self._refresh)
        try:
            wire = await super()._connect()
        except (OSError, RedisConnectionError, TimeoutError):
            self._refresh = True  # refused: ask the cluster again on the next try
            raise
        self._refresh = False
        return wire

    async def _find_master(self, *, refresh: bool) -> None:
        """Point at the slot's master in the cluster client's map, refreshing it first
        when asked (after a lost connection) or when the map does not cover the slot."""
        manager = self.cluster_client.nodes_manager
        if refresh or not manager.slots_cache:
            await manager.initialize()
        try:
            node = manager.get_node_from_slot(self.slot)
        except SlotNotCoveredError:
            await manager.initialize()
            node = manager.get_node_from_slot(self.slot)
        await self._move_to(node.host, int(node.port))
        self._placed = True

    async def _move_to(self, host: str, port: int) -> None:
        if (host, port) == self.address:
            return
        pool = self.connection_pool
        pool.connection_kwargs.update(host=host, port=port)
        if self._wire is not None:
            # Closed on purpose, not lost: the next connection goes to `host` as it is,
            # without re-reading a map that may not know of the move yet.
            self._wire.close()
            self._wire = None
        await pool.disconnect()  # pooled connections (blocking commands) follow too

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        for moves in range(MAX_MOVES + 1):
            try:
                return await super().execute_command(*args, **options)
            except MovedError as err:  # not run there: send it where the slot is now
                if moves == MAX_MOVES:
                    raise
                await self._move_to(err.host, int(err.port))
            except AskError:  # a migration in progress: the cluster client does ASKING
                return await self.cluster_client.execute_command(*args, **options)
        raise AssertionError("unreachable")


def slot_client(cluster: RedisCluster, key: str) -> SlotRedis:
    """A SlotRedis for `key`'s slot; it owns its connections (close it with aclose())."""
    client = SlotRedis(cluster, key)
    client.auto_close_connection_pool = True
    return client
