"""The notification processor: render, send once, record.

Exactly-once is impossible across a crash, so errand narrows it to a window and
lets the receiver close it:
1. a job id in the sent ledger (kept 24 h) is never sent again;
2. two workers never send the same job at the same time (a stalled job redelivered
   while its first worker still runs). A sender whose delivery is atomic with the
   ledger (the simulated outbox: one Lua script checks the ledger, delivers and
   writes the ledger) needs nothing more: the second delivery finds the ledger. Any
   other sender (SMTP) first takes a short send claim, and a copy that finds the
   claim held waits for the holder's outcome;
3. a claim-based sender writes the ledger right after the send. A crash between
   the send and that write is the one window left; the Message-ID derived from the
   job id lets the receiving system drop that duplicate. The atomic sender has no
   such window.

The same atomic step (the claim script, or the atomic delivery) is where an attempt
learns that it must not send at all: a job past its `expiresAt` ends `expired`, and a
job canceled while a stalled copy of it still ran (its cancel flag is set) ends
`canceled`. Both are checked with the ledger, in one script; the processor returns
errand's outcome marker and the engine completes the job with it (never a failure, so
never dead-lettered). The atomic delivery also respects a claim another worker holds
(a worker with an SMTP transport, during a change of transport).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
import signal
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from errand import tracing
from errand.clock import now_ms
from errand.jobids import partition_of
from errand.keys import Keys
from errand.mail.templates import RenderedEmail, render
from errand.mail.transports import (
    AtomicSender,
    EmailSender,
    SendVerdict,
    SentMark,
    build_sender,
    message_id_for,
)
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
# Replies as SendVerdict: 0 already sent, 1 claimed, -1 held by another, 2 canceled,
# 3 expired.
_TAKE_CLAIM = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
if redis.call('EXISTS', KEYS[3]) == 1 then return 2 end
if ARGV[3] ~= '0' and tonumber(ARGV[4]) >= tonumber(ARGV[3]) then return 3 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 1
"""


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
        # A sender that delivers and writes the ledger in one step needs no send claim.
        self._atomic = self.sender if isinstance(self.sender, AtomicSender) else None
        self.claim_ms = settings.lock_duration_ms
        self._take_claim = redis.register_script(_TAKE_CLAIM)  # EVALSHA per attempt
        self._release = redis.register_script(_RELEASE_CLAIM)
        self._span_name = f"{self.sender.name} send"
        self._span_attributes = {"errand.email.transport": self.sender.name}
        self._ledger_ttl_s = settings.sent_ledger_ttl_seconds

    async def __call__(self, job: RunningJob, token: str) -> dict[str, Any]:
        job_id = str(job.id)
        data = job.data
        user_id = str(data["userId"])
        attempt = job.attemptsMade + 1
        expires_at = str(data.get("expiresAt") or "")
        message_id = message_id_for(job_id, self.settings.smtp_from)
        if self._atomic is not None:
            email = render(str(data["type"]), user_id, message_id)
            verdict = await self._deliver_once(
                self._atomic, email, user_id, attempt, job_id, expires_at
            )
        else:
            verdict = await self._send_with_claim(job, user_id, attempt, message_id, expires_at)
        if verdict == SendVerdict.ALREADY_SENT:
            return {"sent": False, "reason": "already sent"}
        if verdict == SendVerdict.CANCELED:
            return outcome_value(Outcome.CANCELED, CANCELED_WHILE_RUNNING)
        if verdict == SendVerdict.EXPIRED:
            return outcome_value(Outcome.EXPIRED, f"expired at {expires_at} before it was sent")
        self._maybe_crash()
        return {"sent": True, "transport": self.sender.name, "messageId": message_id}

    async def _deliver_once(
        self,
        sender: AtomicSender,
        email: RenderedEmail,
        user_id: str,
        attempt: int,
        job_id: str,
        expires_at: str,
    ) -> SendVerdict:
        """One script checks, delivers and records (see the module docstring)."""
        k = self.keys
        mark = SentMark(
            k.sent_ledger(job_id),
            sender.name,
            self._ledger_ttl_s,
            k.send_claim(job_id),
            k.cancel_request(job_id),
            _epoch_ms(expires_at),
            partition_of(job_id),
        )
        with tracing.span(self._span_name, attributes=self._span_attributes):
            return await self._while_held(
                job_id, lambda: sender.deliver_once(email, user_id, attempt, mark)
            )

    async def _send_with_claim(
        self, job: RunningJob, user_id: str, attempt: int, message_id: str, expires_at: str
    ) -> SendVerdict:
        """Claim, send, write the ledger, release: for senders that are not atomic."""
        job_id, k = str(job.id), self.keys
        claim = secrets.token_hex(8)
        keys = [k.sent_ledger(job_id), k.send_claim(job_id), k.cancel_request(job_id)]
        args = [claim, self.claim_ms, _epoch_ms(expires_at)]
        # The checks and the claim are one script, so no send can slip between them.
        taken = await self._while_held(
            job_id, lambda: self._take_claim(keys=keys, args=[*args, now_ms()])
        )
        if taken != SendVerdict.GO:
            return taken
        try:
            # PermanentFailure: no retry.
            email = render(str(job.data["type"]), user_id, message_id)
            with tracing.span(self._span_name, attributes=self._span_attributes):
                await self.sender.send(email, user_id, attempt)
            await self.redis.set(keys[0], self.sender.name, ex=self._ledger_ttl_s)
        finally:
            await self._release(keys=[keys[1]], args=[claim])
        return SendVerdict.GO

    async def _while_held(self, job_id: str, attempt: Callable[[], Awaitable[Any]]) -> SendVerdict:
        """`attempt()` until no other worker holds the job's send claim.

        Returns its verdict: GO, or why not: ALREADY_SENT (the other worker sent the
        email meanwhile), CANCELED or EXPIRED. Raises SendInProgress if another worker
        still holds the claim after a lock duration.
        """
        verdict = int(await attempt())
        if verdict != SendVerdict.HELD:
            return SendVerdict(verdict)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.claim_ms / 1000
        while (verdict := int(await attempt())) == SendVerdict.HELD:
            if loop.time() > deadline:
                raise SendInProgress(f"another worker is still sending job {job_id}")
            await asyncio.sleep(CLAIM_POLL_S)
        return SendVerdict(verdict)

    def _maybe_crash(self) -> None:
        rate = self.settings.fault_crash_after_send_rate
        if rate and random.random() < rate:
            log.warning("fault injection: crashing after send, before the acknowledgement")
            os.kill(os.getpid(), signal.SIGKILL)
