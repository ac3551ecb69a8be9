"""The atomic snapshot of one BullMQ job, and the public status it reads as (`errand.statuses`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from errand.jobids import QueueName
from errand.queue.jobhash import attempts_made, client_of, int_field, json_field, max_attempts
from errand.queue.outcomes import outcome_of
from errand.statuses import FINAL_STATUSES, JobStatus

# BullMQ scores delayed jobs as `timestamp * 0x1000 + counter`.
_DELAY_SCORE_FACTOR = 0x1000


# Final states whose view carries an `error` saying why.
ERROR_STATUSES = frozenset({JobStatus.FAILED, JobStatus.CANCELED, JobStatus.EXPIRED})
# States a job may still be canceled from (`POST /jobs/{id}/cancel` answers 200).
CANCELABLE_STATUSES = frozenset({JobStatus.SCHEDULED, JobStatus.WAITING})


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
    scheduled_ms: int = 0
    cancel_requested: bool = False

    @property
    def client_id(self) -> str:
        """The client that owns the job (jobs from before clients belong to `anonymous`)."""
        return client_of(self.data)

    @property
    def schedule_id(self) -> str | None:
        """The schedule whose run this job is, else None."""
        schedule_id = self.data.get("scheduleId")
        return schedule_id if isinstance(schedule_id, str) else None

    @property
    def dead_lettered(self) -> bool:
        """A failed job is parked in BullMQ's failed set, which is the DLQ."""
        return self.status is JobStatus.FAILED

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def error(self) -> str | None:
        """The public `error`: why a job failed, was canceled or expired; None otherwise."""
        return self.failed_reason if self.status in ERROR_STATUSES else None


def snapshot_from(
    job_id: str,
    queue: QueueName,
    fields: dict[str, str],
    state: tuple[float | None, float | None, float | None, int | None],
    webhook: dict[str, str],
    queue_depth: int = 0,
    cancel_requested: bool = False,
) -> JobSnapshot:
    """Build a snapshot from the replies of `JobQueues.snapshot`'s script.

    `state` is (score in completed, in failed, in delayed, position in active).
    """
    delayed = state[2]
    data = json_field(fields, "data", {})
    data = data if isinstance(data, dict) else {}
    status, reason = _status(fields, data, state)
    progress = json_field(fields, "progress", 0)
    if status is JobStatus.COMPLETED:
        progress = 100
    elif not isinstance(progress, int | float) or isinstance(progress, bool):
        progress = 0
    due_ms = int(delayed) // _DELAY_SCORE_FACTOR if delayed is not None else 0
    scheduled = status is JobStatus.SCHEDULED
    return JobSnapshot(
        job_id=job_id,
        queue=queue,
        status=status,
        name=fields.get("name", ""),
        data=data,
        priority=int_field(fields, "priority"),
        progress=max(0, min(100, int(progress))),
        attempts_made=attempts_made(fields),
        max_attempts=max_attempts(json_field(fields, "opts", {})),
        created_ms=int_field(fields, "timestamp"),
        started_ms=int_field(fields, "processedOn"),
        finished_ms=int_field(fields, "finishedOn") if status in FINAL_STATUSES else 0,
        next_attempt_ms=0 if scheduled else due_ms,
        failed_reason=reason,
        webhook=webhook,
        queue_depth=queue_depth,
        scheduled_ms=due_ms if scheduled else 0,
        cancel_requested=cancel_requested,
    )


def _status(
    fields: dict[str, str],
    data: dict[str, Any],
    state: tuple[float | None, float | None, float | None, int | None],
) -> tuple[JobStatus, str | None]:
    """The public status and its error text: a completed job carrying errand's outcome
    marker is canceled or expired; a delayed job that never ran and has a `sendAt` is
    scheduled (a delayed job with attempts made sits in a retry backoff: waiting)."""
    completed, failed, delayed, active_pos = state
    last_error = fields.get("failedReason") or None
    if completed is not None:
        outcome = outcome_of(json_field(fields, "returnvalue", None))
        if outcome is None:
            return JobStatus.COMPLETED, last_error
        return JobStatus(str(outcome[0])), outcome[1]
    if failed is not None:
        return JobStatus.FAILED, last_error
    if active_pos is not None:
        return JobStatus.ACTIVE, last_error
    if delayed is not None and data.get("sendAt") and attempts_made(fields) == 0:
        return JobStatus.SCHEDULED, None
    return JobStatus.WAITING, last_error
