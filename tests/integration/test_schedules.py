"""/schedules over real HTTP with real workers, on both worker engines: validation, ownership,
the view's nextRunAt (cron in a time zone), runs at creation and then each tick, the
reports' in-flight rule, and no run after DELETE."""

from __future__ import annotations

import datetime as dt
import itertools
import re
from collections.abc import AsyncIterator
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from errand.jobids import QueueName, new_schedule_id, schedule_of, schedule_partition
from errand.queue.schedules import ScheduleSpec, create_schedule
from support.stack import Stack, run_stack
from support.waiting import wait_for

OTHER = "someone-else"
EVERY_SECOND_NOTE = {"every": 1, "job": {"queue": "notifications", "type": "welcome", "userId": 7}}


@pytest.fixture(params=["fast", "bullmq"])
async def engine_stack(make_settings: Any, request: pytest.FixtureRequest) -> AsyncIterator[Stack]:
    """The stack with one worker of each engine (`@pytest.mark.settings` still applies)."""
    marker = request.node.get_closest_marker("settings")
    overrides = {**(marker.kwargs if marker else {}), "worker_engine": request.param}
    async with run_stack(make_settings(**overrides)) as stack:
        yield stack


@pytest.fixture
async def bare(make_settings: Any) -> AsyncIterator[Stack]:
    """The API alone: for the rules that need no worker."""
    async with run_stack(make_settings(), with_worker=False) as stack:
        yield stack


async def create(stack: Stack, body: dict[str, Any]) -> dict[str, Any]:
    reply = await stack.http.post("/schedules", json=body)
    assert reply.status_code == 201, reply.text
    view: dict[str, Any] = reply.json()
    assert reply.headers["location"] == f"/schedules/{view['scheduleId']}"
    return view


async def view_of(stack: Stack, schedule_id: str) -> dict[str, Any]:
    reply = await stack.http.get(f"/schedules/{schedule_id}")
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


async def runs(stack: Stack, schedule_id: str, queue: QueueName) -> list[str]:
    """The ids of the schedule's runs that exist now (waiting, active or finished), by tick.

    The states are read in one MULTI: read one by one, a run moving on between two reads
    (active to completed) would be in none of them. A schedule's runs are all in the
    partition of its scheduler."""
    async with stack.redis.pipeline(transaction=True) as pipe:
        for state in ("completed", "active", "wait", "prioritized", "failed"):
            key = stack.keys.queue(queue, state, schedule_partition(schedule_id))
            if state in ("active", "wait"):
                pipe.lrange(key, 0, -1)
            else:
                pipe.zrange(key, 0, -1)
        states = await pipe.execute()
    found = {m for members in states for m in members if schedule_of(m) == schedule_id}
    return sorted(found, key=tick_ms)


def tick_ms(run_id: str) -> int:
    return int(run_id.rpartition(":")[2])


