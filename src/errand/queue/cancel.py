"""Canceling a job: one errand Lua script on BullMQ's keys (3.4.4's layout, see pins.py).

A job that has not started (waiting, prioritized, paused or delayed, a retry backoff
included) is moved straight to BullMQ's completed set with errand's `canceled`
outcome as its return value, as BullMQ's own moveToFinished would leave a completed
job: `returnvalue` and `finishedOn` in the hash, the id scored by the finish time in
`completed`, a `completed` event on the queue's events stream, and the in-flight
deduplication key (`<queue prefix>de:<id>`) deleted if it still names this job. It
never ran, so `attemptsMade` stays as it was. The script also sets the job's cancel
flag, so a worker still running a stalled copy of it finds the flag when it sends
(notifications: in the send claim, or in the simulated transport's delivery script)
or at its next progress step (reports) and stops. A notification whose send claim is
held or whose sent ledger is written is `sending`: the email is going, or went, out.

An active report gets its cancel flag instead (its processor stops at the next
progress step) and frees its deduplication slot at once. An active notification
cannot be called back. `tests/integration/test_cancel_script.py` compares what the
script leaves behind with what BullMQ's own scripts leave for a completed job.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import orjson

from errand.clock import now_ms
from errand.jobids import QueueName, partition_of
from errand.keys import Keys
from errand.queue.outcomes import Outcome, outcome_value

# KEYS: wait, paused, prioritized, delayed, active, completed, failed, job hash, events,
#       meta, cancel flag, send claim, sent ledger.
# ARGV: job id, now (ms), return value (JSON), queue key prefix, flag ttl (s),
#       'report' (an active job may be asked to stop) or 'notification'.
_CANCEL = """
local rcall = redis.call
local id, jobKey = ARGV[1], KEYS[8]
if rcall('EXISTS', jobKey) == 0 then return 'missing' end
local function releaseDedup()
  local deid = rcall('HGET', jobKey, 'deid')
  if deid then
    local dedupKey = ARGV[4] .. 'de:' .. deid
    if rcall('GET', dedupKey) == id then rcall('DEL', dedupKey) end
  end
end
if rcall('ZSCORE', KEYS[6], id) or rcall('ZSCORE', KEYS[7], id) then return 'final' end
if rcall('LPOS', KEYS[5], id) then
  if ARGV[6] ~= 'report' then return 'active' end
  rcall('SET', KEYS[11], 'requested', 'EX', ARGV[5])
  releaseDedup()
  return 'requested'
end
if ARGV[6] == 'notification' and
   (rcall('EXISTS', KEYS[12]) == 1 or rcall('EXISTS', KEYS[13]) == 1) then
  return 'sending'
end
local prev
if rcall('LREM', KEYS[1], 0, id) > 0 then prev = 'waiting'
elseif rcall('LREM', KEYS[2], 0, id) > 0 then prev = 'paused'
elseif rcall('ZREM', KEYS[3], id) > 0 then prev = 'prioritized'
elseif rcall('ZREM', KEYS[4], id) > 0 then prev = 'delayed'
else return 'elsewhere' end
rcall('HSET', jobKey, 'returnvalue', ARGV[3], 'finishedOn', ARGV[2])
rcall('ZADD', KEYS[6], ARGV[2], id)
rcall('SET', KEYS[11], 'canceled', 'EX', ARGV[5])
releaseDedup()
local maxEvents = rcall('HGET', KEYS[10], 'opts.maxLenEvents') or 10000
rcall('XADD', KEYS[9], 'MAXLEN', '~', maxEvents, '*', 'event', 'completed', 'jobId', id,
      'returnvalue', ARGV[3], 'prev', prev)
return 'canceled'
"""

CANCELED_BEFORE_START = "canceled by the client before it ran"
CANCELED_WHILE_RUNNING = "canceled by the client while it ran"


class CancelOutcome(StrEnum):
    CANCELED = "canceled"  # it had not started: now final, `canceled`
    REQUESTED = "requested"  # an active report: it stops at its next progress step
    ACTIVE = "active"  # an active notification: cannot be called back
    SENDING = "sending"  # a notification whose email is being sent, or went out already
    FINAL = "final"  # already completed, failed, canceled or expired
    MISSING = "missing"  # no such job (removed meanwhile)
    ELSEWHERE = "elsewhere"  # in no state the script can take it from


class JobCanceller:
    """Runs the cancel script for one queue prefix."""

    def __init__(self, redis: Any, keys: Keys, flag_ttl_s: int) -> None:
        self.keys = keys
        self.flag_ttl_s = flag_ttl_s
        self._script = redis.register_script(_CANCEL)

    async def cancel(self, queue: QueueName, job_id: str) -> CancelOutcome:
        """Cancel `job_id` of `queue` (a report or a notification) atomically."""
        k, part = self.keys, partition_of(job_id)
        keys = [
            *(k.queue(queue, name, part) for name in _QUEUE_KEYS),
            k.job(queue, job_id),
            k.events(queue, part),
            k.queue(queue, "meta", part),
            k.cancel_request(job_id),
            k.send_claim(job_id),
            k.sent_ledger(job_id),
        ]
        value = orjson.dumps(outcome_value(Outcome.CANCELED, CANCELED_BEFORE_START))
        mode = "report" if queue is QueueName.REPORTS else "notification"
        args = [job_id, now_ms(), value, k.queue(queue, "", part), self.flag_ttl_s, mode]
        reply = await self._script(keys=keys, args=args)
        return CancelOutcome(reply.decode() if isinstance(reply, bytes) else str(reply))


_QUEUE_KEYS = ("wait", "paused", "prioritized", "delayed", "active", "completed", "failed")
