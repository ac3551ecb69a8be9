"""A real SMTP server (aiosmtpd) in the test's event loop that keeps what it receives.

Rules decide per recipient what the server answers, so tests can script rejections:
a 5xx at RCPT, a 4xx at DATA for the first N attempts, and so on.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from errand.server.embedded import free_port


@dataclass
class Rule:
    """How the server answers mail to recipients starting with `prefix`."""

    prefix: str
    stage: str  # "rcpt" or "data"
    reply: str  # e.g. "550 5.1.1 mailbox unavailable"
    times: int | None = None  # None: always; n: only the first n attempts
    seen: int = 0


@dataclass
class SmtpSink:
    host: str = "127.0.0.1"
    port: int = 0
    messages: list[Message] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"

    def reject(
        self, prefix: str, reply: str, stage: str = "rcpt", times: int | None = None
    ) -> None:
        self.rules.append(Rule(prefix, stage, reply, times))

    def by_message_id(self) -> Counter[str]:
        return Counter(str(m["Message-ID"]) for m in self.messages)

    def _answer(self, stage: str, address: str) -> str | None:
        for rule in self.rules:
            if rule.stage == stage and address.startswith(rule.prefix):
                if rule.times is not None and rule.seen >= rule.times:
                    continue
                rule.seen += 1
                self.rejected.append(f"{stage} {address}: {rule.reply}")
                return rule.reply
        return None

    # --- aiosmtpd handler hooks ------------------------------------------------------
    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        answer = self._answer("rcpt", address)
        if answer is not None:
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        for address in envelope.rcpt_tos:
            answer = self._answer("data", address)
            if answer is not None:
                return answer
        raw = envelope.original_content or b""
        self.messages.append(email.message_from_bytes(raw))
        return "250 Message accepted for delivery"


@contextlib.asynccontextmanager
async def smtp_sink() -> AsyncIterator[SmtpSink]:
    """An SmtpSink listening on a free loopback port for the duration of the block."""
    sink = SmtpSink(port=free_port())
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(sink, hostname="sink.test", loop=loop), sink.host, sink.port
    )
    try:
        yield sink
    finally:
        server.close()
        await server.wait_closed()
