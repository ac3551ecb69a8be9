"""Redis clients: one pool per process, standalone or cluster."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from errand.settings import Settings

RedisClient = aioredis.Redis | RedisCluster

CLUSTER_SCHEME = "redis+cluster://"


def redis_url(settings: Settings) -> str:
    if settings.redis_url is None:
        raise RuntimeError("ERRAND_REDIS_URL is not set and no embedded server was started")
    return settings.redis_url


def is_cluster(settings: Settings) -> bool:
    return settings.redis_cluster or redis_url(settings).startswith(CLUSTER_SCHEME)


def connect(settings: Settings, **overrides: Any) -> Any:
    """A redis-py asyncio client for errand's data (decoded strings, short retries).

    Returns `Any` because bullmq and redis-py type their clients loosely; callers
    treat it as `redis.asyncio.Redis`.
    """
    url = redis_url(settings)
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_connect_timeout": 2.0,
        "health_check_interval": 0,
        "retry": Retry(ExponentialBackoff(cap=1.0, base=0.05), 3),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
    }
    options.update(overrides)
    if is_cluster(settings):
        url = "redis://" + url.removeprefix(CLUSTER_SCHEME)
        options.pop("health_check_interval", None)
        return RedisCluster.from_url(url, **options)
    # A bounded pool: a burst of 2,000 long-polls queues for connections instead of
    # opening 2,000 of them.
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=settings.redis_pool_size, timeout=20.0, **options
    )
    return aioredis.Redis(connection_pool=pool)
