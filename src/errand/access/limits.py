"""The per-client limits, shared by every API process through Redis: the rate-limit token
bucket, the per-recipient notification window, and the queue-depth cap.

The bucket and the window are each one Lua script over one key that reads the server's
`TIME`: atomic (no read-modify-write race between API processes) and independent of
the API hosts' clocks.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from dataclasses import dataclass
from typing import Any

from errand.access.clients import RateLimit
from errand.jobids import QueueName
from errand.keys import Keys

# KEYS[1] the bucket (hash: tokens, ms). ARGV: tokens per ms, burst, tokens wanted (1, or
# more to hold some in advance), the fewest tokens a take of more than one may leave.
# Returns {tokens taken (0, 1, or all wanted), tokens left after it, as a string (Lua
# numbers become integers)}.
_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local keep = tonumber(ARGV[4])
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
  taken = 1
  if want > 1 and tokens - want >= keep then taken = want end
  tokens = tokens - taken
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
# A busy client's tokens held in advance by one API process (see `Limits.take`).
HOLD_MAX = 32
HOLD_S = 0.5
HOLDERS_MAX = 10_000  # clients held for at once; past it the holds start over
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


@dataclass(slots=True)
class _Held:
    """Tokens one API process took from a client's bucket ahead of its requests."""

    rate: RateLimit
    until: float  # monotonic: spent by then, or never
    left: int
    bucket: float  # the tokens the bucket kept when these were taken
    asking: asyncio.Future[None] | None = None  # a take for more, on its way
    short: bool = False  # the bucket would not give more: every take is one token

    def valid(self, rate: RateLimit, now: float) -> bool:
        return self.rate == rate and now < self.until


def hold_size(rate: RateLimit) -> int:
    """How many tokens a process may take ahead for a busy client of `rate`."""
    return min(HOLD_MAX, rate.burst // 16)


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
        self._depth_reads: dict[QueueName, asyncio.Future[int]] = {}
        self._held: dict[str, _Held] = {}

    async def take(self, client_id: str, rate: RateLimit) -> Quota | None:
        """Take a token from the client's bucket; None when the client has no limit.

        A client this process took a token for within HOLD_S is busy: its next take asks
        for up to `hold_size` tokens more, which the bucket grants only while it keeps at
        least half its burst, and this process spends them on the client's next requests
        within HOLD_S (unspent, they are lost). Near the limit every take is one token
        from the shared bucket, as exact as without holds; far from it, other processes
        see the held tokens gone, and RateLimit-Remaining counts this process's own.
        No request is ever admitted on a token the bucket did not give.
        """
        if rate.unlimited:
            return None
        held = self._held.get(client_id)
        while held is not None and held.asking is not None and held.valid(rate, time.monotonic()):
            await asyncio.shield(held.asking)  # its tokens may serve this request too
            if held.left > 0:
                break
        if held is not None and not held.valid(rate, time.monotonic()):
            held = None
        if held is not None and held.left > 0:
            held.left -= 1
            return quota_from(rate, True, held.bucket + held.left)
        ahead = hold_size(rate) if held is not None and not held.short else 0
        if held is None or not ahead:
            return await self._take_from_bucket(client_id, rate, 0)
        held.asking = asking = asyncio.get_running_loop().create_future()
        try:
            quota = await self._take_from_bucket(client_id, rate, ahead)
            held.short = held.left == 0  # near the limit: one token a take, no waiting
            return quota
        finally:
            held.asking = None
            asking.set_result(None)

    async def _take_from_bucket(self, client_id: str, rate: RateLimit, ahead: int) -> Quota:
        """One token from the shared bucket, and up to `ahead` more to hold."""
        reply = await self._take(
            keys=[self.keys.rate_bucket(client_id)],
            args=[rate.per_second / 1000, rate.burst, 1 + ahead, rate.burst / 2],
        )
        taken, bucket = int(reply[0]), float(reply[1])
        if taken:
            self._keep(client_id, rate, taken - 1, bucket)
        return quota_from(rate, taken > 0, bucket + max(0, taken - 1))

    def _keep(self, client_id: str, rate: RateLimit, extra: int, bucket: float) -> None:
        """Note a take for `client_id` (busy from now on), holding `extra` tokens."""
        now = time.monotonic()
        held = self._held.get(client_id)
        if held is not None and held.valid(rate, now):
            if extra:
                held.left += extra
                held.bucket, held.until = bucket, now + HOLD_S
            return
        if len(self._held) >= HOLDERS_MAX:
            self._held.clear()
        self._held[client_id] = _Held(rate, now + HOLD_S, extra, bucket)

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
        """Jobs not yet started, over every partition (one script per partition, sent at
        once: each reads one partition's keys, so each stays in one cluster slot)."""
        keys, states = self.keys, ("wait", "paused", "prioritized", "delayed")
        depths = await asyncio.gather(
            *(
                self._depth(keys=[keys.queue(queue, s, part) for s in states])
                for part in range(keys.partitions)
            )
        )
        return sum(int(d) for d in depths)

    async def queue_full(self, queue: QueueName) -> bool:
        """True when one more job would put `queue` over the depth cap.

        Checked before the job is added, not with it: concurrent POSTs near the cap can
        overshoot it by as many as are in flight at once. Far below the cap a depth
        older than DEPTH_REREAD_S answers while one read refreshes it; near it (or with
        none yet) the POST waits for a read. Concurrent POSTs share one read.
        """
        cap = self.max_queue_depth
        if cap <= 0:
            return False
        seen = self._depth_seen.get(queue)
        if seen is not None and seen[1] + DEPTH_MARGIN < cap:
            if time.monotonic() - seen[0] >= DEPTH_REREAD_S:
                self._read_depth(queue)
            return False
        depth = await asyncio.shield(self._read_depth(queue))
        return depth + 1 > cap

    def _read_depth(self, queue: QueueName) -> asyncio.Future[int]:
        """The read of `queue`'s depth in flight, or a new one (which records its result)."""
        reading = self._depth_reads.get(queue)
        if reading is None:
            reading = asyncio.ensure_future(self._record_depth(queue))
            self._depth_reads[queue] = reading
            reading.add_done_callback(lambda done: self._read_done(queue, done))
        return reading

    async def _record_depth(self, queue: QueueName) -> int:
        started = time.monotonic()
        depth = await self._queue_depth(queue)
        self._depth_seen[queue] = (started, depth)
        return depth

    def _read_done(self, queue: QueueName, done: asyncio.Future[int]) -> None:
        self._depth_reads.pop(queue, None)
        if not done.cancelled() and done.exception() is not None:
            self._depth_seen.pop(queue, None)  # the next POST reads again, and waits for it
