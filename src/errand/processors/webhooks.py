"""Webhooks on the worker side: emitting events for finished jobs, and the delivery processor.

`WebhookEvents.wrap` wraps the report and notification processors. When the
wrapped processor succeeds, or fails on its last attempt, it enqueues one
delivery job on the `webhooks` queue before BullMQ records the outcome: a crash
in between redelivers the job, which emits the same event again, and the
deterministic delivery job id makes BullMQ ignore that second add.

`WebhookProcessor` runs one delivery attempt per job attempt; BullMQ's retry
policy for the `webhooks` queue supplies the backoff and the dead-lettering.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from errand.clock import iso_ms, now_ms
from errand.errors import JobDeferred, NotFound, PermanentFailure
from errand.jobids import QueueName
from errand.processors.job import Processor, RunningJob
from errand.queue.facade import JobQueues
from errand.queue.jobhash import client_of
from errand.queue.outcomes import outcome_of
from errand.queue.policies import is_last_attempt
from errand.queue.snapshot import JobSnapshot
from errand.settings import Settings
from errand.statuses import JobStatus
from errand.webhooks.delivery import DeliveryOutcome, DeliveryRequest, deliver
from errand.webhooks.events import (
    delivery_job_id,
    event_payload,
    event_type_for,
    final_snapshot,
    webhook_id_for,
)
from errand.webhooks.signing import InvalidWebhookSecret, Signer
from errand.webhooks.state import webhook_states

log = logging.getLogger("errand.worker.webhooks")

# A delivery waits (without spending an attempt) until BullMQ has recorded the outcome
# of its source job, so a receiver that reads the job back sees it finished; at most
# this long, in case the source job's worker died in between.
SETTLE_POLL_MS = 50
SETTLE_LIMIT_MS = 10_000


class WebhookDeliveryFailed(Exception):
    """One delivery attempt did not get a 2xx; BullMQ retries it with backoff."""


def _is_last_attempt(job: RunningJob) -> bool:
    return is_last_attempt(int(job.attemptsMade) + 1, job.opts.get("attempts"))


class WebhookEvents:
    """Emits the webhook event of a job's final outcome (see the module docstring)."""

    def __init__(self, settings: Settings, redis: Any, queues: JobQueues | None = None) -> None:
        self.queues = queues or JobQueues(settings, redis)
        self.states = webhook_states(settings, redis)

    def wrap(self, queue: QueueName, processor: Processor) -> Processor:
        """`processor`, emitting an event when a job with a webhookUrl reaches a final outcome
        (a canceled or expired job included: its processor returns errand's outcome marker)."""

        async def process(job: RunningJob, token: str) -> Any:
            if not job.data.get("webhookUrl"):
                return await processor(job, token)
            if job.attemptsMade == 0 and job.attemptsStarted <= 1:
                await self.states.start_round(str(job.id))
            try:
                result = await processor(job, token)
            except JobDeferred:
                raise
            except Exception as err:
                if isinstance(err, PermanentFailure) or job.discarded or _is_last_attempt(job):
                    await self._emit_quietly(queue, job, str(err))
                raise
            outcome = outcome_of(result)
            if outcome is None:
                await self.emit(queue, job, None)
            else:
                await self.emit(queue, job, outcome[1], JobStatus(str(outcome[0])))
            return result

        return process

    async def emit(
        self,
        queue: QueueName,
        job: RunningJob,
        error: str | None,
        status: JobStatus | None = None,
    ) -> str | None:
        """Enqueue the delivery of the event of the outcome the running `job` just reached
        (once per round); its delivery job id. `status` names a final status other than
        completed (no `error`) or failed (an `error`)."""
        finished_ms = now_ms()
        snap = final_snapshot(await self.queues.snapshot(str(job.id)), finished_ms, error, status)
        return await self.emit_final(snap, finished_ms)

    async def emit_final(self, snap: JobSnapshot, emitted_ms: int) -> str | None:
        """Enqueue the delivery of the event of a job in its final state `snap` (once per
        round); its delivery job id, or None when the job has no webhook or no such event."""
        event = event_type_for(snap.queue, snap.status)
        url = snap.data.get("webhookUrl")
        if event is None or not url:
            return None
        job_id = snap.job_id
        round_no = await self.states.current_round(job_id)
        delivery_id = delivery_job_id(job_id, event, round_no)
        webhook_id = webhook_id_for(delivery_id)
        data = {
            "clientId": client_of(snap.data),  # the owner of the job: the DLQ's clientId
            "sourceJobId": job_id,
            "event": str(event),
            "url": str(url),
            "webhookId": webhook_id,
            "emittedAt": emitted_ms,
            "payload": event_payload(event, snap, emitted_ms),
        }
        # Pending first: the delivery may run (and record its outcome) right after the add.
        await self.states.mark_pending(job_id, delivery_id, str(event), webhook_id)
        await self.queues.add(QueueName.WEBHOOKS, str(event), data, delivery_id)
        return delivery_id

    async def _emit_quietly(self, queue: QueueName, job: RunningJob, error: str) -> None:
        """Emit a failure event; a failure to emit must not mask the job's own error."""
        try:
            await self.emit(queue, job, error)
        except Exception:
            log.exception(
                "could not emit the webhook event of a failed job",
                extra={"jobId": job.id, "queue": str(queue)},
            )


