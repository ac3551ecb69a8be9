"""Ownership: a job belongs to the client that created it, and every public route answers
another client's job exactly like an unknown one."""

from __future__ import annotations

import re

from errand.jobids import QueueName, new_job_id
from errand.queue.producers import enqueue_notification, enqueue_report
from support.stack import Stack
from support.waiting import wait_for

OTHER = "someone-else"


def _without_id(body: dict[str, object], job_id: str) -> dict[str, object]:
    """A problem document with the job id masked, so two 404s can be compared."""
    return {
        k: re.sub(re.escape(job_id), "<id>", v) if isinstance(v, str) else v
        for k, v in body.items()
    }


async def _same_as_unknown(stack: Stack, path: str, foreign: str, unknown: str) -> None:
    theirs = await stack.http.get(path.format(foreign))
    nobody = await stack.http.get(path.format(unknown))
    assert theirs.status_code == nobody.status_code == 404, path
    assert _without_id(theirs.json(), foreign) == _without_id(nobody.json(), unknown), path


async def test_another_clients_jobs_are_unknown_on_every_route(stack: Stack) -> None:
    report = await enqueue_report(stack.app.state.services.queues, OTHER, "u-1", "activity", None)
    note = await enqueue_notification(
        stack.app.state.services.queues, OTHER, "welcome", "u-1", None
    )
    await wait_for(
        lambda: stack.redis.exists(stack.keys.report_result(OTHER, report.job_id)),
        what="the other client's report finished",
    )
    for queue, foreign, paths in (
        (
            QueueName.REPORTS,
            report.job_id,
            ["/jobs/{}", "/jobs/{}?wait=1", "/jobs/{}/events", "/reports/{}/result"],
        ),
        (
            QueueName.NOTIFICATIONS,
            note.job_id,
            [
                "/jobs/{}",
                "/notifications/{}",
                "/notifications/{}?wait=1",
                "/notifications/{}/events",
            ],
        ),
    ):
        unknown = new_job_id(queue)
        for path in paths:
            await _same_as_unknown(stack, path, foreign, unknown)


async def test_report_dedup_is_per_client(stack: Stack) -> None:
    queues = stack.app.state.services.queues
    mine = await stack.http.post("/reports", json={"userId": "u-7", "reportType": "activity"})
    theirs = await enqueue_report(queues, OTHER, "u-7", "activity", None)
    again = await stack.http.post("/reports", json={"userId": "u-7", "reportType": "activity"})
    assert theirs.job_id != mine.json()["jobId"] and not theirs.deduplicated
    assert again.json()["jobId"] == mine.json()["jobId"] and again.json()["deduplicated"]
    assert (await stack.http.get(f"/jobs/{mine.json()['jobId']}")).status_code == 200


async def test_two_clients_cannot_see_each_others_jobs_on_any_route(stack: Stack) -> None:
    one, two = await stack.new_client("one"), await stack.new_client("two")
    report = await stack.http.post(
        "/reports", json={"userId": "u-2c", "reportType": "activity"}, headers=one.headers
    )
    note = await stack.http.post(
        "/notifications", json={"type": "welcome", "userId": "u-2c"}, headers=one.headers
    )
    report_id, note_id = report.json()["jobId"], note.json()["jobId"]
    finished = await stack.http.get(f"/jobs/{report_id}?wait=30", headers=one.headers)
    assert finished.json()["status"] == "completed"
    assert (await stack.http.get(f"/reports/{report_id}/result", headers=one.headers)).is_success
    unknown_report, unknown_note = (
        new_job_id(QueueName.REPORTS),
        new_job_id(QueueName.NOTIFICATIONS),
    )
    for foreign, unknown, paths in (
        (
            report_id,
            unknown_report,
            ["/jobs/{}", "/jobs/{}?wait=1", "/jobs/{}/events", "/reports/{}/result"],
        ),
        (
            note_id,
            unknown_note,
            [
                "/jobs/{}",
                "/jobs/{}?wait=1",
                "/jobs/{}/events",
                "/notifications/{}",
                "/notifications/{}?wait=1",
                "/notifications/{}/events",
            ],
        ),
    ):
        for path in paths:
            theirs = await stack.http.get(path.format(foreign), headers=two.headers)
            nobody = await stack.http.get(path.format(unknown), headers=two.headers)
            assert theirs.status_code == nobody.status_code == 404, path
            assert _without_id(theirs.json(), foreign) == _without_id(nobody.json(), unknown)
            mine = await stack.http.get(path.format(foreign), headers=one.headers)
            assert mine.status_code == 200, path


async def test_two_clients_posting_the_same_report_get_two_jobs(stack: Stack) -> None:
    await stack.stop_workers()  # both stay in flight
    one, two = await stack.new_client("one"), await stack.new_client("two")
    body = {"userId": "u-same", "reportType": "activity"}
    first = (await stack.http.post("/reports", json=body, headers=one.headers)).json()
    second = (await stack.http.post("/reports", json=body, headers=two.headers)).json()
    again = (await stack.http.post("/reports", json=body, headers=two.headers)).json()
    assert first["jobId"] != second["jobId"]
    assert not first["deduplicated"] and not second["deduplicated"]
    assert again["jobId"] == second["jobId"] and again["deduplicated"]


async def test_two_clients_idempotency_keys_do_not_collide(stack: Stack) -> None:
    one, two = await stack.new_client("one"), await stack.new_client("two")
    body = {"type": "welcome", "userId": "u-idem"}
    replies = []
    for client, payload in ((one, body), (two, body), (two, {**body, "userId": "other"})):
        headers = {**client.headers, "Idempotency-Key": "order-1"}
        replies.append(await stack.http.post("/notifications", json=payload, headers=headers))
    first, second, mismatch = replies
    assert first.status_code == second.status_code == 202
    assert first.json()["jobId"] != second.json()["jobId"]  # not a replay of the other's
    assert mismatch.status_code == 422  # the key is taken, but in client two's own scope
    replay = await stack.http.post(
        "/notifications", json=body, headers={**one.headers, "Idempotency-Key": "order-1"}
    )
    assert replay.json()["jobId"] == first.json()["jobId"]