def iso(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- create, read, list, delete ------------------------------------------------------------


async def test_create_read_list_and_delete(stack: Stack) -> None:
    body = {
        "cron": "15 8 * * 1-5",
        "timezone": "Europe/Paris",
        "job": {"queue": "reports", "userId": 42, "reportType": "weekly", "webhookUrl": None},
    }
    view = await create(stack, body)
    assert re.fullmatch(r"sch_rep_([0-9]+_)?[0-9a-f]{32}", view["scheduleId"])
    assert view == view | {
        "cron": "15 8 * * 1-5",
        "timezone": "Europe/Paris",
        "job": {"queue": "reports", "userId": "42", "reportType": "weekly"},
        "lastRunAt": None,
        "lastJobId": None,
    }
    assert "every" not in view
    assert iso(view["nextRunAt"]) > iso(view["createdAt"])
    assert await view_of(stack, view["scheduleId"]) == view
    second = await create(stack, {**EVERY_SECOND_NOTE, "every": 3600})
    assert second["every"] == 3600 and second["timezone"] is None and "cron" not in second
    listed = (await stack.http.get("/schedules")).json()["items"]
    assert [s["scheduleId"] for s in listed] == [view["scheduleId"], second["scheduleId"]]

    deleted = await stack.http.delete(f"/schedules/{view['scheduleId']}")
    assert deleted.status_code == 204 and deleted.content == b""
    assert (await stack.http.get(f"/schedules/{view['scheduleId']}")).status_code == 404
    assert (await stack.http.delete(f"/schedules/{view['scheduleId']}")).status_code == 404
    listed = (await stack.http.get("/schedules")).json()["items"]
    assert [s["scheduleId"] for s in listed] == [second["scheduleId"]]


REPORT_JOB = {"queue": "reports", "userId": "u-1", "reportType": "activity"}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"cron": "61 * * * *", "job": REPORT_JOB}, "cron"),
        ({"cron": "* * * *", "job": REPORT_JOB}, "cron"),
        ({"cron": "*/5 * * * * *", "job": REPORT_JOB}, "cron"),  # six fields (seconds)
        ({"cron": "0 0 31 2 *", "job": REPORT_JOB}, "cron"),  # never matches
        ({"cron": "@daily", "job": REPORT_JOB}, "cron"),
        ({"cron": "0 9 * * *", "timezone": "Mars/Olympus", "job": REPORT_JOB}, "timezone"),
        ({"cron": "0 9 * * *", "timezone": "", "job": REPORT_JOB}, "timezone"),
        ({"cron": "0 9 * * *", "timezone": "../../etc/passwd", "job": REPORT_JOB}, "timezone"),
        ({"every": 5, "timezone": "UTC", "job": REPORT_JOB}, "timezone"),
        ({"cron": "0 9 * * *", "every": 5, "job": REPORT_JOB}, "cron"),
        ({"job": REPORT_JOB}, "cron"),
        ({"every": 0, "job": REPORT_JOB}, "every"),
        ({"every": -1, "job": REPORT_JOB}, "every"),
        ({"every": 1.5, "job": REPORT_JOB}, "every"),
        ({"every": "5", "job": REPORT_JOB}, "every"),
        ({"every": True, "job": REPORT_JOB}, "every"),
        ({"every": 5}, "job"),
        ({"every": 5, "job": "reports"}, "job"),
        ({"every": 5, "job": {"userId": "u-1", "reportType": "activity"}}, "job.queue"),
        ({"every": 5, "job": {**REPORT_JOB, "queue": "webhooks"}}, "job.queue"),
        ({"every": 5, "job": {**REPORT_JOB, "reportType": "no spaces"}}, "job.reportType"),
        ({"every": 5, "job": {"queue": "reports", "userId": "u-1"}}, "job.reportType"),
        ({"every": 5, "job": {**REPORT_JOB, "webhookUrl": "ftp://x"}}, "job.webhookUrl"),
        ({"every": 5, "job": {"queue": "notifications", "type": "spam", "userId": 1}}, "job.type"),
        (
            {
                "every": 5,
                "job": {
                    "queue": "notifications",
                    "type": "welcome",
                    "userId": 1,
                    "sendAt": "2030-01-01T00:00:00Z",
                },
            },
            "job.sendAt",
        ),
    ],
)
async def test_bad_schedules_are_422_and_create_nothing(
    bare: Stack, body: dict[str, Any], field: str
) -> None:
    stack = bare
    reply = await stack.http.post("/schedules", json=body)
    assert reply.status_code == 422, reply.text
    problem = reply.json()
    assert reply.headers["content-type"] == "application/problem+json"
    assert field in [e["field"] for e in problem["errors"]], problem
    assert (await stack.http.get("/schedules")).json() == {"items": []}


async def test_every_written_with_a_fraction_of_zero_is_that_integer(bare: Stack) -> None:
    # JSON Schema's integer (the document's): a number with no fractional part.
    reply = await bare.http.post("/schedules", json={"every": 3600.0, "job": REPORT_JOB})
    assert reply.status_code == 201, reply.text
    assert reply.json()["every"] == 3600


