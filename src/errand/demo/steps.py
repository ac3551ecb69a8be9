"""The steps of `errand demo`: each drives the API like a user would and checks the contract."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from errand.demo.harness import Demo, expect

# --- the steps --------------------------------------------------------------------------------


async def step_report(demo: Demo) -> str:
    accepted = await demo.post(
        "/reports", {"userId": f"demo-ada-{demo.run_id}", "reportType": "activity"}
    )
    job_id = accepted["jobId"]
    demo.timeline.say(f"POST /reports → 202, job {job_id}; long-polling GET /jobs/{{id}}?wait=10")
    view = await demo.get(f"/jobs/{job_id}", wait=10)
    while view["status"] not in ("completed", "failed"):
        demo.timeline.say(f"  still {view['status']} ({view['progress']}%), asking again")
        view = await demo.get(f"/jobs/{job_id}", wait=10)
    expect(view["status"] == "completed", f"the report ended {view['status']}: {view['error']}")
    report = await demo.get(view["resultUrl"])
    totals = report["totals"]
    demo.timeline.say(
        f"  completed in {view['attemptsMade']} attempt; result: "
        f"{len(report['rows'])} weekly rows, {totals['events']} events, "
        f"{totals['sessions']} sessions"
    )
    return "completed; result fetched"


async def step_signed_webhook(demo: Demo) -> str:
    path = "/hooks/orders"
    accepted = await demo.post(
        "/notifications",
        {
            "type": "order-confirmed",
            "userId": f"demo-grace-{demo.run_id}",
            "webhookUrl": demo.receiver.base_url + path,
        },
    )
    job_id = accepted["jobId"]
    demo.timeline.say(f"POST /notifications with a webhookUrl → job {job_id}")
    [delivery] = await demo.deliveries(path, 1)
    assert delivery.event is not None
    event, data = delivery.event, delivery.event["data"]
    expect(event["type"] == "notification.sent", f"got a {event['type']} event")
    expect(data["jobId"] == job_id and data["status"] == "completed", f"unexpected data: {data}")
    demo.timeline.say(
        f"  event {event['type']}: job {data['status']} after "
        f"{data['attemptsMade']} attempt, verified with standardwebhooks"
    )
    view = await _webhook_delivered(demo, job_id)
    demo.timeline.say(
        f"  GET /notifications/{{id}} → webhook {view['webhook']['status']}, "
        f"HTTP {view['webhook']['lastStatusCode']}"
    )
    return "notification.sent delivered and verified"


async def _webhook_delivered(demo: Demo, job_id: str) -> dict[str, Any]:
    return await demo.follow(
        job_id, lambda v: (v["webhook"] or {}).get("status") == "delivered", narrate=False
    )


async def step_priority(demo: Demo) -> str:
    # One user: a user's mails share a partition, and priority holds within a partition.
    count = 8 if demo.target.owned else 60  # enough to queue up behind the workers
    user = f"demo-user-{demo.run_id}"
    welcomes = [
        await demo.post("/notifications", {"type": "welcome", "userId": user}) for _ in range(count)
    ]
    reset = await demo.post("/notifications", {"type": "password-reset", "userId": user})
    demo.timeline.say(f"queued {count} welcomes (priority 5), then one password-reset (priority 1)")
    done = await asyncio.gather(
        *(
            demo.follow(job["jobId"], lambda v: v["status"] == "completed", narrate=False)
            for job in [*welcomes, reset]
        )
    )
    order = sorted(done, key=lambda v: (v["startedAt"], v["jobId"]))
    labels = {w["jobId"]: f"welcome {n}" for n, w in enumerate(welcomes, 1)}
    shown = [labels.get(v["jobId"], "PASSWORD-RESET") for v in order]
    demo.timeline.say("  order the worker took them: " + ", ".join(shown))
    overtaken = count - [v["jobId"] for v in order].index(reset["jobId"])
    expect(overtaken > 0, "the password-reset started after every welcome")
    demo.timeline.say(
        f"  the password-reset went ahead of {overtaken} of the {count} welcomes queued before it"
    )
    return f"overtook {overtaken} queued welcomes"


async def step_flaky(demo: Demo) -> str:
    accepted = await demo.post(
        "/notifications", {"type": "welcome", "userId": f"flaky-{demo.run_id}"}
    )
    demo.timeline.say(
        f"a flaky-… user: the simulated mail server fails twice (job {accepted['jobId']})"
    )
    view = await demo.follow(accepted["jobId"], lambda v: v["status"] in ("completed", "failed"))
    expect(
        view["status"] == "completed" and view["attemptsMade"] == 3,
        f"ended {view['status']} after {view['attemptsMade']} attempts",
    )
    return "sent on attempt 3"


async def step_dead_letter(demo: Demo) -> str:
    accepted = await demo.post(
        "/notifications", {"type": "welcome", "userId": f"fail-{demo.run_id}"}
    )
    job_id = accepted["jobId"]
    demo.timeline.say(f"a fail-… user: every attempt fails (job {job_id})")
    view = await demo.follow(job_id, lambda v: v["status"] == "failed")
    expect(view["deadLettered"], "the failed job is not dead-lettered")
    await _expect_in_dlq(demo, job_id, True)
    demo.timeline.say(f"  in GET /admin/dlq: {view['error']}")
    reply = await demo.http.post(f"/admin/dlq/{job_id}/retry", headers=demo.admin)
    expect(reply.status_code == 202, f"the retry answered {reply.status_code}: {reply.text}")
    await _expect_in_dlq(demo, job_id, False)
    demo.timeline.say("  POST /admin/dlq/{id}/retry → 202: it left the DLQ with fresh attempts")
    view = await demo.follow(job_id, lambda v: v["status"] == "failed")
    await _expect_in_dlq(demo, job_id, True)
    demo.timeline.say(
        f"  failed again after {view['attemptsMade']} attempts, as expected: back in the DLQ"
    )
    return "dead-lettered, retried, dead-lettered again"


async def _expect_in_dlq(demo: Demo, job_id: str, present: bool) -> None:
    page = await demo.get("/admin/dlq", queue="notifications", limit=500)
    listed = any(item["jobId"] == job_id for item in page["items"])
    expect(listed is present, f"job {job_id} is{'' if listed else ' not'} in the DLQ")


async def step_webhook_retries(demo: Demo) -> str:
    path = "/hooks/flaky"
    demo.receiver.scripts[path] = [500, 500, 200]
    accepted = await demo.post(
        "/notifications",
        {
            "type": "welcome",
            "userId": f"demo-hooked-{demo.run_id}",
            "webhookUrl": demo.receiver.base_url + path,
        },
    )
    demo.timeline.say(f"a receiver that answers 500, 500, then 200 (job {accepted['jobId']})")
    deliveries = await demo.deliveries(path, 3)
    expect(len({d.webhook_id for d in deliveries}) == 1, "the retries changed the webhook-id")
    view = await _webhook_delivered(demo, accepted["jobId"])
    hook = view["webhook"]
    expect(hook["attempts"] == 3, f"{hook['attempts']} attempts recorded")
    demo.timeline.say(
        f"  GET /notifications/{{id}} → webhook {hook['status']} after "
        f"{hook['attempts']} attempts; the job itself stayed {view['status']}"
    )
    return "delivered on attempt 3 with one webhook-id"


def _local_time(in_s: float) -> str:
    """RFC 3339 with this machine's UTC offset, `in_s` seconds from now."""
    moment = datetime.now().astimezone() + timedelta(seconds=in_s)
    return moment.isoformat(timespec="milliseconds")


