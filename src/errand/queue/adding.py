"""Adding jobs: BullMQ's own add scripts and errand's index write, in MULTIs of
`MULTI_JOBS` jobs (on a cluster: the index first, then the jobs; see `JobWriter`).

Each add is the EVALSHA bullmq-python's `Scripts.addJob` would send (standard,
prioritized or delayed script; built by `queue/addargs.py` and checked against bullmq's
own builder), so it can be sent in one transaction with the listing-index write
(`queue/jobindex.py`) that follows it. A batch's adds go in MULTIs of `MULTI_JOBS`
jobs, each with one index write per client for its jobs, all in one pipeline: one
round trip, and a job is never without its index entry. Scripts are called by SHA;
after a server restart emptied the script cache (NOSCRIPT) they are loaded and the
calls that did not run are sent again (an index write skips jobs that do not exist,
and runs again only where it did not run).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from hashlib import sha1
from typing import Any

from bullmq import Queue
from redis.exceptions import NoScriptError, ResponseError

from errand.errors import QueueUnavailable
from errand.jobids import QueueName
from errand.keys import Keys
from errand.queue.addargs import AddArgs
from errand.queue.jobindex import (
    IndexEntry,
    entry_for,
    remove_from_index,
    write_call,
    write_script,
)
from errand.redisio.replication import ReplicaBarrier

_INDEX_SHA = sha1(write_script().encode(), usedforsecurity=False).hexdigest()

# Jobs per MULTI. The adds of a batch go in MULTIs of this many (each with the index
# writes of its jobs), all in one pipeline: one round trip, and each job still written
# with its index entry. With the AOF on, Valkey spent 60-80 µs of CPU per job in one
# MULTI of 1,000 adds and 35-40 µs in MULTIs of 10-50 (no MULTI at all: 33 µs).
MULTI_JOBS = 25


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job to add: BullMQ's name, data and `opts` (see `JobQueues.job_options`)."""

    name: str
    data: dict[str, Any]
    opts: dict[str, Any]


@dataclass(frozen=True, slots=True)
class AddCall:
    """The EVALSHA of one job's add, as bullmq would send it, and the job's index entry."""

    args: tuple[Any, ...]
    queue: Queue
    entry: IndexEntry | None

    @classmethod
    def of(cls, queue: Queue, args: AddArgs, spec: JobSpec, job_id: str) -> AddCall:
        """The add of `spec` (whose data may carry a trace context) to `queue`."""
        call, timestamp = args.call(job_id, spec.name, spec.data, spec.opts)
        entry = entry_for(QueueName(queue.name), job_id, spec.data, timestamp)
        return cls(call, queue, entry)

    def source(self) -> str:
        """The Lua of the add script this call runs (for loading it after a NOSCRIPT)."""
        sha = self.args[0]
        return str(next(s.script for s in self.queue.scripts.commands.values() if s.sha == sha))


