"""Public job statuses and the atomic snapshot of one BullMQ job they are read from."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from errand.keys import QueueName

# BullMQ scores delayed jobs as `timestamp * 0x1000 + counter`.
_DELAY_SCORE_FACTOR = 0x1000


class JobStatus(StrEnum):
    WAITING = "waiting"
    ACTIVE = "active"
    COMPLETED = "completed"
    FAILED = "failed"


TERMINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED})


def _int(value: str | None) -> int:
    try:
        return int(value) if value else 0
    except ValueError:
        return 0


def _json(value: str | None, default: Any) -> Any:
    if value is None:
        return default
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return default


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
    opts = _json(fields.get("opts"), {})
    progress = _json(fields.get("progress"), 0)
    if status is JobStatus.COMPLETED:
        progress = 100
    elif not isinstance(progress, int | float) or isinstance(progress, bool):
        progress = 0
    data = _json(fields.get("data"), {})
    return JobSnapshot(
        job_id=job_id,
        queue=queue,
        status=status,
        name=fields.get("name", ""),
        data=data if isinstance(data, dict) else {},
        priority=_int(fields.get("priority")),
        progress=max(0, min(100, int(progress))),
        attempts_made=_int(fields.get("atm") or fields.get("attemptsMade")),
        max_attempts=int(opts.get("attempts") or 1) if isinstance(opts, dict) else 1,
        created_ms=_int(fields.get("timestamp")),
        started_ms=_int(fields.get("processedOn")),
        finished_ms=_int(fields.get("finishedOn")) if status in TERMINAL_STATUSES else 0,
        next_attempt_ms=int(delayed) // _DELAY_SCORE_FACTOR if delayed is not None else 0,
        failed_reason=fields.get("failedReason") or None,
        webhook=webhook,
        queue_depth=queue_depth,
    )
