"""errand's listing index: which jobs a client has, per queue, user and type, newest first.

BullMQ cannot list one client's jobs, so errand keeps sorted sets of its own
(`Keys.job_index*`), scored by the job's `createdAt` in ms, member `{jobId}:{seq}`:
`seq` is a per-client sequence number given at write time, so a listing can leave
out jobs created after its first page whatever the clocks of the API hosts say.
Each job is in three sets: its client's for its queue, and that one narrowed to its
`userId` and to its `type`. On a single server the write runs as a script in the same
MULTI as BullMQ's add script (`JobQueues.add_many`), right after it: it indexes a job
only if its hash now exists, so a report deduplicated into another job leaves no entry
behind. On a cluster the index (the client's slot) and the job (its partition's slot)
cannot share a MULTI: the index is written first, unchecked, then the job; a reader
skips an entry whose job does not exist (yet), and drops it once it is old enough.

Pruning follows the job's retention: a reader drops the entries whose job hash is
gone (BullMQ removed it by age); and each write samples a few entries older than
`keep_completed_seconds` in every set it touches and drops the gone ones, so sets
nobody reads shrink too.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from errand.jobids import QueueName
from errand.keys import Keys

# Queues whose jobs are the client's (webhook deliveries are the service's own).
LISTED_QUEUES = (QueueName.REPORTS, QueueName.NOTIFICATIONS)

# KEYS[1] the client's seq, then per job its queue set, user set and type set, then
# (when checking) per job its hash. ARGV: check ('1': index a job only if its hash
# exists, and prune), prune cutoff (ms), a random number in [0, 1), the number of jobs
# n, per job its id and createdAt (ms), then the job key prefix of each partition of the
# queue (for pruning). The entries of one set go in with one ZADD (a batch's jobs share
# their queue and type sets). Each touched set then gets two prune samples per entry
# written, at most 32, spread over its entries older than the cutoff by golden-ratio
# steps from the random start. On a cluster the job hashes live in other slots, so the
# write runs unchecked and unpruned (readers prune).
_WRITE = """
local check, n = ARGV[1] == '1', tonumber(ARGV[4])
local seq = redis.call('INCRBY', KEYS[1], n) - n
local cutoff, r = tonumber(ARGV[2]), tonumber(ARGV[3])
local pending, order = {}, {}
for i = 0, n - 1 do
  local k = 2 + i * 3
  if not check or redis.call('EXISTS', KEYS[2 + 3 * n + i]) == 1 then
    local member = ARGV[5 + i * 2] .. ':' .. string.format('%x', seq + i + 1)
    local score = ARGV[6 + i * 2]
    for j = 0, 2 do
      local set = KEYS[k + j]
      local t = pending[set]
      if not t then t = {}; pending[set] = t; order[#order + 1] = set end
      t[#t + 1] = score; t[#t + 1] = member
    end
  end
end
local function job_key(id)
  local p = tonumber(string.match(id, '^%a+_(%d+)_') or '0')
  local prefix = ARGV[5 + 2 * n + p]
  return prefix and prefix .. id
end
local function prune(set, samples)
  local old = redis.call('ZCOUNT', set, '-inf', '(' .. cutoff)
  if old == 0 then return end
  for _ = 1, samples do
    r = (r + 0.6180339887498949) % 1
    local rank = math.floor(r * old)
    local member = redis.call('ZRANGE', set, rank, rank)[1]
    if member then
      local key = job_key(string.match(member, '^(.*):%x+$') or '')
      if key and redis.call('EXISTS', key) == 0 then redis.call('ZREM', set, member) end
    end
  end
end
for _, set in ipairs(order) do
  local t = pending[set]
  for c = 1, #t, 1000 do redis.call('ZADD', set, unpack(t, c, math.min(c + 999, #t))) end
  if check then prune(set, math.min(#t, 32)) end
end
return #order
"""


# KEYS: a job's three sets. ARGV: its createdAt (ms) and its id. Removes the job's entries:
# on a cluster an entry is written before its job, so a report deduplicated into another
# job leaves one behind, taken back here once the add has answered.
_UNWRITE = """
local n, head = 0, ARGV[2] .. ':'
for _, set in ipairs(KEYS) do
  for _, member in ipairs(redis.call('ZRANGE', set, ARGV[1], ARGV[1], 'BYSCORE')) do
    if string.sub(member, 1, #head) == head then n = n + redis.call('ZREM', set, member) end
  end
end
return n
"""


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """What the index needs to know of one job."""

    client_id: str
    queue: QueueName
    job_id: str
    user_id: str
    kind: str  # the notification type, or the report's reportType
    created_ms: int


def entry_for(
    queue: QueueName, job_id: str, data: dict[str, Any], created_ms: int
) -> IndexEntry | None:
    """The index entry of a job about to be added, or None for a job that is never listed."""
    if queue not in LISTED_QUEUES:
        return None
    client = data.get("clientId")
    kind = data.get("type") if queue is QueueName.NOTIFICATIONS else data.get("reportType")
    if not isinstance(client, str) or not client:
        return None
    return IndexEntry(
        client, queue, job_id, str(data.get("userId", "")), str(kind or ""), created_ms
    )


def write_call(
    keys: Keys, entries: list[IndexEntry], prune_after_ms: int, check: bool = True
) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of the index write for `entries` (one client, one queue). With
    `check` the keys include the job hashes (a single server: any slot is reachable)."""
    first = entries[0]
    call_keys = [keys.job_index_seq(first.client_id)]
    args: list[Any] = ["1" if check else "", prune_after_ms, random.random(), len(entries)]
    queue_set = keys.job_index(first.client_id, first.queue)
    type_sets: dict[str, str] = {}  # a batch's jobs mostly share one type
    for e in entries:
        type_set = type_sets.get(e.kind)
        if type_set is None:
            type_set = type_sets[e.kind] = keys.job_index_by(e.client_id, e.queue, "type", e.kind)
        user_set = keys.job_index_by(e.client_id, e.queue, "user", e.user_id)
        call_keys += [queue_set, user_set, type_set]
        args += [e.job_id, e.created_ms]
    if check:
        call_keys += [keys.job(e.queue, e.job_id) for e in entries]
        args += _job_key_prefixes(keys, first.queue)
    return call_keys, args


async def remove_from_index(redis: Any, keys: Keys, entry: IndexEntry) -> None:
    """Take `entry` out of its three sets (its member's seq need not be known)."""
    call_keys = [
        keys.job_index(entry.client_id, entry.queue),
        keys.job_index_by(entry.client_id, entry.queue, "user", entry.user_id),
        keys.job_index_by(entry.client_id, entry.queue, "type", entry.kind),
    ]
    await redis.eval(_UNWRITE, len(call_keys), *call_keys, entry.created_ms, entry.job_id)


@lru_cache(maxsize=64)
def _job_key_prefixes(keys: Keys, queue: QueueName) -> tuple[str, ...]:
    """The job key prefix of every partition of `queue` (the same for every write)."""
    return tuple(keys.queue(queue, "", p) for p in range(keys.partitions))


def write_script() -> str:
    return _WRITE


def split_member(member: str) -> tuple[str, int]:
    """(job id, seq) of an index member. Raises ValueError for a member errand did not write."""
    job_id, sep, seq = member.rpartition(":")
    if not sep or not job_id:
        raise ValueError(f"not an index member: {member!r}")
    return job_id, int(seq, 16)


async def record_in_index(
    redis: Any,
    keys: Keys,
    queue: QueueName,
    job_id: str,
    data: dict[str, Any],
    created_ms: int,
    prune_before_ms: int,
    check: bool = True,
) -> None:
    """Index a job that BullMQ's own Lua created (a schedule's run) as the add path
    indexes the jobs it creates (pruning entries older than `prune_before_ms`). Called
    once per run, when a worker first takes it. On a cluster `check` is False: the job
    hash lives in another slot (see `write_call`)."""
    entry = entry_for(queue, job_id, data, created_ms)
    if entry is None:
        return
    call_keys, args = write_call(keys, [entry], prune_before_ms, check)
    await redis.eval(_WRITE, len(call_keys), *call_keys, *args)
