"""The SMTP transport against a real SMTP server (aiosmtpd): content, 5xx and 4xx handling.

Failure policy (a deliberate choice): a 5xx reply is permanent. The processor raises
BullMQ's UnrecoverableError, so the job skips its remaining attempts and is dead-lettered
after the first one: retrying a "mailbox unavailable" only delays the same answer and
hammers the relay. A 4xx reply, a refused connection or a timeout is transient and is
retried with exponential backoff until ERRAND_NOTIFY_RETRIES runs out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from errand.server.embedded import free_port
from support.smtp_sink import SmtpSink, smtp_sink
from support.stack import Stack, run_stack
from support.waiting import wait_for

SMTP_FROM = "errand <no-reply@mail.errand.test>"


@dataclass
class SmtpStack:
    stack: Stack
    sink: SmtpSink


@pytest.fixture
async def smtp(make_settings: Any) -> AsyncIterator[SmtpStack]:
    async with smtp_sink() as sink:
        settings = make_settings(
            email_transport="smtp",
            smtp_url=sink.url,
            smtp_from=SMTP_FROM,
            notify_retries=2,
            notify_backoff_ms=50,
            smtp_timeout_s=5,
        )
        async with run_stack(settings) as stack:
            yield SmtpStack(stack, sink)


async def notify(stack: Stack, user: str, kind: str = "welcome") -> str:
    reply = await stack.http.post("/notifications", json={"type": kind, "userId": user})
    assert reply.status_code == 202, reply.text
    return str(reply.json()["jobId"])


async def final_view(stack: Stack, job_id: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any]:
        return dict((await stack.http.get(f"/notifications/{job_id}")).json())

    return await wait_for(
        probe,
        lambda v: v["status"] in ("completed", "failed"),
        timeout_s=20,
        what=f"{job_id} finished",
    )


def parts(message: Any) -> dict[str, str]:
    return {
        part.get_content_type(): part.get_payload(decode=True).decode()
        for part in message.walk()
        if not part.is_multipart()
    }


async def test_message_carries_user_addresses_and_a_job_derived_message_id(smtp: SmtpStack) -> None:
    job_id = await notify(smtp.stack, "u-smtp-7", "welcome")
    view = await final_view(smtp.stack, job_id)
    assert view["status"] == "completed" and view["attemptsMade"] == 1
    [message] = smtp.sink.messages
    assert message["Message-ID"] == f"<{job_id}@mail.errand.test>"
    assert message["From"] == SMTP_FROM
    assert message["To"] == "u-smtp-7@users.errand.local"
    assert "u-smtp-7" in message["Subject"]
    assert message["Date"]
    body = parts(message)
    assert set(body) == {"text/plain", "text/html"}
    assert "u-smtp-7" in body["text/plain"] and "u-smtp-7" in body["text/html"]
    assert body["text/html"].lstrip().lower().startswith("<!doctype html>")


async def test_password_reset_template_reaches_the_server(smtp: SmtpStack) -> None:
    job_id = await notify(smtp.stack, "u-reset", "password-reset")
    assert (await final_view(smtp.stack, job_id))["status"] == "completed"
    [message] = smtp.sink.messages
    assert message["Subject"] == "Reset your password"
    assert "u-reset" in parts(message)["text/plain"]


@pytest.mark.parametrize(
    ("stage", "reply"),
    [("rcpt", "550 5.1.1 mailbox unavailable"), ("data", "554 5.7.1 message rejected")],
)
async def test_a_5xx_fails_at_once_without_retries_and_is_dead_lettered(
    smtp: SmtpStack, stage: str, reply: str
) -> None:
    smtp.sink.reject("u-gone", reply, stage=stage)
    job_id = await notify(smtp.stack, "u-gone")
    view = await final_view(smtp.stack, job_id)
    assert view["status"] == "failed"
    assert view["deadLettered"] is True
    assert view["attemptsMade"] == 1, "a permanent failure must not be retried"
    assert view["error"].startswith("smtp: 5")
    assert smtp.sink.messages == []
    assert len(smtp.sink.rejected) == 1
    dlq = (await smtp.stack.http.get("/admin/dlq", headers=smtp.stack.admin)).json()
    assert [item["jobId"] for item in dlq["items"]] == [job_id]


async def test_a_4xx_is_retried_and_then_delivered_once(smtp: SmtpStack) -> None:
    smtp.sink.reject("u-busy", "451 4.3.0 try again later", stage="data", times=2)
    job_id = await notify(smtp.stack, "u-busy")
    view = await final_view(smtp.stack, job_id)
    assert view["status"] == "completed"
    assert view["attemptsMade"] == 3
    assert smtp.sink.by_message_id() == {f"<{job_id}@mail.errand.test>": 1}


async def test_a_4xx_that_never_clears_exhausts_the_retries(smtp: SmtpStack) -> None:
    smtp.sink.reject("u-full", "452 4.2.2 mailbox full", stage="rcpt")
    job_id = await notify(smtp.stack, "u-full")
    view = await final_view(smtp.stack, job_id)
    assert view["status"] == "failed" and view["deadLettered"] is True
    assert view["attemptsMade"] == 3  # ERRAND_NOTIFY_RETRIES=2 -> 3 attempts
    assert "452" in view["error"]
    assert len(smtp.sink.rejected) == 3


async def test_an_unreachable_server_is_a_transient_failure(make_settings: Any) -> None:
    settings = make_settings(
        email_transport="smtp",
        smtp_url=f"smtp://127.0.0.1:{free_port()}",
        notify_retries=1,
        notify_backoff_ms=50,
        smtp_timeout_s=2,
    )
    async with run_stack(settings) as stack:
        job_id = await notify(stack, "u-nowhere")
        view = await final_view(stack, job_id)
    assert view["status"] == "failed" and view["attemptsMade"] == 2
    assert view["error"] == "smtp: could not connect to the mail server"  # not where it is


async def test_a_reply_naming_the_server_is_public_without_its_address(smtp: SmtpStack) -> None:
    where = smtp.sink.url.rsplit("@", 1)[-1].removeprefix("smtp://").rstrip("/")
    smtp.sink.reject("u-where", f"550 5.7.1 relay {where} (10.1.2.3) refuses you", stage="rcpt")
    job_id = await notify(smtp.stack, "u-where")
    view = await final_view(smtp.stack, job_id)
    assert view["status"] == "failed" and view["error"].startswith("smtp: 550")
    assert where not in view["error"] and "10.1.2.3" not in view["error"], view["error"]
