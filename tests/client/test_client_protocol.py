"""The client's pure parts: the retry table, Retry-After, the SSE parser, request bodies."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest

from errand.client import NotificationRequest, RetryPolicy
from errand.client._protocol import Request, SseParser, retry_after_s

GET = Request("GET", "/jobs/x")
CANCEL = Request("POST", "/jobs/x/cancel", retryable=False)


def answer(status: int, **headers: str) -> httpx.Response:
    return httpx.Response(status, headers=headers)


@pytest.mark.parametrize(
    ("request_", "outcome", "attempt", "expected"),
    [
        (GET, httpx.ConnectError("refused"), 0, 0.5),
        (GET, httpx.ConnectError("refused"), 2, 2.0),
        (GET, answer(503, **{"Retry-After": "3"}), 0, 3.0),
        (GET, answer(429), 1, 1.0),
        (GET, answer(500), 0, None),
        (GET, answer(409), 0, None),
        (GET, httpx.ConnectError("refused"), 3, None),  # max_retries reached
        (CANCEL, httpx.ConnectError("refused"), 0, None),  # never retried
        (GET, answer(503, **{"Retry-After": "120"}), 0, None),  # past max_total_s
    ],
)
def test_retry_policy(
    request_: Request,
    outcome: httpx.Response | httpx.TransportError,
    attempt: int,
    expected: float | None,
) -> None:
    assert RetryPolicy().delay_s(request_, outcome, attempt, elapsed_s=0.0) == expected


def test_max_retries_zero_never_retries() -> None:
    assert RetryPolicy(max_retries=0).delay_s(GET, answer(503), 0, 0.0) is None


def test_retry_after_reads_seconds_and_http_dates() -> None:
    soon = datetime.now(UTC) + timedelta(seconds=30)
    date = soon.strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert 28 <= (retry_after_s(answer(429, **{"Retry-After": date})) or 0) <= 31
    assert retry_after_s(answer(429, **{"Retry-After": "nonsense"})) is None
    assert retry_after_s(answer(429)) is None


def test_sse_parser_events_comments_and_ids() -> None:
    parser = SseParser()
    lines = [
        ": heartbeat",
        "",
        "id: 1-0",
        "event: status",
        'data: {"a":',
        "data: 1}",
        "",
        "id: 2-0",
        "event: status",
    ]
    events = [event for line in lines if (event := parser.feed(line)) is not None]
    got = [(e.event, "\n".join(e.data), e.id) for e in events]
    assert got == [("status", '{"a":\n1}', "1-0")]
    assert parser.last_event_id == "1-0"  # the unfinished event's id does not count


def test_notification_body_is_rfc3339_with_offset_and_refuses_naive_times() -> None:
    paris = timezone(timedelta(hours=1))
    body = NotificationRequest("welcome", 42, send_at=datetime(2026, 12, 1, 8, tzinfo=paris)).body()
    assert body == {"type": "welcome", "userId": 42, "sendAt": "2026-12-01T08:00:00+01:00"}
    with pytest.raises(ValueError, match="expires_at"):
        NotificationRequest("welcome", "u", expires_at=datetime(2026, 12, 1)).body()


def test_the_client_imports_nothing_of_the_server_side() -> None:
    code = (
        "import sys, errand.client, errand.webhooks; "
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'errand', 'fastapi', 'bullmq', 'redis', 'uvicorn', 'orjson', 'starlette'})))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    allowed = {"errand", "errand.statuses", "errand.webhooks", "errand.webhooks.verify"}
    assert [m for m in loaded if m not in allowed and not m.startswith("errand.client")] == []
