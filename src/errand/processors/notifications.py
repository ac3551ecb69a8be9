"""The notification processor: render, send once, record.

Exactly-once is impossible across a crash, so errand narrows it to a window and
lets the receiver close it:
1. a job id in the sent ledger (kept 24 h) is never sent again;
2. a short claim stops two workers sending the same job at the same time
   (a stalled job redelivered while its first worker still runs);
3. the ledger is written right after the send. A crash between the send and
   that write is the one window left; the Message-ID derived from the job id
   lets the receiving system drop that duplicate. The simulated transport has no
   such window: its outbox write and the ledger entry are one Lua script.

The claim is also where an attempt learns that it must not send at all: a job past
its `expiresAt` ends `expired`, and a job canceled while a stalled copy of it still
ran (its cancel flag is set) ends `canceled`. The claim script checks both, with the
ledger, atomically; the processor returns errand's outcome marker and the engine
completes the job with it (never a failure, so never dead-lettered).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
import signal
from datetime import datetime
from typing import Any

from errand import tracing
from errand.clock import now_ms
from errand.jobids import partition_of
from errand.keys import Keys
from errand.mail.templates import RenderedEmail, render
from errand.mail.transports import EmailSender, SentMark, build_sender, message_id_for
from errand.processors.job import RunningJob
from errand.queue.cancel import CANCELED_WHILE_RUNNING
from errand.queue.outcomes import Outcome, outcome_value
from errand.settings import Settings

log = logging.getLogger("errand.worker.notifications")

CLAIM_POLL_S = 0.1

# Release the claim only if this worker still holds it.
_RELEASE_CLAIM = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# One round trip for "not sent yet? then claim it". KEYS: ledger, claim, cancel flag.
# ARGV: claim token, claim ms, expiresAt (epoch ms, 0 = never), now (epoch ms).
# Returns 0 already sent, 1 claimed, -1 held by another, 2 canceled, 3 expired.
_TAKE_CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
if redis.call('EXISTS', KEYS[3]) == 1 then return 2 end
if ARGV[3] ~= '0' and tonumber(ARGV[4]) >= tonumber(ARGV[3]) then return 3 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 1
"""
_CLAIMED, _ALREADY_SENT, _CANCELED, _EXPIRED = 1, 0, 2, 3


def _epoch_ms(iso: str) -> int:
    """The job data's ISO 8601 `expiresAt` as epoch ms; 0 when it has none."""
    if not iso:
        return 0
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


class SendInProgress(Exception):
    """Another worker holds the send claim of this job (a concurrent redelivery)."""


class NotificationProcessor:
    def __init__(self, settings: Settings, redis: Any, sender: EmailSender | None = None) -> None:
        self.settings = settings
        self.redis = redis
        self.keys = Keys(settings.queue_prefix, settings.partitions)
        self.sender = sender or build_sender(settings, redis)
        self.claim_ms = settings.lock_duration_ms
        self._take_claim = redis.register_script(_TAKE_CLAIM)  # EVALSHA per attempt
        self._release = redis.register_script(_RELEASE_CLAIM)
        self._span_attributes = {"errand.email.transport": self.sender.name}

    async def __call__(self, job: RunningJob, token: str) -> dict[str, Any]:
        job_id = str(job.id)
        kind, user_id = str(job.data["type"]), str(job.data["userId"])
        attempt = job.attemptsMade + 1
        claim = secrets.token_hex(8)
        expires_at = str(job.data.get("expiresAt") or "")
        taken = await self._claim(job_id, claim, _epoch_ms(expires_at))
        if taken == _ALREADY_SENT:
            return {"sent": False, "reason": "already sent"}
        if taken == _CANCELED:
            return outcome_value(Outcome.CANCELED, CANCELED_WHILE_RUNNING)
        if taken == _EXPIRED:
            return outcome_value(Outcome.EXPIRED, f"expired at {expires_at} before it was sent")
        released = False
        try:
            email = render(kind, user_id, message_id_for(job_id, self.settings.smtp_from))
            # PermanentFailure: no retry. True when the send released the claim itself.
            released = await self._send_and_mark(email, user_id, attempt, job_id, claim)
        finally:
            if not released:
                await self._release(keys=[self.keys.send_claim(job_id)], args=[claim])
        self._maybe_crash()
        return {"sent": True, "transport": self.sender.name, "messageId": email.message_id}

    async def _send_and_mark(
        self, email: RenderedEmail, user_id: str, attempt: int, job_id: str, claim: str
    ) -> bool:
        """Send, then record the job in the sent ledger; True if the claim was released.

        A sender that can (the simulated outbox) writes the ledger and releases the claim
        in the same atomic step as the delivery, which closes the crash window for it
        entirely and saves a round trip per email.
        """
        mark = SentMark(
            self.keys.sent_ledger(job_id),
            self.sender.name,
            self.settings.sent_ledger_ttl_seconds,
            self.keys.send_claim(job_id),
            claim,
            partition_of(job_id),
        )
        with tracing.span(f"{self.sender.name} send", attributes=self._span_attributes):
            if getattr(self.sender, "marks_sent", False):
                await self.sender.send(email, user_id, attempt, mark=mark)  # type: ignore[call-arg]
                return True
            await self.sender.send(email, user_id, attempt)
        await self.redis.set(mark.key, mark.value, ex=mark.ttl_s)
        return False

    async def _claim(self, job_id: str, claim: str, expires_ms: int) -> int:
        """Take the send claim; if another worker holds it, wait for its outcome.

        Returns _CLAIMED, or why not: _ALREADY_SENT (the other worker sent the email
        meanwhile), _CANCELED or _EXPIRED. Raises SendInProgress if another worker still
        holds the claim after a lock duration.
        """
        k = self.keys
        keys = (k.sent_ledger(job_id), k.send_claim(job_id), k.cancel_request(job_id))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.claim_ms / 1000
        # The checks and the claim are one script, so no send can slip between them.
        while (taken := await self._take(keys, claim, expires_ms)) < 0:
            if loop.time() > deadline:
                raise SendInProgress(f"another worker is still sending job {job_id}")
            await asyncio.sleep(CLAIM_POLL_S)
        return int(taken)

    async def _take(self, keys: tuple[str, str, str], claim: str, expires_ms: int) -> int:
        args = (claim, self.claim_ms, expires_ms, now_ms())
        return int(await self._take_claim(keys=list(keys), args=list(args)))

    def _maybe_crash(self) -> None:
        rate = self.settings.fault_crash_after_send_rate
        if rate and random.random() < rate:
            log.warning("fault injection: crashing after send, before the acknowledgement")
            os.kill(os.getpid(), signal.SIGKILL)
