"""JobEventHub: one queue-events reader per queue partition per API process, fanned out
in memory.

Long-polls and SSE streams subscribe here instead of polling Redis. The readers
consume BullMQ's events streams (Redis streams, not Pub/Sub), so a reader that
reconnects after an outage resumes from the last entry it saw and loses nothing.

A partition's reader (queue/events.py) runs only while someone in this process waits
on one of its jobs (and READER_LINGER_S after): the job id names the partition, so
only the partitions someone waits on get a reader. Every job makes several events,
and an API process that parsed all of them for nobody spent a fifth of its CPU on it
under load. A reader starts at the stream's tail as it was before the first
subscriber's own read of the job, so nothing that subscriber needs can fall between
the two.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from errand.jobids import QueueName, partition_of, queue_of
from errand.queue.events import EventListener, read_events
from errand.queue.facade import JobQueues
from errand.queue.snapshot import JobSnapshot
from errand.settings import Settings

log = logging.getLogger("errand.events")

RECONNECT_DELAY_S = 0.5
READER_LINGER_S = 30.0

Stream = tuple[QueueName, int]
"""One events stream: a queue and one of its partitions."""


def stream_of(job_id: str) -> Stream | None:
    """The events stream of a job, or None for an id errand never issued."""
    queue = queue_of(job_id)
    return None if queue is None else (queue, partition_of(job_id))


class JobEventHub:
    """Routes each queue event to the in-process subscribers of its job."""

    def __init__(self, settings: Settings, queues: JobQueues) -> None:
        self.settings = settings
        self.queues = queues
        self.last_ids: dict[Stream, str] = {}
        self._subscribers: dict[str, set[asyncio.Queue[str]]] = defaultdict(set)
        self._readers: dict[Stream, asyncio.Task[None]] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self._starting: dict[Stream, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._watchers: dict[Stream, int] = defaultdict(int)
        self._idle_stops: dict[Stream, asyncio.TimerHandle] = {}
        self._reads: dict[tuple[str, str], asyncio.Future[JobSnapshot]] = {}

    # --- lifecycle -------------------------------------------------------
    async def close(self) -> None:
        for handle in self._idle_stops.values():
            handle.cancel()
        self._idle_stops.clear()
        tasks = [*self._readers.values(), *self._stopping]
        self._readers.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    @property
    def running_readers(self) -> list[Stream]:
        return [stream for stream, task in self._readers.items() if not task.done()]

    async def _watch(self, stream: Stream) -> None:
        """Count one more subscriber on `stream`; start its reader if it is not running."""
        self._watchers[stream] += 1
        handle = self._idle_stops.pop(stream, None)
        if handle is not None:
            handle.cancel()
        task = self._readers.get(stream)
        if task is not None and not task.done():
            return
        try:
            async with self._starting[stream]:
                task = self._readers.get(stream)
                if task is None or task.done():
                    self.last_ids[stream] = await self._stream_tail(stream)
                    self._readers[stream] = asyncio.create_task(self._read_forever(stream))
        except BaseException:
            self._unwatch(stream)  # e.g. Redis is down: the caller's request fails, uncounted
            raise

    def _unwatch(self, stream: Stream) -> None:
        self._watchers[stream] -= 1
        if self._watchers[stream] == 0 and stream in self._readers:
            loop = asyncio.get_running_loop()
            self._idle_stops[stream] = loop.call_later(READER_LINGER_S, self._stop_idle, stream)

    def _stop_idle(self, stream: Stream) -> None:
        self._idle_stops.pop(stream, None)
        if self._watchers[stream] == 0:
            task = self._readers.pop(stream, None)  # a new subscriber starts a new reader
            if task is not None:
                task.cancel()
                self._stopping.add(task)
                task.add_done_callback(self._stopping.discard)

    async def _stream_tail(self, stream: Stream) -> str:
        entries = await self.queues.redis.xrevrange(self.queues.keys.events(*stream), count=1)
        return str(entries[0][0]) if entries else "0-0"

    async def _read_forever(self, stream: Stream) -> None:
        """Run a queue-events reader; when it dies (Redis outage) start another where it stopped."""
        while True:
            await read_events(self.settings, stream, self.last_ids[stream], self._listener(stream))
            log.warning("event reader for %s/%d stopped; reconnecting", *stream)
            await asyncio.sleep(RECONNECT_DELAY_S)

    def _listener(self, stream: Stream) -> EventListener:
        def on_event(args: dict[str, Any], entry_id: str) -> None:
            # A sync listener, as BullMQ requires: only hand the id over, never await here.
            self.last_ids[stream] = entry_id
            job_id = args.get("jobId")
            for inbox in self._subscribers.get(job_id, ()) if job_id else ():
                inbox.put_nowait(entry_id)

        return on_event

    # --- subscriptions ---------------------------------------------------
    @contextlib.asynccontextmanager
    async def subscribe(self, job_id: str) -> AsyncIterator[asyncio.Queue[str]]:
        """An inbox that receives the stream entry id of every event of `job_id`.

        Read the job only after entering: events from then on reach the inbox.
        """
        stream = stream_of(job_id)
        inbox: asyncio.Queue[str] = asyncio.Queue()
        self._subscribers[job_id].add(inbox)
        try:
            if stream is None:  # a foreign id: the caller's read answers 404
                yield inbox
                return
            await self._watch(stream)  # undoes its count if it fails
            try:
                yield inbox
            finally:
                self._unwatch(stream)
        finally:
            subs = self._subscribers.get(job_id)
            if subs is not None:
                subs.discard(inbox)
                if not subs:
                    del self._subscribers[job_id]

    @property
    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._subscribers.values())

    def current_id(self, job_id: str) -> str:
        stream = stream_of(job_id)
        return self.last_ids.get(stream, "0-0") if stream else "0-0"

    async def wait_until_final(
        self, job_id: str, timeout_s: float, owner: str | None = None
    ) -> JobSnapshot:
        """The job's snapshot as soon as it is final, or after `timeout_s` as it is then.

        Subscribes before the first read, so no event can slip between the two.
        Raises NotFound for an unknown job, or one that `owner` (when given) does not own.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        async with self.subscribe(job_id) as inbox:
            snap = await self.queues.snapshot(job_id, owner)
            while not snap.is_final:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    entry_id = await asyncio.wait_for(inbox.get(), remaining)
                except TimeoutError:
                    break
                snap = await self.snapshot_after(job_id, entry_id)
        return snap

    async def snapshot_after(self, job_id: str, entry_id: str) -> JobSnapshot:
        """One Redis read per job and event, shared by every subscriber woken by that event."""
        key = (job_id, entry_id)
        task = self._reads.get(key)
        if task is None:
            task = asyncio.ensure_future(self.queues.snapshot(job_id))
            self._reads[key] = task
            task.add_done_callback(lambda _: self._reads.pop(key, None))
        return await asyncio.shield(task)

    async def changes(self, job_id: str) -> AsyncGenerator[tuple[str, JobSnapshot], None]:
        """(event id, snapshot) now and after every change of state or progress, until final."""
        async with self.subscribe(job_id) as inbox:
            snap = await self.queues.snapshot(job_id)
            yield self.current_id(job_id), snap
            last = _signature(snap)
            while not snap.is_final:
                entry_id = await inbox.get()
                snap = await self.snapshot_after(job_id, entry_id)
                if _signature(snap) != last:
                    last = _signature(snap)
                    yield entry_id, snap


def _signature(snap: JobSnapshot) -> tuple[object, ...]:
    return (snap.status, snap.progress, snap.attempts_made, snap.next_attempt_ms)
