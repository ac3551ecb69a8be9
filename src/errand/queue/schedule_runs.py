"""The gate every run of a schedule passes when a worker first takes it.

A run is a BullMQ job that the job scheduler made. Before the processor sees it, one
script decides, atomically:

- `gone`: the schedule was deleted before this run started: drop it (no run after DELETE);
- `busy`: a report run while the same user's report of that client is still in flight
  (the reports' in-flight rule): drop it, nothing new is created;
- `run`: the first take of a run: it holds the report's in-flight slot (BullMQ's
  deduplication key, freed by BullMQ when the run finishes, as for any report), and the
  schedule's `lastRunAt` / `lastJobId` say it ran;
- `again`: a run taken before (a retry, a stalled redelivery): it runs on.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from redis.asyncio.cluster import RedisCluster

from errand.clock import now_ms
from errand.jobids import QueueName, schedule_of, schedule_partition, schedule_queue
from errand.keys import Keys, report_dedup_id
from errand.queue.jobindex import record_in_index


class RunVerdict(StrEnum):
    RUN = "run"
    AGAIN = "again"
    BUSY = "busy"
    GONE = "gone"

    @property
    def dropped(self) -> bool:
        return self in (RunVerdict.BUSY, RunVerdict.GONE)


# KEYS: the schedule's record, the report's deduplication key (the record again for a
# notification). ARGV: job id, now ms, the queue's job-key prefix, "1" when the in-flight
# rule applies, the run's tick ms, "1" on the first take.
_GATE = """
local record, dedup = KEYS[1], KEYS[2]
local id, first = ARGV[1], ARGV[6] == '1'
local exists = redis.call('EXISTS', record) == 1
if not first then
  if not exists then return 'again' end
  if tonumber(redis.call('HGET', record, 'lastTick') or '0') >= tonumber(ARGV[5]) then
    return 'again'
  end
elseif not exists then
  return 'gone'
end
if ARGV[4] == '1' then
  local holder = redis.call('GET', dedup)
  local busy = holder and holder ~= id
    and redis.call('HEXISTS', ARGV[3] .. holder, 'finishedOn') == 0
    and redis.call('EXISTS', ARGV[3] .. holder) == 1
  if busy then
    if first then return 'busy' end
  else
    redis.call('SET', dedup, id)
  end
end
redis.call('HSET', record, 'lastJobId', id, 'lastRunAt', ARGV[2], 'lastTick', ARGV[5])
return 'run'
"""


class RunGate:
    """Decides, for each taken job a scheduler made, whether it runs (one per process)."""

    def __init__(self, redis: Any, keys: Keys, keep_completed_s: int) -> None:
        self.redis = redis
        self.keys = keys
        self.keep_completed_ms = keep_completed_s * 1000  # the listing index's pruning age
        self._gate = redis.register_script(_GATE)

    async def admit(
        self, job_id: str, data: dict[str, Any], first_take: bool, created_ms: int
    ) -> RunVerdict:
        """The verdict for a taken run (`job_id` as BullMQ named it). Any other job: `again`.

        On `run` the job is recorded in its client's listing index (`record_in_index`)."""
        schedule_id = schedule_of(job_id)
        queue = schedule_queue(schedule_id) if schedule_id else None
        client_id = data.get("clientId")
        if schedule_id is None or queue is None or not isinstance(client_id, str):
            return RunVerdict.AGAIN
        record = self.keys.schedule(client_id, schedule_id)  # in its runs' partition
        part = schedule_partition(schedule_id)
        dedup = record
        if queue is QueueName.REPORTS:
            user_id, report_type = str(data.get("userId")), str(data.get("reportType"))
            dedup_id = report_dedup_id(client_id, user_id, report_type)
            dedup = self.keys.dedup(queue, dedup_id, part)
        tick_ms = job_id.rpartition(":")[2]
        args = [
            job_id,
            now_ms(),
            self.keys.queue(queue, "", part),
            "1" if dedup != record else "",
            tick_ms,
            "1" if first_take else "",
        ]
        verdict = RunVerdict(await self._gate(keys=[record, dedup], args=args))
        if verdict is RunVerdict.RUN:
            await record_in_index(
                self.redis,
                self.keys,
                queue,
                job_id,
                data,
                created_ms,
                now_ms() - self.keep_completed_ms,
                check=not isinstance(self.redis, RedisCluster),
            )
        return verdict