async def test_another_clients_schedule_answers_like_an_unknown_one(bare: Stack) -> None:
    stack = bare
    spec = ScheduleSpec(QueueName.REPORTS, {"userId": "u-1", "reportType": "x"}, every_s=3600)
    theirs = await create_schedule(stack.app.state.services.queues, OTHER, spec)
    unknown = new_schedule_id(QueueName.REPORTS)
    for method in ("GET", "DELETE"):
        foreign = await stack.http.request(method, f"/schedules/{theirs.schedule_id}")
        nobody = await stack.http.request(method, f"/schedules/{unknown}")
        assert foreign.status_code == nobody.status_code == 404
        masked = foreign.json()["detail"].replace(theirs.schedule_id, unknown)
        assert masked == nobody.json()["detail"]
    assert (await stack.http.get("/schedules")).json() == {"items": []}
    # Still there for its owner: the DELETE above did not reach it.
    assert await stack.redis.exists(stack.keys.schedule(OTHER, theirs.schedule_id))


def next_local(now: dt.datetime, zone: str, hour: int, minute: int) -> dt.datetime:
    """The next hour:minute wall-clock time in `zone` after `now`, in UTC (by hand)."""
    local = now.astimezone(ZoneInfo(zone))
    candidate = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if candidate <= local:
        candidate = (candidate + dt.timedelta(days=1)).replace(hour=hour, minute=minute)
    return candidate.astimezone(dt.UTC)


@pytest.mark.parametrize("zone", ["UTC", "Asia/Tokyo", "America/New_York", "Asia/Kolkata"])
async def test_cron_next_run_is_the_next_match_in_the_time_zone(bare: Stack, zone: str) -> None:
    stack = bare
    body: dict[str, Any] = {"cron": "30 9 * * *", "job": REPORT_JOB}
    if zone != "UTC":
        body["timezone"] = zone
    view = await create(stack, body)
    assert view["timezone"] == zone
    expected = next_local(iso(view["createdAt"]), zone, 9, 30)
    assert iso(view["nextRunAt"]) == expected
    assert (await view_of(stack, view["scheduleId"]))["nextRunAt"] == view["nextRunAt"]


# --- runs -------------------------------------------------------------------------------


async def test_every_runs_at_creation_then_each_second(engine_stack: Stack) -> None:
    stack = engine_stack
    view = await create(stack, EVERY_SECOND_NOTE)
    schedule_id = view["scheduleId"]
    done = await wait_for(
        lambda: runs(stack, schedule_id, QueueName.NOTIFICATIONS),
        lambda found: len(found) >= 3,
        timeout_s=10,
        what="three runs",
    )
    ticks = [tick_ms(run) for run in done]
    created_ms = int(iso(view["createdAt"]).timestamp() * 1000)
    assert abs(ticks[0] - created_ms) < 1000  # the first run is at creation
    assert [b - a for a, b in itertools.pairwise(ticks)] == [1000] * (len(ticks) - 1)
    first = await stack.http.get(f"/jobs/{done[0]}", params={"wait": 10})
    assert first.json() | {"status": "completed", "scheduleId": schedule_id} == first.json()
    note = (await stack.http.get(f"/notifications/{done[0]}")).json()
    assert note["scheduleId"] == schedule_id and note["userId"] == "7"
    latest = await view_of(stack, schedule_id)
    assert latest["lastJobId"] in await runs(stack, schedule_id, QueueName.NOTIFICATIONS)
    assert iso(latest["lastRunAt"]) >= iso(view["createdAt"])
    assert iso(latest["nextRunAt"]) > iso(latest["lastRunAt"])


async def test_a_seconds_level_cron_pattern_runs_through_the_workers(stack: Stack) -> None:
    # The API takes five fields (minutes at best); BullMQ's scheduler also takes a seconds
    # field, so the cron path is exercised for real without waiting a minute.
    spec = ScheduleSpec(
        QueueName.NOTIFICATIONS, {"type": "welcome", "userId": "c-1"}, cron="* * * * * *"
    )
    schedule = await create_schedule(stack.app.state.services.queues, stack.client_id, spec)
    done = await wait_for(
        lambda: runs(stack, schedule.schedule_id, QueueName.NOTIFICATIONS),
        lambda found: len(found) >= 2,
        timeout_s=10,
        what="two cron runs",
    )
    assert all(tick_ms(run) % 1000 == 0 for run in done)  # on the second, as cron matches


