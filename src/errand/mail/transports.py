"""Email transports: `simulated` (an outbox in Redis, with deterministic faults) and `smtp`."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from enum import IntEnum
from functools import cache
from typing import Any, Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit

import aiosmtplib
import orjson

from errand.clock import iso_ms, now_ms
from errand.errors import PermanentFailure, without_addresses
from errand.keys import Keys
from errand.mail.templates import RenderedEmail
from errand.redisio.connection import ready_for_multi
from errand.settings import EmailTransport, Settings

OUTBOX_CAP = 10_000
FLAKY_FAILURES = 2


class TransientFailure(Exception):
    """A send that may work if tried again."""


class EmailSender(Protocol):
    name: str

    async def send(self, email: RenderedEmail, user_id: str, attempt: int) -> None:
        """Deliver one email. Raises TransientFailure or PermanentFailure."""


class SendVerdict(IntEnum):
    """Whether a job's email may go out now: the send claim's and the atomic delivery's
    replies (one numbering for both Lua scripts)."""

    HELD = -1  # another worker holds the job's send claim: wait for its outcome
    ALREADY_SENT = 0  # the sent ledger has the job
    GO = 1  # claimed (a claim-based sender) or delivered (the atomic delivery)
    CANCELED = 2  # the job's cancel flag is set
    EXPIRED = 3  # now is past the job's expiresAt
    FAULT = 4  # the simulated transport's injected failure: nothing was delivered


@dataclass(frozen=True, slots=True)
class SentMark:
    """What an atomic delivery checks and writes for one job: the sent ledger entry, and
    the keys that say it must not send (another worker's claim, the cancel flag)."""

    key: str
    value: str
    ttl_s: int
    claim_key: str
    cancel_key: str
    expires_ms: int = 0  # the job's expiresAt (epoch ms); 0: never
    partition: int = 0  # the job's: the simulated outbox it goes to shares its slot


@runtime_checkable
class AtomicSender(Protocol):
    """A sender whose delivery and sent-ledger write are one atomic step (the simulated
    outbox): it needs no send claim, since a second delivery of the job finds the ledger."""

    name: str

    async def deliver_once(
        self, email: RenderedEmail, user_id: str, attempt: int, mark: SentMark
    ) -> SendVerdict:
        """Deliver unless the ledger, a claim, the cancel flag or expiresAt forbid it.
        Raises TransientFailure for an injected fault."""


# The simulated delivery is a Redis write, so it is one atomic step with every check and
# with the sent ledger: no crash can fall between the send and the ledger, a job already
# marked sent is not delivered again (not even by a worker whose lock expired while it
# still ran), and no email leaves after a cancel or after expiresAt.
# KEYS: outbox, ledger, send claim, cancel flag.
# ARGV: record, outbox cap, ledger value, ledger ttl, expiresAt ms (0: never), now ms,
#       fault ('' for none). Replies as SendVerdict. The usual case (none of the three
#       keys exists) costs one EXISTS.
_DELIVER_ONCE = """
if redis.call('EXISTS', KEYS[2], KEYS[3], KEYS[4]) > 0 then
  if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
  if redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
  return 2
end
if ARGV[5] ~= '0' and tonumber(ARGV[6]) >= tonumber(ARGV[5]) then return 3 end
if ARGV[7] ~= '' then return 4 end
if redis.call('LPUSH', KEYS[1], ARGV[1]) > tonumber(ARGV[2]) then
  redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)
end
redis.call('SET', KEYS[2], ARGV[3], 'EX', tonumber(ARGV[4]))
return 1
"""


def message_id_for(job_id: str, sender: str) -> str:
    """A Message-ID derived from the job id, so a receiver can drop a redelivered duplicate.

    A schedule's run is named `repeat:<scheduleId>:<ms>` by BullMQ; a colon may not stand
    in a Message-ID's left part (RFC 5322 dot-atom), so it becomes a dot (ids hold none)."""
    return f"<{job_id.replace(':', '.')}@{_domain_of(sender)}>"


@cache
def _domain_of(sender: str) -> str:
    """The sender's mail domain (parsing the address costs more than sending, simulated)."""
    return parseaddr(sender)[1].partition("@")[2] or "errand.local"


class SimulatedSender:
    """Waits ERRAND_EMAIL_SEND_MS and keeps the message in a capped outbox list in Redis.

    `fail-*` users fail every attempt; `flaky-*` users fail their first two attempts.
    """

    name = "simulated"

    def __init__(self, settings: Settings, redis: Any) -> None:
        self.delay_s = settings.email_send_ms / 1000
        self.redis = redis
        self.keys = Keys(settings.queue_prefix, settings.partitions)
        self.outbox_cap = OUTBOX_CAP
        self._deliver_once = redis.register_script(_DELIVER_ONCE)  # EVALSHA per email

    async def send(self, email: RenderedEmail, user_id: str, attempt: int) -> None:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        fault = _fault(user_id, attempt)
        if fault:
            raise TransientFailure(fault)
        await ready_for_multi(self.redis)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.lpush(self.keys.outbox(), _record(email))
            pipe.ltrim(self.keys.outbox(), 0, self.outbox_cap - 1)
            await pipe.execute()

    async def deliver_once(
        self, email: RenderedEmail, user_id: str, attempt: int, mark: SentMark
    ) -> SendVerdict:
        """`send` and the sent ledger in one script, after its checks (AtomicSender)."""
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        fault = _fault(user_id, attempt)
        verdict = await self._deliver_once(
            keys=[self.keys.outbox(mark.partition), mark.key, mark.claim_key, mark.cancel_key],
            args=[
                _record(email),
                self.outbox_cap,
                mark.value,
                mark.ttl_s,
                mark.expires_ms,
                now_ms(),
                fault,
            ],
        )
        if verdict == SendVerdict.FAULT:
            raise TransientFailure(fault)
        return SendVerdict(verdict)


def _fault(user_id: str, attempt: int) -> str:
    """The simulated transport's failure for this attempt, or "" when it delivers."""
    if user_id.startswith("fail-"):
        return "simulated: 554 mailbox unavailable"
    if user_id.startswith("flaky-") and attempt <= FLAKY_FAILURES:
        return f"simulated: 451 try again later (attempt {attempt})"
    return ""


def _record(email: RenderedEmail) -> bytes:
    """The outbox entry of one delivered email."""
    return orjson.dumps(
        {
            "messageId": email.message_id,
            "to": email.to,
            "subject": email.subject,
            "text": email.text,
            "html": email.html,
            "sentAt": iso_ms(now_ms()),
        }
    )


class SmtpSender:
    """Real delivery through ERRAND_SMTP_URL (`smtp://user:pass@host:port`, `smtps://` for TLS)."""

    name = "smtp"

    def __init__(self, settings: Settings) -> None:
        if settings.smtp_url is None:
            raise ValueError("ERRAND_EMAIL_TRANSPORT=smtp needs ERRAND_SMTP_URL")
        url = urlsplit(settings.smtp_url.get_secret_value())
        if url.scheme not in ("smtp", "smtps"):
            raise ValueError("ERRAND_SMTP_URL must start with smtp:// or smtps://")
        self.tls = url.scheme == "smtps"
        self.host = url.hostname or "localhost"
        self.port = url.port or (465 if self.tls else 25)
        self.username = unquote(url.username) if url.username else None
        self.password = unquote(url.password) if url.password else None
        self.sender = settings.smtp_from
        self.timeout_s = settings.smtp_timeout_s

    def _message(self, email: RenderedEmail) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.sender
        msg["To"] = email.to
        msg["Subject"] = email.subject
        msg["Message-ID"] = email.message_id
        msg["Date"] = formatdate(usegmt=True)
        msg.set_content(email.text)
        msg.add_alternative(email.html, subtype="html")
        return msg

    async def send(self, email: RenderedEmail, user_id: str, attempt: int) -> None:
        try:
            await aiosmtplib.send(
                self._message(email),
                hostname=self.host,
                port=self.port,
                username=self.username,
                password=self.password,
                use_tls=self.tls,
                timeout=self.timeout_s,
            )
        except aiosmtplib.SMTPRecipientsRefused as err:
            codes = [r.code for r in err.recipients]
            reason = "; ".join(f"{r.code} {r.message}" for r in err.recipients)
            if codes and all(500 <= c < 600 for c in codes):
                raise PermanentFailure(self._public(reason)) from err
            raise TransientFailure(self._public(reason)) from err
        except aiosmtplib.SMTPResponseException as err:
            reason = self._public(f"{err.code} {err.message}")
            if 500 <= err.code < 600:
                raise PermanentFailure(reason) from err
            raise TransientFailure(reason) from err
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as err:
            raise TransientFailure(f"smtp: {_what_failed(err)}") from err

    def _public(self, reply: str) -> str:
        """The server's reply as a job's public `error`: without the server's name or address."""
        return "smtp: " + without_addresses(reply.replace(self.host, "<mail server>"))


def _what_failed(err: Exception) -> str:
    """A failure to talk to the mail server, said without its host or port (the exception
    messages name both; the worker's log keeps them)."""
    if isinstance(err, TimeoutError):  # aiosmtplib's timeouts are TimeoutErrors too
        return "the mail server did not answer in time"
    if isinstance(err, aiosmtplib.SMTPServerDisconnected):
        return "the mail server closed the connection"
    if isinstance(err, aiosmtplib.SMTPConnectError | ConnectionError):
        return "could not connect to the mail server"
    if isinstance(err, ssl.SSLError):
        return "TLS with the mail server failed"
    if isinstance(err, OSError):
        return "could not reach the mail server"
    return f"{type(err).__name__} talking to the mail server"


def build_sender(settings: Settings, redis: Any) -> EmailSender:
    if settings.email_transport is EmailTransport.SMTP:
        return SmtpSender(settings)
    return SimulatedSender(settings, redis)
