"""Live worker processes, from the heartbeats they publish (see engine/runner.py)."""

from __future__ import annotations

from typing import Any

import orjson

from errand.clock import iso_ms, now_ms
from errand.keys import Keys
from errand.settings import Settings

STALE_AFTER_BEATS = 3


async def live_workers(redis: Any, keys: Keys, settings: Settings) -> list[dict[str, Any]]:
    """Workers seen within three heartbeats; older entries are pruned on the way."""
    raw: dict[str, str] = await redis.hgetall(keys.workers())
    horizon = now_ms() - int(STALE_AFTER_BEATS * settings.heartbeat_seconds * 1000)
    live, stale = [], []
    for worker_id, value in raw.items():
        record = orjson.loads(value)
        if int(record.get("lastSeen", 0)) < horizon:
            stale.append(worker_id)
            continue
        live.append(
            {
                "id": worker_id,
                "pid": record.get("pid"),
                "host": record.get("host"),
                "queues": record.get("queues", []),
                "partitions": record.get("partitions", "0"),
                "lastSeen": iso_ms(int(record["lastSeen"])),
            }
        )
    if stale:
        await redis.hdel(keys.workers(), *stale)
    return sorted(live, key=lambda w: str(w["id"]))
