"""SlotRedis, the fast engine's client on a cluster, against a real 3-master cluster.

It must send a slot's commands to that slot's master, follow the slot when it is
told the slot lives elsewhere (MOVED), and find the master again after its
connection is lost. The failover itself is `tests/reliability/test_cluster_failover.py`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from conftest import ValkeyCluster
from errand.redisio.connection import connect, warm_up
from errand.redisio.slotclient import SlotRedis, slot_client
from support.stack import test_settings as settings_for


@pytest.fixture
async def clients(valkey_cluster: ValkeyCluster) -> AsyncIterator[tuple[Any, SlotRedis, str]]:
    settings = settings_for(valkey_cluster.url)
    cluster = connect(settings)
    await warm_up(cluster)
    tag = settings.queue_prefix
    client = slot_client(cluster, tag)
    yield cluster, client, tag
    await client.aclose()
    await cluster.aclose()


def master_of(cluster: Any, key: str) -> tuple[str, int]:
    node = cluster.get_node_from_key(key)
    return node.host, int(node.port)


async def test_commands_go_to_the_master_of_the_slot(clients: Any) -> None:
    cluster, client, tag = clients
    assert await client.set(f"{tag}:a", "1") is True
    assert client.address == master_of(cluster, tag)
    assert await cluster.get(f"{tag}:a") == "1"
    await client.delete(f"{tag}:a")


async def test_a_moved_reply_is_followed_and_the_command_runs_once(clients: Any) -> None:
    cluster, client, tag = clients
    await client.ping()
    owner = master_of(cluster, tag)
    other = next(
        (n.host, int(n.port)) for n in cluster.get_primaries() if (n.host, int(n.port)) != owner
    )
    await client._move_to(*other)  # as if the slot had moved away from under it
    assert client.address == other
    assert await client.incr(f"{tag}:n") == 1, "MOVED means not run: sent once, where it lives"
    assert client.address == owner
    assert await cluster.get(f"{tag}:n") == "1"
    await client.delete(f"{tag}:n")


async def test_keys_of_other_slots_are_followed_there_and_back(clients: Any) -> None:
    # The map always names the client's own slot's master; a MOVED for a key elsewhere
    # must be followed to where the reply says, not back to the map's node.
    cluster, client, tag = clients
    other = next(
        f"{{o{n}}}:k"
        for n in range(100)
        if master_of(cluster, f"{{o{n}}}") != master_of(cluster, tag)
    )
    for _ in range(3):
        assert await client.set(other, "v") is True
        assert await client.set(f"{tag}:c", "w") is True
    assert await cluster.get(other) == "v" and await cluster.get(f"{tag}:c") == "w"
    await cluster.delete(other)
    await client.delete(f"{tag}:c")


async def test_a_lost_connection_finds_the_master_again(clients: Any) -> None:
    cluster, client, tag = clients
    await client.set(f"{tag}:b", "x")
    wire = client._wire
    assert wire is not None
    wire.close()  # the link dies (a failover, a restart)
    assert await client.get(f"{tag}:b") == "x"
    assert client._wire is not wire and client.address == master_of(cluster, tag)
    await client.delete(f"{tag}:b")