@pytest.mark.settings(report_seconds=2.5)
async def test_a_run_while_the_last_report_is_in_flight_creates_nothing(
    engine_stack: Stack,
) -> None:
    stack = engine_stack
    job = {"queue": "reports", "userId": "u-busy", "reportType": "activity"}
    view = await create(stack, {"every": 1, "job": job})
    schedule_id = view["scheduleId"]
    # A run holds the in-flight slot from its first take (the gate; api-notes.md): a run
    # still in `wait` holds nothing yet, so wait for the gate's stamp, not for the job.
    taken = await wait_for(
        lambda: view_of(stack, schedule_id),
        lambda v: v["lastJobId"] is not None,
        what="the first run taken",
    )
    first = taken["lastJobId"]
    # A POST for the same user and type joins the run in flight.
    posted = await stack.http.post("/reports", json={"userId": "u-busy", "reportType": "activity"})
    assert posted.json() | {"jobId": first, "deduplicated": True} == posted.json()
    # The next run the gate lets through (a run found waiting may still be dropped).
    latest = await wait_for(
        lambda: view_of(stack, schedule_id),
        lambda v: v["lastJobId"] != first,
        timeout_s=15,
        what="the next report run taken",
    )
    done = [first, latest["lastJobId"]]
    first_ms, second_ms = tick_ms(done[0]), tick_ms(done[1])
    assert second_ms - first_ms >= 2000  # the ticks while the first ran created nothing
    for skipped_ms in range(first_ms + 1000, second_ms, 1000):
        skipped = f"repeat:{schedule_id}:{skipped_ms}"
        assert (await stack.http.get(f"/jobs/{skipped}")).status_code == 404
    finished = await stack.http.get(f"/jobs/{done[0]}", params={"wait": 10})
    assert finished.json()["status"] == "completed"
    assert finished.json()["scheduleId"] == schedule_id


async def test_no_run_after_delete(engine_stack: Stack) -> None:
    stack = engine_stack
    doomed = (await create(stack, EVERY_SECOND_NOTE))["scheduleId"]
    await wait_for(
        lambda: runs(stack, doomed, QueueName.NOTIFICATIONS),
        lambda found: len(found) >= 2,
        what="two runs",
    )
    assert (await stack.http.delete(f"/schedules/{doomed}")).status_code == 204
    before = await runs(stack, doomed, QueueName.NOTIFICATIONS)
    # Another schedule running three times proves the workers kept going meanwhile.
    witness = (await create(stack, EVERY_SECOND_NOTE))["scheduleId"]
    await wait_for(
        lambda: runs(stack, witness, QueueName.NOTIFICATIONS),
        lambda found: len(found) >= 3,
        what="three runs of the witness",
    )
    # A run already due when DELETE came is dropped when taken: the set can only shrink.
    assert set(await runs(stack, doomed, QueueName.NOTIFICATIONS)) <= set(before)
    assert doomed not in await stack.members(QueueName.NOTIFICATIONS, "repeat")


async def test_a_schedules_runs_are_listed_with_the_clients_jobs(stack: Stack) -> None:
    view = await create(stack, EVERY_SECOND_NOTE)
    schedule_id = view["scheduleId"]

    async def listed() -> list[str]:
        page = await stack.http.get("/jobs", params={"queue": "notifications", "limit": 100})
        return [j["jobId"] for j in page.json()["items"] if j["scheduleId"] == schedule_id]

    found = await wait_for(listed, lambda ids: len(ids) >= 2, timeout_s=10, what="listed runs")
    assert len(found) == len(set(found)), found  # each run listed once
    assert found == sorted(found, key=tick_ms, reverse=True)  # newest first
    taken = await runs(stack, schedule_id, QueueName.NOTIFICATIONS)
    assert set(found) <= set(taken)