class JobWriter:
    """Sends add calls and their index writes: in MULTIs on a single server; with
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

    async def add(self, queue: QueueName, calls: list[AddCall]) -> list[str | Exception]:
        """Run `calls`; per call the job id its add answered (the in-flight job's on a dedup
        hit), or the error that refused it (its MULTI's: e.g. the store full, nothing of
        that MULTI made; the other MULTIs' jobs stand).

        Raises QueueUnavailable when the scripts cannot be loaded.
        """
        replies: list[Any] = [None] * len(calls)
        adds = list(range(len(calls)))
        indexed = [i for i in adds if calls[i].entry is not None]
        if self.two_step:
            await self._index_first(calls, indexed)
            indexed = []
        for _ in range(3):
            add_replies, failed = await self._multi(calls, adds, indexed)
            missing = {i for i, reply in add_replies.items() if _no_script(reply)}
            for i, reply in add_replies.items():
                if i not in missing:
                    replies[i] = reply
            redo = [i for i in indexed if i in missing or i in failed]
            if not missing and not redo:
                ids = [_job_id(reply) for reply in replies]
                made = [c for c, i in zip(calls, ids, strict=True) if isinstance(i, str)]
                if self.two_step:
                    await self._unindex_duplicates(calls, ids)
                if self.barrier is not None and made:
                    await self.barrier.wait(self.keys.replica_mark(c.args[2]) for c in made)
                return ids
            await self._load({calls[i].args[0]: calls[i].source() for i in missing})
            adds, indexed = sorted(missing), redo
        raise QueueUnavailable("the job store keeps forgetting errand's scripts")

    async def _index_first(self, calls: list[AddCall], indexed: list[int]) -> None:
        """The index entries of `calls`, unchecked, one script per client (its own slot)."""
        cutoff = _now_ms(calls) - self.keep_completed_ms
        for members in _by_client(calls, indexed).values():
            call_keys, args = write_call(self.keys, _entries(calls, members), cutoff, check=False)
            await self._index_script(keys=call_keys, args=args)

    async def _unindex_duplicates(self, calls: list[AddCall], ids: list[str | Exception]) -> None:
        """Take back the entries written first for jobs whose add answered another job's
        id (a deduplicated report) or was refused: no job of that id exists, nor will."""
        for call, job_id in zip(calls, ids, strict=True):
            if call.entry is not None and call.entry.job_id != job_id:
                await remove_from_index(self.redis, self.keys, call.entry)

    async def _multi(
        self, calls: list[AddCall], adds: list[int], indexed: list[int]
    ) -> tuple[dict[int, Any], set[int]]:
        """Run the adds `adds` and the index writes of `indexed` in one pipeline: on a single
        server, a MULTI per `MULTI_JOBS` jobs (their adds, then their index writes).

        Returns each add's reply (by call) and the calls whose index write hit NOSCRIPT.
        """
        pipe, chunks = self._pipeline(calls, adds, indexed)
        replies = iter(await pipe.execute(raise_on_error=False))
        add_replies: dict[int, Any] = {}
        failed: set[int] = set()
        for steps in chunks:
            results = _step_replies(replies, len(steps), self.two_step)
            for step, reply in zip(steps, results, strict=True):
                if step.add:
                    add_replies[step.members[0]] = reply
                elif _no_script(reply):
                    failed.update(step.members)
                elif isinstance(reply, Exception) and not _all_refused(add_replies, step):
                    raise reply  # jobs made without their index entries
        if failed:
            await self._load({_INDEX_SHA: write_script()})
        return add_replies, failed

    def _pipeline(
        self, calls: list[AddCall], adds: list[int], indexed: list[int]
    ) -> tuple[Any, list[list[_Step]]]:
        """The pipeline of `_multi`, and the script calls of each of its MULTIs."""
        todo, add_set, index_set = sorted({*adds, *indexed}), set(adds), set(indexed)
        size = MULTI_JOBS if not self.two_step else max(1, len(todo))
        cutoff = _now_ms(calls) - self.keep_completed_ms
        pipe = self.redis.pipeline(transaction=False)
        chunks: list[list[_Step]] = []
        for start in range(0, len(todo), size):
            part = todo[start : start + size]
            steps = [_Step(True, [i]) for i in part if i in add_set]
            by_client = _by_client(calls, [i for i in part if i in index_set])
            steps += [_Step(False, members) for members in by_client.values()]
            chunks.append(steps)
            if not self.two_step:
                pipe.execute_command("MULTI")
            for step in steps:
                pipe.execute_command("EVALSHA", *self._step_args(calls, step, cutoff))
            if not self.two_step:
                pipe.execute_command("EXEC")
        return pipe, chunks

    def _step_args(self, calls: list[AddCall], step: _Step, cutoff: int) -> tuple[Any, ...]:
        """EVALSHA's arguments for `step`: one job's add, or one client's index write."""
        if step.add:
            return calls[step.members[0]].args
        call_keys, args = write_call(self.keys, _entries(calls, step.members), cutoff)
        return (_INDEX_SHA, len(call_keys), *call_keys, *args)

    async def _load(self, sources: dict[str, str]) -> None:
        for source in sources.values():
            await self.redis.script_load(source)


@dataclass(frozen=True, slots=True)
class _Step:
    """One script call of a MULTI: a job's add, or the index write of one client's jobs."""

    add: bool
    members: list[int]  # the calls it covers (one for an add)


def _step_replies(replies: Any, steps: int, two_step: bool) -> list[Any]:
    """The next `steps` script replies from a pipeline's replies (errors as objects): read
    straight on a cluster, else out of a MULTI's OK, QUEUED... and EXEC replies."""
    if two_step:
        return [next(replies) for _ in range(steps)]
    queued = [next(replies) for _ in range(steps + 1)]
    executed = next(replies)
    if isinstance(executed, list):
        return executed
    # the MULTI did not run (EXECABORT: a command was refused when queued; or no reply)
    error = next((r for r in queued if isinstance(r, Exception)), executed)
    if not isinstance(error, Exception):
        error = ResponseError(f"the MULTI of an add did not run: {executed!r}")
    return [error] * steps


def _all_refused(add_replies: dict[int, Any], step: _Step) -> bool:
    """Whether the adds of an index write's jobs were all refused in its MULTI."""
    return all(isinstance(add_replies.get(i), Exception) for i in step.members)


def _by_client(calls: list[AddCall], indexed: list[int]) -> dict[str, list[int]]:
    """The calls of `indexed`, grouped by their index entry's client."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i in indexed:
        entry = calls[i].entry
        assert entry is not None
        groups[entry.client_id].append(i)
    return groups


def _entries(calls: list[AddCall], members: list[int]) -> list[IndexEntry]:
    return [entry for i in members if (entry := calls[i].entry) is not None]


def _now_ms(calls: list[AddCall]) -> int:
    """The jobs' own clock (their createdAt), so pruning and scores agree."""
    return max((c.entry.created_ms for c in calls if c.entry is not None), default=0)


def _no_script(reply: Any) -> bool:
    return isinstance(reply, NoScriptError)


def _job_id(reply: Any) -> str | Exception:
    if isinstance(reply, Exception):
        return reply
    if isinstance(reply, int) and reply < 0:
        return ResponseError(f"bullmq's add script refused the job (code {reply})")
    return str(reply)
