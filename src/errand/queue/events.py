"""Reading a queue's BullMQ events stream: one QueueEvents reader, run until it fails.

The API's JobEventHub (api/events.py) restarts a reader that stopped from the last
entry it saw; this module keeps bullmq's QueueEvents, and its traps (listeners are
called synchronously, an error is an event, not an exception), in the queue layer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from bullmq import QueueEvents

from errand.jobids import QueueName
from errand.keys import partition_prefix
from errand.redisio.connection import bullmq_connection
from errand.settings import Settings

WATCHED_EVENTS = (
    "waiting",
    "active",
    "progress",
    "completed",
    "failed",
    "delayed",
    "stalled",
    "removed",
)
BLOCKING_TIMEOUT_MS = 5000

# Called with the event's fields and its stream entry id; synchronous, as BullMQ calls it.
EventListener = Callable[[dict[str, Any], str], None]


async def read_events(
    settings: Settings, stream: tuple[QueueName, int], last_event_id: str, on_event: EventListener
) -> None:
    """Pass every event of partition `stream[1]` of queue `stream[0]` after
    `last_event_id` to `on_event`; return when the reader fails (e.g. Redis went away).
    Cancelling it closes the reader."""
    queue, partition = stream
    failed = asyncio.Event()
    reader = QueueEvents(
        str(queue),
        {
            "connection": bullmq_connection(settings),
            "prefix": partition_prefix(settings.queue_prefix, partition),
            "autorun": False,
            "lastEventId": last_event_id,
            "blockingTimeout": BLOCKING_TIMEOUT_MS,
            "skipVersionCheck": True,
        },
    )
    for event in WATCHED_EVENTS:
        reader.on(event, on_event)
    reader.on("error", lambda *_: failed.set())
    run = asyncio.ensure_future(reader.run())
    stop = asyncio.ensure_future(failed.wait())
    try:
        await asyncio.wait({run, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
        await reader.close()
        if not run.done():
            run.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await run
