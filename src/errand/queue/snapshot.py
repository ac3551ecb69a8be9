"""Public job statuses and the atomic snapshot of one BullMQ job they are read from."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from errand.keys import QueueName
from errand.queue.jobhash import attempts_made, client_of, int_field, json_field, max_attempts

# BullMQ scores delayed jobs as `timestamp * 0x1000 + counter`.
_DELAY_SCORE_FACTOR = 0x1000


class JobStatus(StrEnum):
    WAITING = "waiting"
    ACTIVE = "active"
    COMPLETED = "completed"
    FAILED = "failed"


TERMINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED})


@dataclass(frozen=True, slots=True)
class JobSnapshot:
    """One job as it was at one instant: its hash and its state, read in one atomic script."""

    job_id: str
    queue: QueueName
    status: JobStatus
    name: str
    data: dict[str, Any]
    priority: int
    progress: int
    attempts_made: int
    max_attempts: int
    created_ms: int
    started_ms: int
    finished_ms: int
    next_attempt_ms: int
    failed_reason: str | None
    webhook: dict[str, str]
    queue_depth: int = 0

    @property
    def client_id(self) -> str:
        """The client that owns the job (jobs from before clients belong to `anonymous`)."""
        return client_of(self.data)

    @property
    def dead_lettered(self) -> bool:
        """A failed job is parked in BullMQ's failed set, which is the DLQ."""
        return self.status is JobStatus.FAILED

    @property
    def is_final(self) -> bool:
        return self.status in TERMINAL_STATUSES


def snapshot_from(
    job_id: str,
    queue: QueueName,
    fields: dict[str, str],
    state: tuple[float | None, float | None, float | None, int | None],
    webhook: dict[str, str],
    queue_depth: int = 0,
) -> JobSnapshot:
    """Build a snapshot from the replies of `JobQueues.snapshot`'s script.

    `state` is (score in completed, in failed, in delayed, position in active).
    """
    completed, failed, delayed, active_pos = state
    if completed is not None:
        status = JobStatus.COMPLETED
    elif failed is not None:
        status = JobStatus.FAILED
    elif active_pos is not None:
        status = JobStatus.ACTIVE
    else:
        status = JobStatus.WAITING
    progress = json_field(fields, "progress", 0)
    if status is JobStatus.COMPLETED:
        progress = 100
    elif not isinstance(progress, int | float) or isinstance(progress, bool):
        progress = 0
    data = json_field(fields, "data", {})
    return JobSnapshot(
        job_id=job_id,
        queue=queue,
        status=status,
        name=fields.get("name", ""),
        data=data if isinstance(data, dict) else {},
        priority=int_field(fields, "priority"),
        progress=max(0, min(100, int(progress))),
        attempts_made=attempts_made(fields),
        max_attempts=max_attempts(json_field(fields, "opts", {})),
        created_ms=int_field(fields, "timestamp"),
        started_ms=int_field(fields, "processedOn"),
        finished_ms=int_field(fields, "finishedOn") if status in TERMINAL_STATUSES else 0,
        next_attempt_ms=int(delayed) // _DELAY_SCORE_FACTOR if delayed is not None else 0,
        failed_reason=fields.get("failedReason") or None,
        webhook=webhook,
        queue_depth=queue_depth,
    )
