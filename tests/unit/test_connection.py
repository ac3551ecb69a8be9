"""Connection settings: blocking BullMQ connections must outlive their longest block."""

from __future__ import annotations

import redis.asyncio as aioredis

from errand.engine.marker import MAX_BLOCK_S
from errand.jobids import QueueName
from errand.redisio.connection import bullmq_connection, with_socket_timeout
from errand.settings import Settings


def test_blocking_connections_do_not_time_out_mid_block() -> None:
    # redis-py's default 5 s read timeout cut idle BZPOPMIN / XREAD waits short, so an
    # idle worker fell into its error backoff and picked up the next job seconds late.
    url = bullmq_connection(Settings(redis_url="redis://127.0.0.1:6399/0"))
    client = aioredis.from_url(url)
    assert client.connection_pool.connection_kwargs["socket_timeout"] > MAX_BLOCK_S


def test_an_explicit_socket_timeout_in_the_url_wins() -> None:
    assert with_socket_timeout("redis://h:1/0?socket_timeout=3", 30).endswith("socket_timeout=3")
    assert with_socket_timeout("redis://u:p@h:1/2", 30) == "redis://u:p@h:1/2?socket_timeout=30"


def test_one_cluster_client_holds_every_marker_wait_of_a_fast_worker() -> None:
    # The fast engine blocks on each partition's and queue's marker through one cluster
    # client; redis-py's default cap (100 a node) fails the 101st at once.
    settings = Settings(redis_url="redis+cluster://127.0.0.1:6399", partitions=240)
    client = bullmq_connection(settings)
    cap = client.nodes_manager.connection_kwargs["max_connections"]
    assert cap >= len(QueueName) * settings.partitions
