"""Reading one client's jobs page by page from the listing index (`queue/jobindex.py`).

A page walks the index newest first from a position (createdAt, member), exclusive,
reads each entry's job snapshot (the same atomic snapshot GET /jobs/{id} answers
from), drops entries whose job is gone (and their index entries), leaves out entries
numbered after the listing's `as_of` sequence, and keeps the jobs that pass the
filters. It examines at most `budget` entries, so a selective filter costs a bounded
time: such a page may hold fewer than `limit` jobs and still have a next position.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from errand.clock import now_ms
from errand.errors import NotFound
from errand.jobids import QueueName
from errand.queue.facade import JobQueues
from errand.queue.jobindex import split_member
from errand.queue.snapshot import JobSnapshot

# KEYS[1] the client's seq, then one or two index sets (merged newest first).
# ARGV: count, cursor score ('' for none), cursor member, max and min of the score
# range as ZRANGEBYSCORE takes them, the min as a number.
# Returns {seq now, {member, score, member, score, ...}}.
_PAGE = """
local count, cur, cur_m = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local max, min, min_n = ARGV[4], ARGV[5], tonumber(ARGV[6])
local function walk(set)
  local out = {}
  if cur == '' then
    local got = redis.call('ZREVRANGEBYSCORE', set, max, min, 'WITHSCORES', 'LIMIT', 0, count)
    for i = 1, #got, 2 do out[#out + 1] = {got[i], tonumber(got[i + 1])} end
    return out
  end
  local cur_n = tonumber(cur)
  local rank = redis.call('ZREVRANK', set, cur_m)
  if rank then
    local got = redis.call('ZREVRANGE', set, rank + 1, rank + count, 'WITHSCORES')
    for i = 1, #got, 2 do
      local s = tonumber(got[i + 1])
      if s <= min_n then break end
      out[#out + 1] = {got[i], s}
    end
    return out
  end
  local offset = 0
  while #out < count do
    local got = redis.call('ZREVRANGEBYSCORE', set, cur, min, 'WITHSCORES', 'LIMIT', offset, count)
    for i = 1, #got, 2 do
      local s = tonumber(got[i + 1])
      if (s < cur_n or got[i] < cur_m) and #out < count then out[#out + 1] = {got[i], s} end
    end
    if #got < 2 * count then break end
    offset = offset + count
  end
  return out
end
local a = walk(KEYS[2])
local b = KEYS[3] and walk(KEYS[3]) or {}
local flat, i, j = {}, 1, 1
while #flat < 2 * count and (a[i] or b[j]) do
  local x
  if not b[j] or (a[i] and (a[i][2] > b[j][2] or (a[i][2] == b[j][2] and a[i][1] > b[j][1]))) then
    x = a[i]; i = i + 1
  else
    x = b[j]; j = j + 1
  end
  flat[#flat + 1] = x[1]; flat[#flat + 1] = string.format('%.17g', x[2])
end
return {tonumber(redis.call('GET', KEYS[1]) or '0'), flat}
"""


@dataclass(frozen=True, slots=True)
class JobFilter:
    """What a listing selects. `user_id` or else `kind` picks the narrowest index."""

    client_id: str
    queues: tuple[QueueName, ...]
    statuses: frozenset[str] = frozenset()
    kind: str | None = None
    user_id: str | None = None
    created_after_ms: float | None = None  # exclusive
    created_before_ms: float | None = None  # exclusive

    def matches(self, snap: JobSnapshot) -> bool:
        """The filters the index does not apply by itself (status, and type or user)."""
        if self.statuses and str(snap.status) not in self.statuses:
            return False
        if self.user_id is not None and str(snap.data.get("userId", "")) != self.user_id:
            return False
        return self.kind is None or job_kind(snap) == self.kind

    @property
    def narrow(self) -> bool:
        """True when entries of the index may fail `matches`."""
        return bool(self.statuses) or (self.user_id is not None and self.kind is not None)


@dataclass(frozen=True, slots=True)
class Position:
    """An entry of the index: a page starts after it (exclusive), newest first."""

    score: float
    member: str


@dataclass(frozen=True, slots=True)
class JobPage:
    jobs: list[JobSnapshot]
    next: Position | None  # None on the last page
    as_of: int  # the index sequence the listing was first read at


def job_kind(snap: JobSnapshot) -> str:
    """The `type` of a job: a notification's type, a report's reportType."""
    field = "reportType" if snap.queue is QueueName.REPORTS else "type"
    return str(snap.data.get(field, ""))


class JobLister:
    """Pages of one client's jobs, from the index the add path writes."""

    def __init__(self, queues: JobQueues, budget: int) -> None:
        self.queues = queues
        self.budget = budget
        self._page = queues.redis.register_script(_PAGE)

    def index_sets(self, flt: JobFilter) -> list[str]:
        keys = self.queues.keys
        if flt.user_id is not None:
            return [keys.job_index_by(flt.client_id, q, "user", flt.user_id) for q in flt.queues]
        if flt.kind is not None:
            return [keys.job_index_by(flt.client_id, q, "type", flt.kind) for q in flt.queues]
        return [keys.job_index(flt.client_id, q) for q in flt.queues]

    async def page(
        self, flt: JobFilter, limit: int, after: Position | None, as_of: int | None
    ) -> JobPage:
        """Up to `limit` jobs after `after`, created no later than sequence `as_of`
        (None: as of now, for a first page)."""
        sets = self.index_sets(flt)
        jobs: list[JobSnapshot] = []
        examined = 0
        position = after
        while len(jobs) < limit and examined < self.budget:
            need = limit - len(jobs)
            chunk = min(self.budget - examined, need * 4 if flt.narrow else need + 2)
            seq, entries = await self._entries(flt, sets, chunk, position)
            as_of = seq if as_of is None else as_of
            wanted = [(m, s) for m, s in entries if split_member(m)[1] <= as_of]
            snaps = await self._snapshots(flt, sets, wanted)
            for member, score in entries:
                examined += 1
                position = Position(score, member)
                snap = snaps.get(member)
                if snap is not None and flt.matches(snap):
                    jobs.append(snap)
                    if len(jobs) == limit:
                        break
            if len(entries) < chunk and position == _last(entries, position):
                return JobPage(jobs, None, as_of)
        return JobPage(jobs, position, as_of if as_of is not None else 0)

    async def _entries(
        self, flt: JobFilter, sets: list[str], count: int, after: Position | None
    ) -> tuple[int, list[tuple[str, float]]]:
        high = "+inf" if flt.created_before_ms is None else f"({flt.created_before_ms!r}"
        low = "-inf" if flt.created_after_ms is None else f"({flt.created_after_ms!r}"
        low_n = -1.0 if flt.created_after_ms is None else flt.created_after_ms
        cursor = ("", "") if after is None else (repr(after.score), after.member)
        keys = [self.queues.keys.job_index_seq(flt.client_id), *sets]
        seq, flat = await self._page(keys=keys, args=[count, *cursor, high, low, repr(low_n)])
        return int(seq), [(flat[i], float(flat[i + 1])) for i in range(0, len(flat), 2)]

    async def _snapshots(
        self, flt: JobFilter, sets: Sequence[str], entries: list[tuple[str, float]]
    ) -> dict[str, JobSnapshot]:
        """Snapshots by member; the entries of jobs that are gone leave the index (on a
        cluster, only once older than `index_lead_ms`: the job may be on its way)."""
        replies: list[Any] = await asyncio.gather(
            *(self.queues.snapshot(split_member(m)[0], flt.client_id) for m, _ in entries),
            return_exceptions=True,
        )
        found: dict[str, JobSnapshot] = {}
        gone: list[str] = []
        settled_ms = now_ms() - self.queues.index_lead_ms
        for (member, score), reply in zip(entries, replies, strict=True):
            if isinstance(reply, NotFound):
                if not self.queues.index_lead_ms or score < settled_ms:
                    gone.append(member)
            elif isinstance(reply, BaseException):
                raise reply
            else:
                found[member] = reply
        if gone:
            pipe = self.queues.redis.pipeline(transaction=False)
            for key in sets:
                pipe.zrem(key, *gone)
            await pipe.execute()
        return found


def _last(entries: list[tuple[str, float]], default: Position | None) -> Position | None:
    return Position(entries[-1][1], entries[-1][0]) if entries else default
