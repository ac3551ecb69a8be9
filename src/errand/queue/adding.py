"""Adding jobs: BullMQ's own add scripts and errand's index write, in one MULTI
(on a cluster: the index first, then the jobs; see `JobWriter`).

bullmq-python's `Scripts.addJob` picks the add script (standard, prioritized or
delayed), builds its KEYS and ARGV and calls it on the client it is given; errand
gives it a recorder instead, so the call is exactly bullmq's and can be sent in one
transaction with the listing-index write (`queue/jobindex.py`) that follows it. The
MULTI holds the adds of a whole batch and one index write per client: one round trip,
and a job is never without its index entry. Scripts are called by SHA; after a
server restart emptied the script cache (NOSCRIPT) they are loaded and the calls that
did not run are sent again (an index write skips jobs that do not exist, and runs
again only where it did not run).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from hashlib import sha1
from typing import Any

from bullmq import Job, Queue
from redis.exceptions import NoScriptError, ResponseError

from errand.errors import QueueUnavailable
from errand.jobids import QueueName
from errand.keys import Keys
from errand.queue.jobindex import (
    IndexEntry,
    entry_for,
    remove_from_index,
    write_call,
    write_script,
)
from errand.redisio.connection import ready_for_multi
from errand.redisio.replication import ReplicaBarrier

_INDEX_SHA = sha1(write_script().encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job to add: BullMQ's name, data and `opts` (see `JobQueues.job_options`)."""

    name: str
    data: dict[str, Any]
    opts: dict[str, Any]


@dataclass
class _Recorder:
    """Stands in for the client bullmq calls its add script on, and keeps the call."""

    calls: list[tuple[Any, ...]] = field(default_factory=list)

    async def evalsha(self, *args: Any) -> str:
        self.calls.append(args)
        return ""


@dataclass(frozen=True, slots=True)
class AddCall:
    """The EVALSHA of one job's add, as bullmq would send it, and the job's index entry."""

    args: tuple[Any, ...]
    queue: Queue
    entry: IndexEntry | None

    @classmethod
    async def of(cls, queue: Queue, job: Job, data: dict[str, Any]) -> AddCall:
        recorder = _Recorder()
        await queue.scripts.addJob(job, recorder)
        (args,) = recorder.calls
        entry = entry_for(QueueName(queue.name), str(job.id), data, int(job.timestamp))
        return cls(args, queue, entry)

    def source(self) -> str:
        """The Lua of the add script this call runs (for loading it after a NOSCRIPT)."""
        sha = self.args[0]
        return str(next(s.script for s in self.queue.scripts.commands.values() if s.sha == sha))


class JobWriter:
    """Sends add calls and their index writes: in one MULTI on a single server; with
    `two_step` (a cluster, where a job's partition and its client's index live in
    different slots) the index writes first, then the adds."""

    def __init__(
        self,
        redis: Any,
        keys: Keys,
        keep_completed_s: int,
        two_step: bool,
        barrier: ReplicaBarrier | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.keep_completed_ms = keep_completed_s * 1000
        self.two_step = two_step
        self.barrier = barrier  # strict durability: wait for a replica after the add
        self._index_script = redis.register_script(write_script())

    async def add(self, queue: QueueName, calls: list[AddCall]) -> list[str]:
        """Run `calls`; the job id each one's add answered (the in-flight job's on a dedup hit).

        Raises QueueUnavailable when the scripts cannot be loaded.
        """
        replies: list[Any] = [None] * len(calls)
        adds = list(range(len(calls)))
        indexed = [i for i in adds if calls[i].entry is not None]
        if self.two_step:
            await self._index_first(calls, indexed)
            indexed = []
        for _ in range(3):
            add_replies, failed_clients = await self._multi(calls, adds, indexed)
            missing = {i for i, r in zip(adds, add_replies, strict=True) if _no_script(r)}
            for i, reply in zip(adds, add_replies, strict=True):
                if i not in missing:
                    replies[i] = reply
            redo = [i for i in indexed if i in missing or _client(calls[i]) in failed_clients]
            if not missing and not redo:
                ids = [_job_id(reply) for reply in replies]
                if self.two_step:
                    await self._unindex_duplicates(calls, ids)
                if self.barrier is not None:
                    await self.barrier.wait(self.keys.replica_mark(c.args[2]) for c in calls)
                return ids
            await self._load({calls[i].args[0]: calls[i].source() for i in missing})
            adds, indexed = sorted(missing), redo
        raise QueueUnavailable("the job store keeps forgetting errand's scripts")

    async def _index_first(self, calls: list[AddCall], indexed: list[int]) -> None:
        """The index entries of `calls`, unchecked, one script per client (its own slot)."""
        cutoff = _now_ms(calls) - self.keep_completed_ms
        for entries in _by_client(calls, indexed).values():
            call_keys, args = write_call(self.keys, entries, cutoff, check=False)
            await self._index_script(keys=call_keys, args=args)

    async def _unindex_duplicates(self, calls: list[AddCall], ids: list[str]) -> None:
        """Take back the entries written first for jobs whose add answered another job's
        id (a deduplicated report): no job of that id exists, nor will."""
        for call, job_id in zip(calls, ids, strict=True):
            if call.entry is not None and call.entry.job_id != job_id:
                await remove_from_index(self.redis, self.keys, call.entry)

    async def _multi(
        self, calls: list[AddCall], adds: list[int], indexed: list[int]
    ) -> tuple[list[Any], set[str]]:
        groups = _by_client(calls, indexed)
        if not self.two_step:
            await ready_for_multi(self.redis)
        pipe = self.redis.pipeline(transaction=not self.two_step)
        for i in adds:
            pipe.execute_command("EVALSHA", *calls[i].args)
        cutoff = _now_ms(calls) - self.keep_completed_ms
        for entries in groups.values():
            call_keys, args = write_call(self.keys, entries, cutoff)
            pipe.execute_command("EVALSHA", _INDEX_SHA, len(call_keys), *call_keys, *args)
        replies = await pipe.execute(raise_on_error=False)
        failed = {
            client
            for client, reply in zip(groups, replies[len(adds) :], strict=True)
            if _no_script(reply)
        }
        for reply in replies[len(adds) :]:
            if isinstance(reply, Exception) and not _no_script(reply):
                raise reply
        if failed:
            await self._load({_INDEX_SHA: write_script()})
        return replies[: len(adds)], failed

    async def _load(self, sources: dict[str, str]) -> None:
        for source in sources.values():
            await self.redis.script_load(source)


def _by_client(calls: list[AddCall], indexed: list[int]) -> dict[str, list[IndexEntry]]:
    groups: dict[str, list[IndexEntry]] = defaultdict(list)
    for i in indexed:
        entry = calls[i].entry
        assert entry is not None
        groups[entry.client_id].append(entry)
    return groups


def _client(call: AddCall) -> str:
    return call.entry.client_id if call.entry is not None else ""


def _now_ms(calls: list[AddCall]) -> int:
    """The jobs' own clock (their createdAt), so pruning and scores agree."""
    return max((c.entry.created_ms for c in calls if c.entry is not None), default=0)


def _no_script(reply: Any) -> bool:
    return isinstance(reply, NoScriptError)


def _job_id(reply: Any) -> str:
    if isinstance(reply, Exception):
        raise reply
    if isinstance(reply, int) and reply < 0:
        raise ResponseError(f"bullmq's add script refused the job (code {reply})")
    return str(reply)
