"""The reports flow over real HTTP: 202, status transitions, progress, result 200/409/404."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from errand.jobids import partition_of
from support.stack import Stack
from support.waiting import wait_for


async def post_report(stack: Stack, user: Any = "u-42", kind: str = "activity") -> Any:
    reply = await stack.http.post("/reports", json={"userId": user, "reportType": kind})
    assert reply.status_code == 202, reply.text
    return reply


async def job(stack: Stack, job_id: str) -> dict[str, Any]:
    reply = await stack.http.get(f"/jobs/{job_id}")
    assert reply.status_code == 200, reply.text
    return reply.json()


async def test_post_report_answers_202_with_location_and_retry_after(stack: Stack) -> None:
    reply = await post_report(stack)
    body = reply.json()
    assert body["status"] == "waiting"
    assert body["deduplicated"] is False
    assert body["statusUrl"] == f"/jobs/{body['jobId']}"
    assert reply.headers["location"] == body["statusUrl"]
    assert int(reply.headers["retry-after"]) >= 1


async def test_report_runs_to_completion_with_progress_and_result(stack: Stack) -> None:
    job_id = (await post_report(stack, "u-flow")).json()["jobId"]
    seen: list[tuple[str, int]] = []

    async def probe() -> dict[str, Any]:
        view = await job(stack, job_id)
        seen.append((view["status"], view["progress"]))
        return view

    final = await wait_for(probe, lambda v: v["status"] == "completed", what="report completed")
    assert final["progress"] == 100
    assert final["attemptsMade"] == 1
    assert final["resultUrl"] == f"/reports/{job_id}/result"
    assert final["error"] is None
    assert final["queue"] == "reports"
    assert final["createdAt"] <= final["startedAt"] <= final["finishedAt"]
    statuses = [s for s, _ in seen]
    assert statuses.index("completed") == len(statuses) - 1
    assert any(0 < p < 100 for s, p in seen if s == "active"), seen

    result = await stack.http.get(final["resultUrl"])
    assert result.status_code == 200
    report = result.json()
    assert report["userId"] == "u-flow" and report["reportType"] == "activity"
    assert report["rows"] and report["totals"]["events"] == sum(r["events"] for r in report["rows"])


async def test_non_final_status_carries_retry_after(stack: Stack) -> None:
    await stack.stop_workers()  # nothing runs: the job stays waiting
    job_id = (await post_report(stack, "u-wait")).json()["jobId"]
    reply = await stack.http.get(f"/jobs/{job_id}")
    assert reply.json()["status"] == "waiting"
    assert int(reply.headers["retry-after"]) >= 1
    assert reply.json()["resultUrl"] is None


async def test_result_is_409_while_not_completed_and_404_when_unknown(stack: Stack) -> None:
    await stack.stop_workers()
    job_id = (await post_report(stack, "u-409")).json()["jobId"]
    early = await stack.http.get(f"/reports/{job_id}/result")
    assert early.status_code == 409
    assert early.headers["content-type"] == "application/problem+json"
    assert early.json()["jobStatus"] == "waiting"
    unknown = await stack.http.get("/reports/rep_" + "0" * 32 + "/result")
    assert unknown.status_code == 404
    foreign = await stack.http.get("/reports/not-a-job/result")
    assert foreign.status_code == 404


async def test_expired_result_is_404(stack: Stack) -> None:
    job_id = (await post_report(stack, "u-exp")).json()["jobId"]
    await wait_for(lambda: job(stack, job_id), lambda v: v["status"] == "completed")
    assert stack.client is not None
    owner = stack.client.client_id
    await stack.redis.delete(stack.keys.report_result(owner, job_id))  # what the TTL does
    assert (await stack.http.get(f"/reports/{job_id}/result")).status_code == 404


async def test_unknown_job_is_404_problem(stack: Stack) -> None:
    for job_id in ("nope", "rep_" + "f" * 32, "ntf_" + "a" * 32):
        reply = await stack.http.get(f"/jobs/{job_id}")
        assert reply.status_code == 404
        assert reply.json()["status"] == 404


@pytest.mark.settings(report_seconds=1.0)
async def test_same_user_and_type_in_flight_is_deduplicated(stack: Stack) -> None:
    first = (await post_report(stack, "u-dedup")).json()
    second = (await post_report(stack, "u-dedup")).json()
    assert second["jobId"] == first["jobId"]
    assert second["deduplicated"] is True
    assert second["status"] in ("waiting", "active")
    other_type = (await post_report(stack, "u-dedup", "billing")).json()
    assert other_type["jobId"] != first["jobId"]
    same_user_int = (await post_report(stack, 4242)).json()
    same_user_str = (await post_report(stack, "4242")).json()
    assert same_user_str["jobId"] == same_user_int["jobId"], "42 and '42' are the same user"

    await wait_for(
        lambda: job(stack, first["jobId"]),
        lambda v: v["status"] == "completed",
        what="first report done",
    )
    third = (await post_report(stack, "u-dedup")).json()
    assert third["jobId"] != first["jobId"]
    assert third["deduplicated"] is False


async def test_fifty_concurrent_identical_posts_create_one_job(stack: Stack) -> None:
    await stack.stop_workers()
    replies = await asyncio.gather(*(post_report(stack, "u-race") for _ in range(50)))
    ids = {r.json()["jobId"] for r in replies}
    assert len(ids) == 1
    assert sum(not r.json()["deduplicated"] for r in replies) == 1
    (job_id,) = ids
    waiting = await stack.redis.llen(stack.keys.queue("reports", "wait", partition_of(job_id)))
    assert waiting == 1
