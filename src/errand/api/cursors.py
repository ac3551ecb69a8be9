"""Opaque, tamper-evident GET /jobs cursors: a position in the index, signed by the server.

A cursor is `base64url(payload) . base64url(HMAC-SHA256(key, payload))`; the payload
is `[version, filter fingerprint, score, member, as_of]`. The key is 32 random bytes
kept in Redis (`Keys.cursor_secret`, created by the first API process that needs it),
so every API process accepts every other's cursors. A cursor that was altered, cut,
made for other filters or another client, or by another server fails verification.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import weakref
from typing import Any

import orjson

from errand.errors import FieldError, InvalidInput
from errand.keys import Keys
from errand.queue.listing import JobFilter, Position

_VERSION = 1
_KEYS: weakref.WeakKeyDictionary[Any, bytes] = weakref.WeakKeyDictionary()


async def cursor_key(redis: Any, keys: Keys) -> bytes:
    """The HMAC key shared by every API process (made on first use, then cached)."""
    cached = _KEYS.get(redis)
    if cached is None:
        key = keys.cursor_secret()
        await redis.set(key, secrets.token_hex(32), nx=True)
        cached = bytes.fromhex(await redis.get(key))
        _KEYS[redis] = cached
    return cached


def fingerprint(flt: JobFilter) -> str:
    """A digest of everything that selects the listing, client included."""
    canonical = orjson.dumps(
        [
            flt.client_id,
            sorted(flt.queues),
            sorted(flt.statuses),
            flt.kind,
            flt.user_id,
            flt.created_after_ms,
            flt.created_before_ms,
        ]
    )
    return hashlib.sha256(canonical).hexdigest()[:32]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode(key: bytes, flt: JobFilter, position: Position, as_of: int) -> str:
    payload = orjson.dumps([_VERSION, fingerprint(flt), position.score, position.member, as_of])
    signature = hmac.new(key, payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(signature)}"


def decode(key: bytes, flt: JobFilter, cursor: str) -> tuple[Position, int]:
    """(position, as_of) of a cursor this server made for these filters.

    Raises InvalidInput for anything else.
    """
    try:
        body, _, sig = cursor.partition(".")
        payload, signature = _unb64(body), _unb64(sig)
    except (binascii.Error, ValueError):
        raise _bad_cursor() from None
    expected = hmac.new(key, payload, hashlib.sha256).digest()
    if not hmac.compare_digest(signature, expected):
        raise _bad_cursor()
    version, fp, score, member, as_of = orjson.loads(payload)
    if version != _VERSION or fp != fingerprint(flt):
        raise _bad_cursor("this cursor was made for other filters")
    return Position(float(score), str(member)), int(as_of)


def _bad_cursor(why: str = "this server did not make this cursor") -> InvalidInput:
    return InvalidInput(why, [FieldError("cursor", why)])
