"""The webhook state of a source job: one Redis hash that GET /jobs and GET /notifications render.

Public fields: `status` (pending | delivered | failed), `attempts`,
`lastStatusCode`, `lastError`, `deliveredAt`. Bookkeeping fields: `round` (the
job's current round, see `events.py`), `eventJobId`, `event` and `webhookId` of
the event being delivered. Writes by a delivery job apply only while its event is
the job's current one, so a redriven delivery of an older round's event cannot
overwrite the state of a newer one. A new round (a DLQ retry of the job) shows
`pending` with no attempts from its start: nothing of the previous round's
delivery is shown as the new round's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from errand.keys import Keys
from errand.settings import Settings

# Every field but `round`: what the state says about one round's event and its delivery.
_ROUND_RESET = """
redis.call('HSET', KEYS[1], 'status', 'pending', 'attempts', 0)
redis.call('HDEL', KEYS[1], 'eventJobId', 'event', 'webhookId',
           'lastStatusCode', 'lastError', 'deliveredAt')
"""

# ARGV: ttl. Returns the new round.
_START_ROUND = (
    _ROUND_RESET
    + """
redis.call('EXPIRE', KEYS[1], ARGV[1])
return redis.call('HINCRBY', KEYS[1], 'round', 1)
"""
)

# ARGV: the round that was current before the retry, ttl. Returns 1 when it reset the state.
_AWAIT_ROUND = (
    """
local round = redis.call('HGET', KEYS[1], 'round')
if not round or round ~= ARGV[1] then return 0 end
"""
    + _ROUND_RESET
    + """
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""
)

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
        """A job begins a fresh round (its first attempt, or its first after a DLQ retry):
        its number goes up and the state shows the round's webhook pending."""
        round_no = await self.redis.eval(
            _START_ROUND, 1, self.keys.webhook_state(job_id), self.ttl_s
        )
        return int(round_no)

    async def await_next_round(self, job_id: str, last_round: int) -> bool:
        """After a DLQ retry of the job: show its webhook pending for the round to come.

        A no-op (False) when the job has no state, or when the next round has started
        already (`start_round` reset the state then, and a delivery may have followed).
        """
        reset = await self.redis.eval(
            _AWAIT_ROUND, 1, self.keys.webhook_state(job_id), last_round, self.ttl_s
        )
        return bool(reset)

    async def current_round(self, job_id: str) -> int:
        return int(await self.redis.hget(self.keys.webhook_state(job_id), "round") or 0)

    async def mark_pending(
        self, job_id: str, event_job_id: str, event: str, webhook_id: str
    ) -> bool:
        """Point the job's state at a new event, pending. False if it already pointed there."""
        marked = await self.redis.eval(
            _MARK_PENDING,
            1,
            self.keys.webhook_state(job_id),
            event_job_id,
            event,
            webhook_id,
            self.ttl_s,
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
            _RECORD,
            1,
            self.keys.webhook_state(job_id),
            event_job_id,
            self.ttl_s,
            "1" if attempt else "0",
            *pairs,
        )
        return None if int(attempts) < 0 else int(attempts)


def webhook_states(settings: Settings, redis: Any) -> WebhookStates:
    """The states under the settings' key prefix, kept as long as the jobs they describe."""
    ttl_s = max(settings.keep_completed_seconds, settings.keep_failed_seconds)
    return WebhookStates(redis, Keys(settings.queue_prefix, settings.partitions), ttl_s)
