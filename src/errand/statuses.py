"""The public job statuses (API contract: "Job statuses"), shared by the server and the
typed client, so the two cannot drift. Imports nothing: the client loads it alone."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    SCHEDULED = "scheduled"
    WAITING = "waiting"
    ACTIVE = "active"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"
    EXPIRED = "expired"


FINAL_STATUSES = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED, JobStatus.EXPIRED}
)
"""The statuses a job never leaves."""
