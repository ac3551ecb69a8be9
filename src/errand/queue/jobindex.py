"""The caller's job listing index (GET /jobs): the entry point for jobs errand's add path
did not create itself."""

from __future__ import annotations

from typing import Any

from errand.keys import Keys, QueueName


async def record_in_index(
    redis: Any, keys: Keys, client_id: str, queue: QueueName, job_id: str, created_ms: int
) -> None:
    """Record a job that BullMQ's own Lua created (a schedule's run) in its client's listing
    index, as the add path records the jobs it creates.

    The listing index is built with GET /jobs; until it is, there is nothing to record
    and this does nothing. It is called once per run, when a worker first takes it.
    """
    return None
