"""The per-client limits, shared by every API process through Redis: the rate-limit token
bucket, the per-recipient notification window, and the queue-depth cap.

The bucket and the window are each one Lua script over one key that reads the server's
`TIME`: atomic (no read-modify-write race between API processes) and independent of
the API hosts' clocks.
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass
from typing import Any

from errand.access.clients import RateLimit
from errand.keys import Keys, QueueName

# KEYS[1] the bucket (hash: tokens, ms). ARGV: tokens per ms, burst.
# Returns {1 or 0 (taken), tokens left after it, as a string (Lua numbers become integers)}.
_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ms')
local tokens = tonumber(b[1])
local last = tonumber(b[2])
if tokens == nil or last == nil then
  tokens = burst
else
  tokens = math.min(burst, tokens + math.max(0, now - last) * rate)
end
local taken = 0
if tokens >= 1 then
  tokens = tokens - 1
  taken = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ms', now)
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate) + 1000)
return {taken, tostring(tokens)}
"""

# KEYS[1] the window (sorted set of ms). ARGV: cap, window in ms, a unique member.
# Returns 0 when admitted (and recorded), else the ms until the oldest entry leaves.
_ADMIT = """
local cap = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= cap then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return 0
"""

# The same for the items of a batch, in order, in one call. KEYS: the windows of its
# distinct users. ARGV: cap, window in ms, the number of items n, then per item the index
# of its window in KEYS and a unique member. Returns per item 0 or the ms to wait.
_ADMIT_MANY = """
local cap, window, n = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local counts, added, waits = {}, {}, {}
for i = 1, n do
  local k = tonumber(ARGV[2 + i * 2])
  local key = KEYS[k]
  local count = counts[k]
  if not count then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
    count = redis.call('ZCARD', key)
  end
  if count >= cap then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    waits[i] = math.max(1, tonumber(oldest[2]) + window - now)
  else
    redis.call('ZADD', key, now, ARGV[3 + i * 2])
    count = count + 1
    added[k] = true
    waits[i] = 0
  end
  counts[k] = count
end
for k in pairs(added) do redis.call('PEXPIRE', KEYS[k], window) end
return waits
"""

# KEYS: wait, paused, prioritized, delayed of one queue. The jobs waiting or scheduled.
_DEPTH = """
return redis.call('LLEN', KEYS[1]) + redis.call('LLEN', KEYS[2])
  + redis.call('ZCARD', KEYS[3]) + redis.call('ZCARD', KEYS[4])
"""

RECIPIENT_WINDOW_MS = 3_600_000
# Far below the depth cap, a process rereads the depth at most once a second; within
# this many jobs of it, on every POST.
DEPTH_MARGIN = 10_000
DEPTH_REREAD_S = 1.0


@dataclass(frozen=True, slots=True)
class Quota:
    """One request's pass through a bucket: taken or not, and the RateLimit-* numbers."""

    taken: bool
    limit: int
    remaining: int
    reset_s: int
    retry_after_s: int

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_s),
        }


def quota_from(rate: RateLimit, taken: bool, tokens: float) -> Quota:
    """The headers' numbers for `tokens` left in a bucket of `rate`."""
    return Quota(
        taken=taken,
        limit=rate.burst,
        remaining=max(0, math.floor(tokens)),
        reset_s=max(0, math.ceil((rate.burst - tokens) / rate.per_second)),
        retry_after_s=max(1, math.ceil((1 - tokens) / rate.per_second)),
    )


class Limits:
    """The limits of one API process, over its Redis connection."""

    def __init__(self, redis: Any, keys: Keys, max_queue_depth: int) -> None:
        self.redis = redis
        self.keys = keys
        self.max_queue_depth = max_queue_depth
        self._take = redis.register_script(_TAKE)
        self._admit = redis.register_script(_ADMIT)
        self._admit_many = redis.register_script(_ADMIT_MANY)
        self._depth = redis.register_script(_DEPTH)
        self._depth_seen: dict[QueueName, tuple[float, int]] = {}

    async def take(self, client_id: str, rate: RateLimit) -> Quota | None:
        """Take a token from the client's bucket; None when the client has no limit."""
        if rate.unlimited:
            return None
        reply = await self._take(
            keys=[self.keys.rate_bucket(client_id)],
            args=[rate.per_second / 1000, rate.burst],
        )
        return quota_from(rate, bool(int(reply[0])), float(reply[1]))

    async def admit_recipient(self, client_id: str, user_id: str, cap: int) -> int:
        """Count one notification for `user_id`: 0 when admitted, else the seconds until one
        more would be (nothing counted). A cap of 0 admits everything without a call."""
        if cap <= 0:
            return 0
        wait_ms = await self._admit(
            keys=[self.keys.recipient_window(client_id, user_id)],
            args=[cap, RECIPIENT_WINDOW_MS, secrets.token_hex(8)],
        )
        return math.ceil(int(wait_ms) / 1000)

    async def admit_recipients(self, client_id: str, user_ids: list[str], cap: int) -> list[int]:
        """`admit_recipient` for each of `user_ids` in order (a batch's items), in one call:
        per item 0 when admitted, else the seconds until one more would be."""
        if cap <= 0 or not user_ids:
            return [0] * len(user_ids)
        windows: dict[str, int] = {}
        args: list[Any] = [cap, RECIPIENT_WINDOW_MS, len(user_ids)]
        for user_id in user_ids:
            args += [windows.setdefault(user_id, len(windows) + 1), secrets.token_hex(8)]
        keys = [self.keys.recipient_window(client_id, user_id) for user_id in windows]
        waits_ms = await self._admit_many(keys=keys, args=args)
        return [math.ceil(int(wait_ms) / 1000) for wait_ms in waits_ms]

    async def _queue_depth(self, queue: QueueName) -> int:
        """Jobs not yet started, over every partition (one script per partition: each
        reads one partition's keys, so each stays in one cluster slot)."""
        keys, depth = self.keys, 0
        for part in range(keys.partitions):
            states = ("wait", "paused", "prioritized", "delayed")
            depth += int(await self._depth(keys=[keys.queue(queue, s, part) for s in states]))
        return depth

    async def queue_full(self, queue: QueueName) -> bool:
        """True when one more job would put `queue` over the depth cap.

        Checked before the job is added, not with it: concurrent POSTs near the cap can
        overshoot it by as many as are in flight at once.
        """
        cap = self.max_queue_depth
        if cap <= 0:
            return False
        now = time.monotonic()
        seen = self._depth_seen.get(queue)
        if seen is not None and now - seen[0] < DEPTH_REREAD_S and seen[1] + DEPTH_MARGIN < cap:
            return False
        depth = await self._queue_depth(queue)
        self._depth_seen[queue] = (now, depth)
        return depth + 1 > cap
