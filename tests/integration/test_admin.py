"""Admin API: bearer auth, the dead-letter queue (list, retry, delete) and queue counts."""

from __future__ import annotations

from typing import Any

import pytest

from support.stack import Stack
from support.waiting import wait_for


async def dead_letter(stack: Stack, user: str = "fail-x") -> str:
    reply = await stack.http.post("/notifications", json={"type": "welcome", "userId": user})
    job_id = str(reply.json()["jobId"])
    await wait_for(
        lambda: stack.http.get(f"/jobs/{job_id}"),
        lambda r: r.json()["status"] == "failed",
        timeout_s=15,
        what="dead-lettered",
    )
    return job_id


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/admin/dlq"),
        ("GET", "/admin/queues"),
        ("POST", "/admin/dlq/x/retry"),
        ("DELETE", "/admin/dlq/x"),
    ],
)
async def test_admin_needs_the_bearer_token(stack: Stack, method: str, path: str) -> None:
    missing = await stack.http.request(method, path)
    assert missing.status_code == 401
    assert missing.headers["content-type"] == "application/problem+json"
    wrong = await stack.http.request(method, path, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403
    scheme = await stack.http.request(method, path, headers={"Authorization": "Basic abc"})
    assert scheme.status_code == 401


@pytest.mark.settings(admin_token=None)
async def test_admin_without_a_configured_token_is_403_with_how_to(stack: Stack) -> None:
    reply = await stack.http.get("/admin/dlq", headers={"Authorization": "Bearer anything"})
    assert reply.status_code == 403
    assert "ERRAND_ADMIN_TOKEN" in reply.json()["detail"]


@pytest.mark.settings(notify_retries=0)
async def test_dlq_retry_runs_again_with_fresh_attempts(stack: Stack) -> None:
    job_id = await dead_letter(stack)
    retried = await stack.http.post(f"/admin/dlq/{job_id}/retry", headers=stack.admin)
    assert retried.status_code == 202
    listing = (await stack.http.get("/admin/dlq", headers=stack.admin)).json()
    assert job_id not in [i["jobId"] for i in listing["items"]] or listing["total"] == 1
    again = await wait_for(
        lambda: stack.http.get(f"/jobs/{job_id}"),
        lambda r: r.json()["status"] == "failed",
        timeout_s=15,
    )
    assert again.json()["attemptsMade"] == 1, "attemptsMade counts the new round"
    second = await stack.http.post(f"/admin/dlq/{job_id}/retry", headers=stack.admin)
    assert second.status_code == 202


@pytest.mark.settings(notify_retries=0)
async def test_dlq_delete_and_conflicts(stack: Stack) -> None:
    job_id = await dead_letter(stack)
    assert (await stack.http.delete(f"/admin/dlq/{job_id}", headers=stack.admin)).status_code == 204
    assert (await stack.http.get(f"/jobs/{job_id}")).status_code == 404
    assert (await stack.http.delete(f"/admin/dlq/{job_id}", headers=stack.admin)).status_code == 404
    unknown = "ntf_" + "0" * 32
    missing = await stack.http.post(f"/admin/dlq/{unknown}/retry", headers=stack.admin)
    assert missing.status_code == 404

    ok = await stack.http.post("/notifications", json={"type": "welcome", "userId": "u-ok"})
    ok_id = ok.json()["jobId"]
    await wait_for(
        lambda: stack.http.get(f"/jobs/{ok_id}"), lambda r: r.json()["status"] == "completed"
    )
    conflict = await stack.http.post(f"/admin/dlq/{ok_id}/retry", headers=stack.admin)
    assert conflict.status_code == 409
    assert conflict.json()["jobStatus"] == "completed"
    assert (await stack.http.delete(f"/admin/dlq/{ok_id}", headers=stack.admin)).status_code == 409


@pytest.mark.settings(notify_retries=0)
async def test_dlq_lists_newest_first_with_paging_and_queue_filter(stack: Stack) -> None:
    ids = [await dead_letter(stack, f"fail-{n}") for n in range(3)]
    page = (await stack.http.get("/admin/dlq?limit=2", headers=stack.admin)).json()
    assert page["total"] == 3
    assert [i["jobId"] for i in page["items"]] == [ids[2], ids[1]]
    rest = (await stack.http.get("/admin/dlq?limit=2&offset=2", headers=stack.admin)).json()
    assert [i["jobId"] for i in rest["items"]] == [ids[0]]
    reports = (await stack.http.get("/admin/dlq?queue=reports", headers=stack.admin)).json()
    assert reports == {"total": 0, "items": []}
    bad = await stack.http.get("/admin/dlq?queue=nope", headers=stack.admin)
    assert bad.status_code == 422


@pytest.mark.settings(notify_retries=0)
async def test_queue_counts_and_live_workers(stack: Stack) -> None:
    await dead_letter(stack)

    async def counts() -> dict[str, Any]:
        reply = await stack.http.get("/admin/queues", headers=stack.admin)
        assert reply.status_code == 200
        return reply.json()

    body = await wait_for(counts, lambda b: len(b["workers"]) == 1, what="worker heartbeat")
    by_name = {q["name"]: q for q in body["queues"]}
    assert set(by_name) == {"reports", "notifications", "webhooks"}
    notes = by_name["notifications"]
    assert notes["failed"] == notes["deadLettered"] == 1
    assert notes["workers"] == 1
    for field in ("waiting", "active", "delayed", "completed"):
        assert isinstance(notes[field], int)
    [worker] = body["workers"]
    assert worker["lastSeen"] and "notifications" in worker["queues"]
