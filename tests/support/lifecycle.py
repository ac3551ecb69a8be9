"""Helpers for the job-lifecycle tests: RFC 3339 times, posting, reading and the outbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson

from errand.clock import now_ms
from support.stack import Stack
from support.waiting import wait_for

FINAL = ("completed", "failed", "canceled", "expired")
PARIS = timezone(timedelta(hours=1))


def rfc3339(epoch_ms: int, tz: timezone = PARIS) -> str:
    """`epoch_ms` as RFC 3339 with an offset (+01:00 by default), millisecond precision."""
    return datetime.fromtimestamp(epoch_ms / 1000, tz).isoformat(timespec="milliseconds")


def iso_utc(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def epoch_ms(iso: str) -> int:
    return round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def in_ms(delta_ms: int) -> int:
    return now_ms() + delta_ms


async def post_notification(stack: Stack, user: str, **extra: Any) -> dict[str, Any]:
    reply = await stack.http.post(
        "/notifications", json={"type": "welcome", "userId": user, **extra}
    )
    assert reply.status_code == 202, reply.text
    body: dict[str, Any] = reply.json()
    return body


async def view(stack: Stack, path: str) -> dict[str, Any]:
    reply = await stack.http.get(path)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


async def final_view(stack: Stack, path: str, timeout_s: float = 15) -> dict[str, Any]:
    return await wait_for(
        lambda: view(stack, path), lambda v: v["status"] in FINAL, timeout_s, what=f"{path} final"
    )


async def outbox(stack: Stack) -> list[dict[str, Any]]:
    return [orjson.loads(m) for m in await stack.outbox_raw()]


async def sent_ids(stack: Stack) -> list[str]:
    """Job ids of the emails in the simulated outbox (from their Message-ID)."""
    return [m["messageId"].strip("<>").split("@")[0] for m in await outbox(stack)]
