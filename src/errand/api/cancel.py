"""Canceling a job over HTTP: which answer each state gets, and the side effects of a cancel.

`POST /jobs/{id}/cancel` (routes/jobs.py) calls `cancel_job`. A job that had not
started is canceled atomically by the queue model's cancel script; the job's
`*.canceled` webhook event is emitted here, where it was finished. An active
report is asked to stop (202); its worker finishes it and emits the event.
"""

from __future__ import annotations

import logging

from errand.api.caller import Caller
from errand.api.deps import Services
from errand.clock import now_ms
from errand.errors import Conflict, NotFound
from errand.jobids import QueueName
from errand.metrics.jobs import record_canceled
from errand.queue.cancel import CancelOutcome
from errand.queue.snapshot import JobSnapshot
from errand.statuses import JobStatus

log = logging.getLogger("errand.api")

_CANCELABLE_QUEUES = (QueueName.REPORTS, QueueName.NOTIFICATIONS)


async def cancel_job(svc: Services, caller: Caller, job_id: str) -> tuple[JobSnapshot, bool]:
    """Cancel `job_id` for `caller`: (the job after it, True when it is now canceled or
    False when an active report was asked to stop).

    Raises NotFound for an unknown or foreign job (webhook deliveries are nobody's to
    cancel), Conflict (with `job_status`) for a final job or an active notification.
    """
    snap = await svc.queues.snapshot(job_id, caller.client_id)
    if snap.queue not in _CANCELABLE_QUEUES:
        raise NotFound(f"no job with id {job_id!r}")
    _refuse_if_not_cancelable(snap)
    outcome = await svc.queues.cancel(snap.queue, job_id)
    if outcome is CancelOutcome.MISSING:
        raise NotFound(f"no job with id {job_id!r}")
    after = await svc.queues.snapshot(job_id)
    if outcome is CancelOutcome.CANCELED:
        record_canceled(after.queue)
        await _emit_quietly(svc, after)
        return after, True
    if outcome is CancelOutcome.REQUESTED:
        return after, False
    if outcome in (CancelOutcome.ACTIVE, CancelOutcome.SENDING):
        _refuse_active_notification(job_id)
    raise Conflict(f"job {job_id!r} is {after.status}", job_status=str(after.status))


def _refuse_if_not_cancelable(snap: JobSnapshot) -> None:
    if snap.is_final:
        raise Conflict(f"job {snap.job_id!r} is {snap.status}", job_status=str(snap.status))
    if snap.status is JobStatus.ACTIVE and snap.queue is QueueName.NOTIFICATIONS:
        _refuse_active_notification(snap.job_id)


def _refuse_active_notification(job_id: str) -> None:
    raise Conflict(
        f"notification {job_id!r} is being sent; an email handed to the mail server "
        "cannot be called back",
        job_status=str(JobStatus.ACTIVE),
    )


async def _emit_quietly(svc: Services, snap: JobSnapshot) -> None:
    """The job's `*.canceled` event; a failure to emit it does not undo the cancel."""
    try:
        await svc.webhooks.emit_final(snap, now_ms())
    except Exception:
        log.exception("could not emit the webhook event of a canceled job")
