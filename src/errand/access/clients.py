"""Clients and their API keys in Redis: create, list, rotate, revoke, and resolve a key.

A key reads `ek_<keyId>_<secret>`: `keyId` (16 hex characters) names it in admin
answers and finds its record; `secret` is `secrets.token_urlsafe(24)` (192 random
bits). Only the SHA-256 of the whole key is stored, and `resolve` compares it in
constant time. A key record also carries its client's limit overrides (fixed at
creation), so resolving a key is one HGETALL.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

import orjson

from errand.clock import now_ms
from errand.errors import NotFound
from errand.keys import Keys

KEY_PREFIX = "ek"
_SECRET_BYTES = 24


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket: `per_second` tokens a second, up to `burst`; 0 in either = no limit."""

    per_second: float
    burst: int

    @property
    def unlimited(self) -> bool:
        return self.per_second <= 0 or self.burst <= 0


@dataclass(frozen=True, slots=True)
class LimitOverrides:
    """A client's own limits, set at creation; None = the server's default at the time of use."""

    rate: RateLimit | None = None
    notify_per_user_per_hour: int | None = None

    def encode(self) -> str:
        rate = None if self.rate is None else [self.rate.per_second, self.rate.burst]
        return orjson.dumps({"rate": rate, "notify": self.notify_per_user_per_hour}).decode()

    @classmethod
    def decode(cls, raw: str | None) -> LimitOverrides:
        if not raw:
            return cls()
        stored: dict[str, Any] = orjson.loads(raw)
        rate = stored.get("rate")
        return cls(
            None if rate is None else RateLimit(float(rate[0]), int(rate[1])),
            stored.get("notify"),
        )


@dataclass(frozen=True, slots=True)
class KeyInfo:
    key_id: str
    created_ms: int


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A new key: `api_key` exists only in this object and the answer that shows it."""

    key_id: str
    api_key: str
    created_ms: int


@dataclass(frozen=True, slots=True)
class Client:
    client_id: str
    name: str
    created_ms: int
    overrides: LimitOverrides
    keys: tuple[KeyInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class KeyOwner:
    """What a valid key resolves to."""

    client_id: str
    key_id: str
    overrides: LimitOverrides


def key_id_of(api_key: str) -> str | None:
    """The key id of a well-formed API key, else None (no Redis lookup for garbage)."""
    prefix, sep, rest = api_key.partition("_")
    key_id, sep2, secret = rest.partition("_")
    if prefix != KEY_PREFIX or not sep or not sep2 or len(key_id) != 16 or len(secret) < 32:
        return None
    if not all(c in "0123456789abcdef" for c in key_id):
        return None
    return key_id


def _digest(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


class ClientStore:
    """Clients and keys under `keys`; admin writes are MULTI transactions."""

    def __init__(self, redis: Any, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys

    async def create(self, name: str, overrides: LimitOverrides) -> tuple[Client, IssuedKey]:
        """A new client with its first key."""
        client_id = "cl_" + secrets.token_hex(8)
        created = now_ms()
        record = {"name": name, "createdAt": created, "limits": overrides.encode()}
        issued = self._new_key(created)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.keys.client(client_id), mapping=record)
            pipe.zadd(self.keys.clients(), {client_id: created})
            self._queue_key(pipe, client_id, overrides, issued)
            await pipe.execute()
        client = Client(client_id, name, created, overrides, (KeyInfo(issued.key_id, created),))
        return client, issued

    async def add_key(self, client_id: str) -> IssuedKey:
        """Another key for a client (rotation). Raises NotFound for an unknown client."""
        client = await self.get(client_id)
        issued = self._new_key(now_ms())
        async with self.redis.pipeline(transaction=True) as pipe:
            self._queue_key(pipe, client_id, client.overrides, issued)
            await pipe.execute()
        if not await self.redis.exists(self.keys.client(client_id)):  # deleted meanwhile
            await self._drop_keys(client_id, [issued.key_id])
            raise NotFound(f"no client with id {client_id!r}")
        return issued

    async def revoke_key(self, client_id: str, key_id: str) -> None:
        """Revoke one key. Raises NotFound when the client has no such key."""
        if not await self.redis.hexists(self.keys.client_keys(client_id), key_id):
            raise NotFound(f"client {client_id!r} has no key {key_id!r}")
        await self._drop_keys(client_id, [key_id])

    async def delete(self, client_id: str) -> None:
        """Delete a client and revoke all its keys (its jobs run on). Raises NotFound."""
        key_ids = await self.redis.hkeys(self.keys.client_keys(client_id))
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self.keys.client(client_id))
            pipe.zrem(self.keys.clients(), client_id)
            for key_id in key_ids:
                pipe.delete(self.keys.api_key(key_id))
            pipe.delete(self.keys.client_keys(client_id))
            deleted, *_ = await pipe.execute()
        if not deleted:
            raise NotFound(f"no client with id {client_id!r}")

    async def get(self, client_id: str) -> Client:
        """One client with its key ids. Raises NotFound."""
        found = await self._read([client_id])
        if not found:
            raise NotFound(f"no client with id {client_id!r}")
        return found[0]

    async def all(self) -> list[Client]:
        """Every client, oldest first."""
        return await self._read(await self.redis.zrange(self.keys.clients(), 0, -1))

    async def resolve(self, api_key: str) -> KeyOwner | None:
        """The owner of a live key, or None for a malformed, unknown or revoked one."""
        key_id = key_id_of(api_key)
        if key_id is None:
            return None
        record = await self.redis.hgetall(self.keys.api_key(key_id))
        stored = record.get("sha256", "")
        if not hmac.compare_digest(stored.encode(), _digest(api_key).encode()):
            return None
        return KeyOwner(record["clientId"], key_id, LimitOverrides.decode(record.get("limits")))

    # --- helpers ---------------------------------------------------------------------
    @staticmethod
    def _new_key(created_ms: int) -> IssuedKey:
        key_id = secrets.token_hex(8)
        api_key = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(_SECRET_BYTES)}"
        return IssuedKey(key_id, api_key, created_ms)

    def _queue_key(
        self, pipe: Any, client_id: str, overrides: LimitOverrides, issued: IssuedKey
    ) -> None:
        record = {
            "sha256": _digest(issued.api_key),
            "clientId": client_id,
            "limits": overrides.encode(),
        }
        pipe.hset(self.keys.api_key(issued.key_id), mapping=record)
        pipe.hset(self.keys.client_keys(client_id), issued.key_id, issued.created_ms)

    async def _drop_keys(self, client_id: str, key_ids: list[str]) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            for key_id in key_ids:
                pipe.delete(self.keys.api_key(key_id))
                pipe.hdel(self.keys.client_keys(client_id), key_id)
            await pipe.execute()

    async def _read(self, client_ids: list[str]) -> list[Client]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for client_id in client_ids:
                pipe.hgetall(self.keys.client(client_id))
                pipe.hgetall(self.keys.client_keys(client_id))
            replies = await pipe.execute()
        found = []
        for client_id, record, key_map in zip(
            client_ids, replies[0::2], replies[1::2], strict=True
        ):
            if not record:
                continue
            keys = sorted((KeyInfo(k, int(v)) for k, v in key_map.items()), key=_created)
            found.append(
                Client(
                    client_id,
                    record["name"],
                    int(record["createdAt"]),
                    LimitOverrides.decode(record.get("limits")),
                    tuple(keys),
                )
            )
        return found


def _created(info: KeyInfo) -> tuple[int, str]:
    return info.created_ms, info.key_id
