"""errand.client against a real `errand up`: submits, long-poll waits, results, errors."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest

from errand.client import (
    AsyncClient,
    Client,
    Conflict,
    JobStatus,
    NotFound,
    ValidationFailed,
    WaitTimeout,
)
from support.faulty_proxy import FaultyProxy

API_KEY = "ek_test_do-not-leak-0123456789"


def user() -> str:
    return f"u-{uuid.uuid4().hex[:12]}"


def test_submit_report_then_wait_is_one_long_poll(proxy: FaultyProxy) -> None:
    recipient = user()
    with Client(proxy.url, api_key=API_KEY) as errand:
        accepted = errand.submit_report(recipient, "activity")
        assert accepted.status in {JobStatus.WAITING, JobStatus.ACTIVE}
        assert accepted.idempotency_key and accepted.status_url == f"/jobs/{accepted.job_id}"
        final = errand.wait(accepted.job_id, timeout_s=30)
        report = errand.report_result(accepted.job_id)
    assert final.status is JobStatus.COMPLETED and final.is_final
    assert final.progress == 100 and final.result_url == f"/reports/{accepted.job_id}/result"
    assert report["userId"] == recipient
    polls = proxy.heads_with(f"GET /jobs/{accepted.job_id}?wait=".encode())
    assert 1 <= len(polls) <= 2, polls  # a ~1 s job: one held request, not a poll loop
    assert all(f"Bearer {API_KEY}".encode() in head for head in proxy.heads)


async def test_async_submit_notification_wait_and_get(errand_server: Any) -> None:
    recipient = user()
    async with AsyncClient(errand_server.base_url) as errand:
        accepted = await errand.submit_notification("password-reset", recipient)
        final = await errand.wait(accepted.job_id, timeout_s=30)
        notification = await errand.get_notification(accepted.job_id)
        job = await errand.get(accepted.job_id)
    assert final.status is JobStatus.COMPLETED and final.queue == "notifications"
    assert notification.type == "password-reset" and notification.user_id == recipient
    assert notification.priority == 1 and notification.webhook is None
    assert job.job_id == accepted.job_id and job.finished_at is not None


async def test_wait_timeout_carries_the_last_view(errand_server: Any) -> None:
    async with AsyncClient(errand_server.base_url) as errand:
        accepted = await errand.submit_report(user(), "activity")
        with pytest.raises(WaitTimeout) as caught:
            await errand.wait(accepted.job_id, timeout_s=0.2)
        assert not caught.value.last.is_final and caught.value.last.job_id == accepted.job_id
        with pytest.raises(Conflict) as unfinished:
            await errand.report_result(accepted.job_id)
        assert unfinished.value.job_status in {"waiting", "active"}
        await errand.wait(accepted.job_id, timeout_s=30)


def test_errors_carry_the_problem_document_and_never_the_key(errand_server: Any) -> None:
    with Client(errand_server.base_url, api_key=API_KEY) as errand:
        with pytest.raises(ValidationFailed) as invalid:
            errand.submit_report(user(), "not a type!")
        with pytest.raises(NotFound) as unknown:
            errand.get("no-such-job")
        with pytest.raises(ValueError, match="timezone-aware"):
            errand.submit_notification("welcome", user(), send_at=datetime.now() + timedelta(1))
        assert API_KEY not in repr(errand)
    assert invalid.value.status == 422 and invalid.value.problem.status == 422
    assert [e.field for e in invalid.value.errors] == ["reportType"], invalid.value.errors
    assert unknown.value.problem.status == 404 and unknown.value.problem.title
    for error in (invalid.value, unknown.value):
        assert API_KEY not in str(error) and API_KEY not in repr(error.problem)
