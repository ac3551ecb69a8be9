"""The `default` client `errand up` makes on its first start, its key kept in the data dir."""

from __future__ import annotations

import asyncio
from pathlib import Path

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from errand import secrets_store
from errand.access.clients import ClientStore, LimitOverrides
from errand.errors import NotFound
from errand.keys import DEFAULT_CLIENT_NAME, Keys
from errand.redisio.connection import connect
from errand.server.preflight import StartupError
from errand.settings import Settings

CONNECT_TIMEOUT_S = 30.0


async def _ensure(store: ClientStore, data_dir: Path) -> None:
    stored = secrets_store.load_or_create(data_dir)
    if stored.api_key is not None and await store.resolve(stored.api_key) is not None:
        return  # the key of an earlier start still works
    if stored.client_id is not None:
        try:  # the client is there but its key is not (revoked): a new key, same client
            issued = await store.add_key(stored.client_id)
        except NotFound:
            pass  # the store lost the client (a fresh Redis): make it again
        else:
            secrets_store.save_api_key(data_dir, stored.client_id, issued.api_key)
            return
    client, issued = await store.create(DEFAULT_CLIENT_NAME, LimitOverrides())
    secrets_store.save_api_key(data_dir, client.client_id, issued.api_key)


async def _ensure_on(settings: Settings, data_dir: Path) -> None:
    redis = connect(settings)
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            while True:
                try:
                    await redis.ping()
                    break
                except (RedisConnectionError, RedisTimeoutError, OSError):
                    await asyncio.sleep(0.2)  # an external Redis may still be starting
        await _ensure(
            ClientStore(redis, Keys(settings.queue_prefix, settings.partitions)), data_dir
        )
    finally:
        await redis.aclose()


def ensure_default_client(settings: Settings, redis_url: str, data_dir: Path) -> None:
    """Make sure the data dir holds a live key of the `default` client.

    Reuses the key of an earlier start; gives the client a new key when its key was
    revoked; makes the client again when the store lost it. Raises StartupError when
    Redis does not answer within CONNECT_TIMEOUT_S.
    """
    settings = settings.model_copy(update={"redis_url": redis_url})
    try:
        asyncio.run(_ensure_on(settings, data_dir))
    except TimeoutError as err:
        raise StartupError(
            f"Redis did not answer within {CONNECT_TIMEOUT_S:g} s to make the default client"
        ) from err
