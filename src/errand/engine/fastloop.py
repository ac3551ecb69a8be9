"""FastWorker: errand's lean BullMQ worker loop (ERRAND_WORKER_ENGINE=fast).

It drives BullMQ's own Lua scripts, so the jobs stay BullMQ jobs, but spends far
less Python per job than bullmq's `Worker`:

- one EVALSHA per job: `moveToFinished` with fetchNext hands the slot its next job
  (bullmq-python sends moveToActive and moveToFinished separately);
- `concurrency` long-lived slot coroutines instead of a task per job and an
  `asyncio.wait` over the whole in-flight set on every completion;
- every command goes over one pipelined connection (redisio/pipelined.py);
- one shared BZPOPMIN on the queue's marker wakes idle slots one at a time;
- with partitions, one FastWorker per partition shares the queue's concurrency
  through a SlotGate (engine/gate.py), fairly;
- while due delayed jobs wait to be promoted, fetches take turns (engine/promotion.py).

Semantics follow bullmq's Worker and Job: locks taken by the scripts and renewed
with extendLocks, stalled jobs recovered with moveStalledJobsToWait, failures
retried with the job's backoff through moveToDelayed/retryJob or finalised through
moveToFinished (UnrecoverableError goes straight to failed), and the same events
("active", "completed", "failed", "error", "stalled", "closed") for listeners.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from typing import Any

from bullmq import UnrecoverableError
from bullmq.backends import RedisBackend
from bullmq.backoffs import Backoffs
from bullmq.custom_errors import DelayedError, WaitingChildrenError
from bullmq.event_emitter import EventEmitter
from bullmq.redis_connection import RedisConnection
from bullmq.scripts import Scripts
from redis.asyncio.cluster import RedisCluster

from errand.clock import now_ms
from errand.engine.fastjob import SCRIPTS, FastJob, ScriptArgs, dumps, failure_fields
from errand.engine.gate import OpenGate, SlotGate
from errand.engine.marker import ERROR_BACKOFF_S, MarkerWait
from errand.engine.promotion import Promotion
from errand.engine.scheduled import schedule_next_run
from errand.engine.upkeep import Upkeep, cancel_all
from errand.keys import Keys
from errand.queue.policies import is_last_attempt
from errand.queue.scripts import bullmq_script
from errand.redisio.pipelined import pipelined_from_url

log = logging.getLogger("errand.worker.fast")


class FastWorker(EventEmitter, Upkeep, Promotion, MarkerWait):  # type: ignore[misc]  # bullmq is untyped
    """A drop-in for `bullmq.Worker(name, processor, opts)` on the options errand uses."""

    def __init__(
        self,
        name: str,
        processor: Any,
        opts: dict[str, Any],
        client: Any = None,
        gate: SlotGate | None = None,
    ) -> None:
        super().__init__()
        self.gate = gate or OpenGate()
        self.name = name
        self.processor = processor
        self.opts = {
            "drainDelay": 5,
            "concurrency": 1,
            "lockDuration": 30000,
            "maxStalledCount": 1,
            "stalledInterval": 30000,
            **opts,
        }
        self.id = uuid.uuid4().hex
        self.prefix = self.opts.get("prefix", "bull")
        self._owns_client = client is None
        self.client = client or pipelined_from_url(self.opts["connection"], decode_responses=True)
        self.bclient: Any = None
        self.backend = RedisBackend(
            name, RedisConnection(self.client), None, self.prefix, owns_connection=False
        )
        self.qualifiedName = self.backend.qualifiedName
        self.scripts: Scripts = self.backend.scripts
        lock_ms, worker_name = self.opts["lockDuration"], self.opts.get("name")
        self.args = ScriptArgs(self.scripts.keys, (Keys(self.prefix), name), lock_ms, worker_name)
        self._lua = {n: self.client.register_script(bullmq_script(f)) for n, f in SCRIPTS.items()}
        self.redisConnection = self.blockingRedisConnection = None  # as bullmq's Worker has
        self.jobs: set[tuple[FastJob, str]] = set()
        self._locks: dict[str, list[Any]] = {}  # job id -> [token, last renewal ms]
        self._streaks: dict[str, int] = {}  # slot token -> jobs run in a row
        self.closing = self.closed = self.running = False
        self._idle: deque[asyncio.Future[None]] = deque()
        self._idle_event = asyncio.Event()
        self._block_until = 0
        self._slots: list[asyncio.Task[None]] = []
        self._background: list[asyncio.Task[None]] = []
        self._done = asyncio.Event()
        if processor and self.opts.get("autorun", True):
            self._autorun = asyncio.ensure_future(self.run())

    # --- lifecycle ---------------------------------------------------------
    async def run(self) -> None:
        """Run the slots until close(); returns at once if close() came first."""
        if self.running:
            raise RuntimeError("Worker is already running")
        if self.closing:
            return
        self.running = True
        shared = isinstance(self.opts["connection"], RedisCluster)
        self.bclient = self.opts["connection"] if shared else self._blocking_client()
        name = self.opts.get("name")
        await self._load_scripts()
        self._slots = [
            asyncio.create_task(self._slot(n)) for n in range(1, int(self.opts["concurrency"]) + 1)
        ]
        self._background = [
            asyncio.create_task(self._wake_idle_slots()),
            asyncio.create_task(self._renew_locks()),
            asyncio.create_task(self._check_stalled()),
        ]
        try:
            with contextlib.suppress(Exception):  # a name only helps `CLIENT LIST` readers
                if not shared:
                    await self.bclient.client_setname(
                        f"{self.qualifiedName}:w:{name}" if name else self.qualifiedName
                    )
            await asyncio.gather(*self._slots, return_exceptions=True)
        finally:
            # Close the blocking connection first: cancelling a task in BZPOPMIN does not end
            # the command (it ran out its block timeout, so an idle worker took 5 s to close).
            # A cluster's shared marker client is not ours to close.
            if not shared:
                with contextlib.suppress(Exception):
                    await self.bclient.aclose()
            await cancel_all(self._background)
            self.running = False
            self._done.set()

    async def _load_scripts(self) -> None:
        """SCRIPT LOAD once up front: otherwise every slot's first EVALSHA meets NOSCRIPT and
        loads the same 50 KB of Lua again, and the timestamps in their arguments go stale."""
        for script in self._lua.values():
            try:
                script.sha = await self.client.script_load(script.script)
            except Exception as err:  # Redis not up yet: the EVALSHA path loads them later
                self.emit("error", err)
                return

    async def close(self, force: bool = False) -> None:
        """Stop taking jobs; let active ones finish (or cancel them with `force`)."""
        self.closing = True
        for waiter in self._idle:
            if not waiter.done():
                waiter.set_result(None)
        self._idle_event.set()
        if force:
            for slot in self._slots:
                slot.cancel()
        if self.running:
            await asyncio.shield(self._done.wait())
        if self._owns_client:
            with contextlib.suppress(Exception):
                await self.client.aclose()
        self.closed = True
        self.emit("closed")

    def emit(self, event_name: str, *args: Any, **kwargs: Any) -> None:
        """Listeners run synchronously; one that raises becomes an "error" event, never a crash."""
        for listener in self._callbacks.get(event_name, ()):
            try:
                listener(*args, **kwargs)
            except Exception as err:
                if event_name == "error":
                    log.exception("an 'error' listener raised")
                else:
                    self.emit("error", err)

    # --- the slots ---------------------------------------------------------
    async def _slot(self, n: int) -> None:
        """One unit of concurrency: take a job, run it, finish it and take the next one."""
        token = f"{self.id}:{n}"
        next_job: FastJob | None = None
        if n > 1:  # one slot looks for work at start; the marker wakes the others as needed
            await self._wait_idle()
        while not self.closing or next_job is not None:  # a fetched job is ours: run it
            job, next_job = next_job, None
            try:
                job = job or await self._acquire(token)  # holds a gate permit with a job
                if job is not None:
                    next_job = await self._process(job, token)
            except Exception as err:  # never lose a slot; its job's lock expires -> stalled
                next_job = None
                self.emit("error", err)
                await asyncio.sleep(ERROR_BACKOFF_S[0])
            finally:
                if job is not None and next_job is None:
                    self.gate.release()

    async def _acquire(self, token: str) -> FastJob | None:
        """A permit and moveToActive; with nothing to take, give the permit back and wait
        until the marker says there may be work. Returns a job with the permit held."""
        errors = 0
        while not self.closing:
            async with self._fetch_turn():
                await self.gate.acquire()
                job, outcome = None, "closing"
                try:
                    if not self.closing:  # it may have closed while this slot waited
                        job, outcome = await self._take(token)
                finally:
                    if job is None:
                        self.gate.release()
            if job is not None:
                self._streaks[token] = 0
                return job
            if outcome == "error":
                await asyncio.sleep(ERROR_BACKOFF_S[min(errors, len(ERROR_BACKOFF_S) - 1)])
            errors = errors + 1 if outcome == "error" else 0
            if outcome == "empty":
                await self._wait_idle()
        return None

    async def _take(self, token: str) -> tuple[FastJob | None, str]:
        """One moveToActive: (job, "job"), (None, "empty"), or (None, "error"/"unreadable")."""
        try:
            reply = await self._lua["moveToActive"](*self.args.move_to_active(token))
        except Exception as err:
            self.emit("error", err)
            return None, "error"
        try:
            job = self._next_job(reply, token)
        except Exception as err:  # an unreadable job: its lock expires, then it is stalled
            self.emit("error", err)
            return None, "unreadable"
        return job, "job" if job is not None else "empty"

    def _fetch_next(self, token: str) -> bool:
        """Whether finishing a job fetches the slot's next one: not while closing, and not
        after a streak while other partitions wait, nor while due delayed jobs wait (turns)."""
        streak = self._streaks[token] = self._streaks.get(token, 0) + 1
        return not (self.closing or self._promoting() or self.gate.should_yield(streak))

    def _next_job(self, reply: Any, token: str) -> FastJob | None:
        """A job from a script's [hash, id, limitUntil, delayUntil] reply, or None."""
        if not isinstance(reply, list):
            if isinstance(reply, int) and reply < 0:
                raise self.scripts.finishedErrors({"code": reply, "command": "fetchNext"})
            return None
        flat, job_id, limit_until, delay_until = reply
        if limit_until:
            self._block_until = now_ms() + int(limit_until)
        elif delay_until:
            self._block_until = int(delay_until)
        if not flat and not limit_until:
            self._saw_delayed(delay_until)  # the delayed set's head, or 0: none
        if not flat:
            return None
        job = FastJob.from_reply(self, flat, str(job_id), token)
        self.emit("active", job, "waiting")
        return job

    # --- one job -----------------------------------------------------------
    async def _process(self, job: FastJob, token: str) -> FastJob | None:
        """Run the processor, then complete or fail the job; returns the next job fetched."""
        entry = (job, token)
        self.jobs.add(entry)
        self._locks[job.id] = [token, now_ms()]
        try:
            try:
                if job.repeatJobKey:  # a schedule's run: make the next one, as bullmq's Worker
                    await schedule_next_run(self, job)
                if job.deferredFailure:
                    raise UnrecoverableError(job.deferredFailure)
                result = await self.processor(job, token)
            except (DelayedError, WaitingChildrenError):
                return None  # the processor moved the job itself
            except Exception as err:
                return await self._fail(job, token, err)
            return await self._complete(job, token, result)
        finally:
            self.jobs.discard(entry)
            self._locks.pop(job.id, None)

    async def _complete(self, job: FastJob, token: str, result: Any) -> FastJob | None:
        fetch = self._fetch_next(token)
        try:
            keys, args = self.args.move_to_finished(job, token, "completed", dumps(result), fetch)
            reply = await self._lua["moveToFinished"](keys, args)
            if isinstance(reply, int) and reply < 0:
                raise self.scripts.finishedErrors(
                    {"code": reply, "jobId": job.id, "command": "moveToFinished", "state": "active"}
                )
            job.returnvalue, job.finishedOn = result, int(args[1])
            job.attemptsMade += 1
            self.emit("completed", job, result)
            return self._next_job(reply, token) if fetch else None
        except Exception as err:
            self.emit("error", err, job)
            return None

    async def _fail(self, job: FastJob, token: str, err: BaseException) -> FastJob | None:
        """Job.moveToFailed: retry with the job's backoff, or finalise as failed."""
        fetch = self._fetch_next(token)
        try:
            fields = failure_fields(job, err)
            reply = await self._move_failed(job, token, err, fields, fetch)
            if isinstance(reply, int) and reply < 0:
                raise self.scripts.finishedErrors(
                    {"code": reply, "jobId": job.id, "command": "moveToFailed", "state": "active"}
                )
            job.failedReason = fields["failedReason"]
            job.attemptsMade += 1
            self.emit("failed", job, err)
            return self._next_job(reply, token) if fetch else None
        except Exception as move_err:
            self.emit("error", move_err, job)
            return None

    async def _move_failed(
        self, job: FastJob, token: str, err: BaseException, fields: dict[str, Any], fetch: bool
    ) -> Any:
        last = is_last_attempt(job.attemptsMade + 1, job.opts.get("attempts"))
        if not last and not isinstance(err, UnrecoverableError):
            delay = await Backoffs.calculate(
                job.opts.get("backoff"), job.attemptsMade + 1, err, job, None
            )
            if delay and delay != -1:
                job.delay = int(delay)
                keys, args = self.args.move_to_delayed(job, token, int(delay), fields, fetch)
                return await self._lua["moveToDelayed"](keys, args)
            if delay != -1:
                keys, args = self.args.retry_job(job, token, fields)
                await self._lua["retryJob"](keys, args)
                return None
        keys, args = self.args.move_to_finished(
            job, token, "failed", fields["failedReason"], fetch, fields
        )
        job.finishedOn = int(args[1])
        return await self._lua["moveToFinished"](keys, args)
