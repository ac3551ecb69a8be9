"""Ownership: a job belongs to the client that created it, and every public route answers
another client's job exactly like an unknown one."""

from __future__ import annotations

import re

from errand.keys import QueueName, new_job_id
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