class WebhookProcessor:
    """Delivers one event per job: parse -> POST -> record on the source job's state."""

    def __init__(self, settings: Settings, redis: Any) -> None:
        self.settings = settings
        self.queues = JobQueues(settings, redis)
        self.states = webhook_states(settings, redis)
        self._signer: Signer | None = None

    def signer(self) -> Signer:
        """Raises InvalidWebhookSecret when no usable ERRAND_WEBHOOK_SECRET is set."""
        if self._signer is None:
            current, previous = self.settings.webhook_secret, self.settings.webhook_secret_previous
            if current is None or not current.get_secret_value():
                raise InvalidWebhookSecret("ERRAND_WEBHOOK_SECRET is not set")
            self._signer = Signer.from_secrets(
                current.get_secret_value(), previous.get_secret_value() if previous else None
            )
        return self._signer

    async def __call__(self, job: RunningJob, token: str) -> dict[str, Any]:
        data = job.data
        try:
            source_id, event_job_id = str(data["sourceJobId"]), str(job.id)
            request = DeliveryRequest(
                str(data["url"]), str(data["webhookId"]), _body(data["payload"])
            )
        except (KeyError, TypeError) as err:
            raise PermanentFailure(f"malformed delivery job: {err!r}") from err
        if job.attemptsMade == 0:
            await self._wait_for_source(job, token, source_id)
        await self.states.record(source_id, event_job_id, {"status": "pending"}, attempt=True)
        try:
            outcome = await deliver(
                request,
                self.signer(),
                timeout_s=self.settings.webhook_timeout_s,
                allow_private=self.settings.webhook_allow_private,
            )
        except InvalidWebhookSecret as err:
            outcome = DeliveryOutcome(False, error=f"cannot sign: {err}", permanent=True)
        await self._record(source_id, event_job_id, outcome, final=_is_last_attempt(job))
        if outcome.delivered:
            return {"delivered": True, "statusCode": outcome.status_code}
        if outcome.permanent:
            raise PermanentFailure(outcome.error or "refused")
        raise WebhookDeliveryFailed(outcome.error or "not delivered")

    async def _wait_for_source(self, job: RunningJob, token: str, source_id: str) -> None:
        """Return once the source job is recorded final; else put this job back for a moment.

        Raises JobDeferred (the engine's "not now, and no attempt spent") to put it back.
        """
        if now_ms() - int(job.data.get("emittedAt") or 0) > SETTLE_LIMIT_MS:
            return
        try:
            if (await self.queues.snapshot(source_id)).is_final:
                return
        except NotFound:
            return
        await job.moveToDelayed(now_ms() + SETTLE_POLL_MS, token)
        raise JobDeferred

    async def _record(
        self, source_id: str, event_job_id: str, outcome: DeliveryOutcome, *, final: bool
    ) -> None:
        code = str(outcome.status_code) if outcome.status_code is not None else ""
        if outcome.delivered:
            fields = {
                "status": "delivered",
                "lastStatusCode": code,
                "lastError": "",
                "deliveredAt": iso_ms(now_ms()) or "",
            }
        else:
            status = "failed" if final or outcome.permanent else "pending"
            fields = {"status": status, "lastStatusCode": code, "lastError": outcome.error or ""}
        await self.states.record(source_id, event_job_id, fields)


def _body(payload: Any) -> bytes:
    if not isinstance(payload, dict):
        raise TypeError("payload must be an object")
    return orjson.dumps(payload)
