"""errand.client when the network misbehaves: resumed event streams, retried submits."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from errand.client import AsyncClient, Client, JobStatus, RetryPolicy, TransportError
from support.faulty_proxy import FaultyProxy

FAST_RETRY = RetryPolicy(max_retries=3, backoff_s=0.05)


def user() -> str:
    return f"u-{uuid.uuid4().hex[:12]}"


def last_event_ids(proxy: FaultyProxy, job_id: str) -> list[str | None]:
    """The Last-Event-ID each events request of `job_id` sent (None: none)."""
    found: list[str | None] = []
    for head in proxy.heads_with(f"GET /jobs/{job_id}/events".encode()):
        lines = head.decode().split("\r\n")
        values = [
            line.split(":", 1)[1].strip()
            for line in lines
            if line.lower().startswith("last-event-id:")
        ]
        found.append(values[0] if values else None)
    return found


def test_events_resume_with_last_event_id_after_a_dropped_stream(proxy: FaultyProxy) -> None:
    proxy.cut_stream(b"/events", marker=b"event: status")
    with Client(proxy.url, retry=FAST_RETRY) as errand:
        accepted = errand.submit_report(user(), "activity")
        views = list(errand.events(accepted.job_id))
    assert proxy.fired, "the stream was never cut"
    assert views[-1].status is JobStatus.COMPLETED and views[-1].progress == 100
    assert all(not view.is_final for view in views[:-1]), views
    sent = last_event_ids(proxy, accepted.job_id)
    assert len(sent) >= 2 and sent[0] is None and sent[1], sent  # resumed from the cut


async def test_async_events_end_after_the_final_event(proxy: FaultyProxy) -> None:
    proxy.cut_stream(b"/events", marker=b"event: status")
    async with AsyncClient(proxy.url, retry=FAST_RETRY) as errand:
        accepted = await errand.submit_notification("welcome", user())
        views = [view async for view in errand.events(accepted.job_id)]
        again = [view async for view in errand.events(accepted.job_id)]
    assert proxy.fired and len(last_event_ids(proxy, accepted.job_id)) >= 3
    assert views[-1].status is JobStatus.COMPLETED
    assert [view.status for view in again] == [JobStatus.COMPLETED]  # finished: one event


def dropped_job_id(proxy: FaultyProxy) -> str:
    """The jobId of the response the proxy swallowed (what the server answered first)."""
    assert len(proxy.dropped) == 1, proxy.dropped
    body = proxy.dropped[0].split(b"\r\n\r\n", 1)[1]
    return str(json.loads(body)["jobId"])


def idempotency_keys(proxy: FaultyProxy, pattern: bytes) -> list[str]:
    return [
        line.split(b":", 1)[1].strip().decode()
        for head in proxy.heads_with(pattern)
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"idempotency-key:")
    ]


def test_a_retried_submit_never_makes_a_second_job(proxy: FaultyProxy) -> None:
    proxy.drop_response(b"POST /notifications")
    with Client(proxy.url, retry=FAST_RETRY) as errand:
        accepted = errand.submit_notification("order-confirmed", user())
    keys = idempotency_keys(proxy, b"POST /notifications")
    assert len(keys) == 2 and keys[0] == keys[1] == accepted.idempotency_key, keys
    assert accepted.job_id == dropped_job_id(proxy)  # the retry got the first job back


async def test_async_retried_submit_keeps_the_callers_key(proxy: FaultyProxy) -> None:
    proxy.drop_response(b"POST /reports")
    key = f"order-{uuid.uuid4()}"
    async with AsyncClient(proxy.url, retry=FAST_RETRY) as errand:
        accepted = await errand.submit_report(user(), "activity", idempotency_key=key)
    assert idempotency_keys(proxy, b"POST /reports") == [key, key]
    assert accepted.job_id == dropped_job_id(proxy) and accepted.idempotency_key == key


def test_without_retries_a_dropped_response_is_a_transport_error(proxy: FaultyProxy) -> None:
    proxy.drop_response(b"POST /reports")
    with Client(proxy.url, max_retries=0) as errand, pytest.raises(TransportError):
        errand.submit_report(user(), "activity")
    assert len(proxy.heads_with(b"POST /reports")) == 1


def test_a_non_idempotent_call_is_not_retried(proxy: FaultyProxy, errand_server: Any) -> None:
    proxy.drop_response(b"/cancel")
    with Client(proxy.url, retry=FAST_RETRY) as errand, pytest.raises(TransportError):
        errand.cancel("any-job")
    assert len(proxy.heads_with(b"/cancel")) == 1
