"""The webhook state of a source job: one Redis hash that GET /jobs and GET /notifications render.

Public fields: `status` (pending | delivered | failed), `attempts`,
`lastStatusCode`, `lastError`, `deliveredAt`. Bookkeeping fields: `round` (the
job's current round, see `events.py`), `eventJobId`, `event` and `webhookId` of
the event being delivered. Writes by a delivery job apply only while its event is
the job's current one, so a redriven delivery of an older round's event cannot
overwrite the state of a newer one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from errand.keys import Keys

# ARGV: event job id, event type, webhook id, ttl. Returns 1 when the event is new.
_MARK_PENDING = """
if redis.call('HGET', KEYS[1], 'eventJobId') == ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'eventJobId', ARGV[1], 'event', ARGV[2], 'webhookId', ARGV[3],
           'status', 'pending', 'attempts', 0)
redis.call('HDEL', KEYS[1], 'lastStatusCode', 'lastError', 'deliveredAt')
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
"""

# ARGV: event job id, ttl, count an attempt ('1'|'0'), then field/value pairs ('' deletes).
# Returns the attempt count, or -1 when the event is no longer the job's current one.
_RECORD = """
if redis.call('HGET', KEYS[1], 'eventJobId') ~= ARGV[1] then return -1 end
if ARGV[3] == '1' then redis.call('HINCRBY', KEYS[1], 'attempts', 1) end
for i = 4, #ARGV - 1, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', KEYS[1], ARGV[i])
  else
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0')
"""


@dataclass(frozen=True, slots=True)
class WebhookStates:
    """Reads and writes the webhook state hashes under one key prefix."""

    redis: Any
    keys: Keys
    ttl_s: int

    async def start_round(self, job_id: str) -> int:
        """A job begins a fresh round (its first attempt, or its first after a DLQ retry)."""
        key = self.keys.webhook_state(job_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hincrby(key, "round", 1)
            pipe.expire(key, self.ttl_s)
            round_no, _ = await pipe.execute()
        return int(round_no)

    async def current_round(self, job_id: str) -> int:
        return int(await self.redis.hget(self.keys.webhook_state(job_id), "round") or 0)

    async def mark_pending(
        self, job_id: str, event_job_id: str, event: str, webhook_id: str
    ) -> bool:
        """Point the job's state at a new event, pending. False if it already pointed there."""
        marked = await self.redis.eval(
            _MARK_PENDING, 1, self.keys.webhook_state(job_id),
            event_job_id, event, webhook_id, self.ttl_s,
        )
        return bool(marked)

    async def record(
        self, job_id: str, event_job_id: str, fields: dict[str, str], *, attempt: bool = False
    ) -> int | None:
        """Set (or, with '', delete) fields of the job's state, counting an attempt if asked.

        Returns the attempt count, or None when `event_job_id` is no longer current.
        """
        pairs = [item for pair in fields.items() for item in pair]
        attempts = await self.redis.eval(
            _RECORD, 1, self.keys.webhook_state(job_id),
            event_job_id, self.ttl_s, "1" if attempt else "0", *pairs,
        )
        return None if int(attempts) < 0 else int(attempts)
