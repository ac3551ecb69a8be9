"""Redis clients: one pool per process, standalone or cluster."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from errand.redisio.pipelined import PipelinedRedis
from errand.settings import Settings

# Connections that block (BullMQ's BZPOPMIN, QueueEvents' XREAD) wait up to 10 s on
# purpose; redis-py's default 5 s socket timeout would cut them off mid-wait.
BLOCKING_SOCKET_TIMEOUT_S = 30

RedisClient = aioredis.Redis | RedisCluster

log = logging.getLogger("errand.redis")

CLUSTER_SCHEME = "redis+cluster://"

# redis-py's cluster client has no waiting pool: past `max_connections` to one node (its
# default is 100) a command fails at once with MaxConnectionsError. A worker on a
# cluster runs one bullmq Worker per partition, up to concurrency x partitions jobs at
# once on one client (16 x 32 by default), and the fast engine blocks on every
# partition's and queue's marker through one client (3 x partitions), so its cap must be
# above that.
CLUSTER_NODE_CONNECTIONS = 2048


def redis_url(settings: Settings) -> str:
    if settings.redis_url is None:
        raise RuntimeError("ERRAND_REDIS_URL is not set and no embedded server was started")
    return settings.redis_url


def is_cluster(settings: Settings) -> bool:
    return settings.redis_cluster or redis_url(settings).startswith(CLUSTER_SCHEME)


def cluster_url(settings: Settings) -> str:
    """The URL redis-py's RedisCluster takes: any one node, `redis://` (or `rediss://`)."""
    url = redis_url(settings)
    if url.startswith(CLUSTER_SCHEME):
        return "redis://" + url.removeprefix(CLUSTER_SCHEME)
    return url


def bullmq_connection(settings: Settings) -> Any:
    """The `connection` option for a BullMQ Worker or QueueEvents.

    A single server: the URL, and BullMQ opens its own dedicated, retrying connection.
    A cluster: a fresh RedisCluster client per call (BullMQ cannot build one from a URL,
    and closes the client it is given when it closes). No socket timeout there: the
    worker's BZPOPMIN and the event reader's XREAD block for seconds on purpose.
    """
    if not is_cluster(settings):
        return with_socket_timeout(redis_url(settings), BLOCKING_SOCKET_TIMEOUT_S)
    return RedisCluster.from_url(
        cluster_url(settings),
        decode_responses=True,
        socket_connect_timeout=2.0,
        socket_timeout=None,
        max_connections=CLUSTER_NODE_CONNECTIONS,
        retry=Retry(ExponentialBackoff(cap=5.0, base=0.1), 10),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )


def connect(settings: Settings, *, pipelined: bool = False, **overrides: Any) -> Any:
    """A redis-py asyncio client for errand's data (decoded strings, short retries).

    With `pipelined`, a single server gets a PipelinedRedis: the same client, but its
    non-blocking commands share one pipelined connection (redisio/pipelined.py), several
    times cheaper per command in CPU. Returns `Any` because bullmq and redis-py type
    their clients loosely; callers treat it as `redis.asyncio.Redis`.
    """
    url = redis_url(settings)
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_connect_timeout": 2.0,
        "socket_timeout": settings.redis_timeout_s,  # no blocking command uses this client
        "health_check_interval": 0,
        "retry": Retry(ExponentialBackoff(cap=1.0, base=0.05), 3),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
    }
    options.update(overrides)
    if is_cluster(settings):
        options.pop("health_check_interval", None)
        options.setdefault("max_connections", CLUSTER_NODE_CONNECTIONS)
        return RedisCluster.from_url(cluster_url(settings), **options)
    # A bounded pool: a burst of 2,000 long-polls queues for connections instead of
    # opening 2,000 of them.
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=settings.redis_pool_size, timeout=20.0, **options
    )
    client_class = PipelinedRedis if pipelined else aioredis.Redis
    return client_class.from_pool(pool)  # the client owns the pool: aclose() closes it


async def ready_for_multi(client: Any) -> None:
    """Call before a MULTI pipeline (`pipeline(transaction=True)`) on a client that may be
    a cluster's.

    redis-py's cluster transaction pipeline (pinned 8.1) queues every command on a thread
    with an event loop of its own, and initializes the client there when it has not been
    (a fresh client, or one that lost a node): the connections it opens then belong to a
    loop that is gone, and the next command fails with "attached to a different loop".
    Initializing in the caller's loop first leaves that thread only slot arithmetic.
    """
    if isinstance(client, RedisCluster):
        await client.initialize()


async def warm_up(client: Any) -> None:
    """Learn a cluster's nodes now, before the process serves anything.

    redis-py's cluster client (pinned 8.1) learns the topology on its first command; a
    burst of concurrent first commands then races that discovery, and one of them can
    find its connection closed under it (an AttributeError, not a connection error).
    A store that does not answer yet is not an error here: the first command retries.
    """
    if isinstance(client, RedisCluster):
        try:
            await client.initialize()
        except Exception as exc:  # the store may come up later; commands retry then
            log.warning("the Redis Cluster is not reachable yet: %s", type(exc).__name__)


def with_socket_timeout(url: str, timeout_s: float) -> str:
    """`url` with a `socket_timeout` query parameter (redis-py reads it), unless it has one."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.setdefault("socket_timeout", str(timeout_s))
    return urlunsplit(parts._replace(query=urlencode(query)))


def url_of(client: Any) -> str:
    """The `redis://` URL of a standalone client's pool, for a second connection like it."""
    kw = client.connection_pool.connection_kwargs
    auth = f"{kw.get('username') or ''}:{kw['password']}@" if kw.get("password") else ""
    return f"redis://{auth}{kw.get('host', 'localhost')}:{kw.get('port', 6379)}/{kw.get('db') or 0}"