async def step_scheduled_cancel(demo: Demo) -> str:
    user = f"demo-later-{demo.run_id}"
    kept = await demo.post(
        "/notifications", {"type": "welcome", "userId": user, "sendAt": _local_time(1)}
    )
    dropped = await demo.post(
        "/notifications", {"type": "order-confirmed", "userId": user, "sendAt": _local_time(1.5)}
    )
    view = await demo.get(f"/notifications/{dropped['jobId']}")
    expect(view["status"] == "scheduled", f"a future sendAt gave {view['status']}")
    demo.timeline.say(
        f"two notifications with a sendAt; one is {view['status']} for {view['scheduledFor']}"
    )
    reply = await demo.http.post(f"/jobs/{dropped['jobId']}/cancel")
    expect(reply.status_code == 200, f"the cancel answered {reply.status_code}: {reply.text}")
    expect(reply.json()["status"] == "canceled", f"the cancel left it {reply.json()['status']}")
    demo.timeline.say("  POST /jobs/{id}/cancel → 200, canceled before its sendAt")
    sent = await demo.follow(kept["jobId"], lambda v: v["status"] == "completed")
    expect(
        sent["startedAt"] >= sent["sendAt"], f"sent at {sent['startedAt']}, before {sent['sendAt']}"
    )
    demo.timeline.say(f"  the other went out at {sent['startedAt']} (sendAt {sent['sendAt']})")
    later = await demo.get(f"/notifications/{dropped['jobId']}")
    expect(later["status"] == "canceled", f"the canceled one is now {later['status']}")
    return "sent on time; the canceled one never ran"


async def step_expiry(demo: Demo) -> str:
    accepted = await demo.post(
        "/notifications",
        {"type": "welcome", "userId": f"flaky-late-{demo.run_id}", "expiresAt": _local_time(0.25)},
    )
    demo.timeline.say(
        f"a flaky-… user whose notification expires in 250 ms (job {accepted['jobId']})"
    )
    view = await demo.follow(
        accepted["jobId"], lambda v: v["status"] in ("completed", "failed", "expired")
    )
    expect(view["status"] == "expired", f"it ended {view['status']}")
    expect(not view["deadLettered"], "the expired notification was dead-lettered")
    demo.timeline.say(f"  {view['error']}; not dead-lettered")
    return "expired during its retry backoff, never sent"


STEPS: list[tuple[str, Callable[[Demo], Awaitable[str]]]] = [
    ("Report, long-polled to completion", step_report),
    ("Notification with a signed webhook", step_signed_webhook),
    ("Password-reset overtakes queued welcomes", step_priority),
    ("Flaky user succeeds on the third attempt", step_flaky),
    ("Failing user: DLQ, admin retry, DLQ again", step_dead_letter),
    ("Webhook retried after two 500s", step_webhook_retries),
    ("Scheduled notifications: one sent on time, one canceled", step_scheduled_cancel),
    ("Notification expired during its retry backoff", step_expiry),
]
