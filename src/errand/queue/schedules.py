"""Recurring schedules: one BullMQ job scheduler each, plus errand's record of its owner,
request and last run.

BullMQ does the scheduling: `Queue.upsertJobScheduler` stores the scheduler and its
first run as a delayed job, and the worker that takes a run makes the next one (one
script that checks it took the current run, so a tick runs once however many
processes there are). errand keeps, per client, what BullMQ does not: who owns the
schedule, the request as it was given, and the last run (`lastRunAt`, `lastJobId`,
stamped when a run's job is first taken by a worker; see `schedule_runs.py`).
"""

from __future__ import annotations

import functools
import zoneinfo
from dataclasses import dataclass
from typing import Any

import orjson
from bullmq.job_scheduler import default_repeat_strategy

from errand.clock import iso_ms, now_ms
from errand.errors import NotFound
from errand.jobids import QueueName, new_schedule_id, schedule_partition, schedule_queue
from errand.keys import report_dedup_id
from errand.queue.facade import JobQueues
from errand.queue.policies import NOTIFICATION_PRIORITIES
from errand.queue.producers import notification_data, report_data

CRON_FIELDS = 5
UTC = "UTC"


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """What a client asked for: exactly one of `cron` or `every_s`, and the job of each run.

    `job` is the run's request body as validated (without `queue`), e.g.
    `{"userId": "u-42", "reportType": "activity"}`.
    """

    queue: QueueName
    job: dict[str, str]
    cron: str | None = None
    every_s: int | None = None
    timezone: str = UTC

    def repeat_options(self) -> dict[str, Any]:
        """BullMQ's repeat options: a cron pattern in its time zone, or every N ms."""
        if self.cron is not None:
            return {"pattern": self.cron, "tz": self.timezone}
        return {"every": int(self.every_s or 0) * 1000}

    def as_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {"queue": str(self.queue), "job": self.job}
        if self.cron is not None:
            value.update(cron=self.cron, timezone=self.timezone)
        else:
            value["every"] = self.every_s
        return value

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> ScheduleSpec:
        return cls(
            queue=QueueName(value["queue"]),
            job=dict(value["job"]),
            cron=value.get("cron"),
            every_s=value.get("every"),
            timezone=value.get("timezone") or UTC,
        )


@dataclass(frozen=True, slots=True)
class Schedule:
    """One schedule as its owner sees it."""

    schedule_id: str
    client_id: str
    spec: ScheduleSpec
    created_ms: int
    next_run_ms: int | None = None
    last_run_ms: int | None = None
    last_job_id: str | None = None


# --- validation (what BullMQ's scheduler will compute, checked before it is asked) -----


@functools.cache
def _time_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) | {UTC}


def check_timezone(name: str) -> None:
    """Raises ValueError unless `name` is an IANA time zone name this host knows."""
    if name not in _time_zones():
        raise ValueError(f"{name!r} is not an IANA time zone name (e.g. Europe/Paris)")


def next_cron_ms(expression: str, timezone: str, after_ms: int) -> int:
    """The first match of `expression` in `timezone` after `after_ms`, computed exactly as
    BullMQ's scheduler computes it (its `default_repeat_strategy`, croniter underneath).

    Raises ValueError for a bad expression or one that never matches."""
    try:
        next_ms = default_repeat_strategy(after_ms, {"pattern": expression, "tz": timezone})
    except (ValueError, KeyError, TypeError) as err:  # croniter's errors are ValueErrors
        raise ValueError(f"{expression!r} is not a cron expression that ever runs: {err}") from err
    if next_ms is None:
        raise ValueError(f"{expression!r} is not a cron expression")
    return int(next_ms)


def check_cron(expression: str, timezone: str) -> None:
    """Raises ValueError unless `expression` is five standard cron fields that match some
    time in the future."""
    if len(expression.split()) != CRON_FIELDS:
        raise ValueError("cron must have five fields: minute hour day-of-month month day-of-week")
    next_cron_ms(expression, timezone, now_ms())


# --- the service ------------------------------------------------------------------------


def _template(
    queues: JobQueues, client_id: str, schedule_id: str, spec: ScheduleSpec
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """The name, data and opts every run's job is created with."""
    job = spec.job
    opts = queues.policies[spec.queue].job_options()
    if spec.queue is QueueName.REPORTS:
        user_id, report_type = job["userId"], job["reportType"]
        name, data = "report", report_data(client_id, user_id, report_type, job.get("webhookUrl"))
        # Stored as the run's `deid`: BullMQ frees the in-flight slot when the run finishes.
        opts["deduplication"] = {"id": report_dedup_id(client_id, user_id, report_type)}
    else:
        name = job["type"]
        data = notification_data(client_id, name, job["userId"], job.get("webhookUrl"))
        opts["priority"] = NOTIFICATION_PRIORITIES[name]
    data["scheduleId"] = schedule_id
    return name, data, opts


async def create_schedule(queues: JobQueues, client_id: str, spec: ScheduleSpec) -> Schedule:
    """Record the schedule, then register its BullMQ job scheduler (an `every` one runs now).

    The record comes first: a run is only let through while its record exists.
    """
    partition = queues.partition_for(client_id, spec.job["userId"])  # as a POST's job
    schedule_id = new_schedule_id(spec.queue, partition)
    created_ms = now_ms()
    record_key = queues.keys.schedule(client_id, schedule_id)
    # the record (its runs' partition) and the client's set: one MULTI on one server
    async with queues.redis.pipeline(transaction=not queues.cluster) as pipe:
        pipe.hset(
            record_key, mapping={"request": orjson.dumps(spec.as_json()), "createdAt": created_ms}
        )
        pipe.zadd(queues.keys.schedules(client_id), {schedule_id: created_ms})
        await pipe.execute()
    name, data, opts = _template(queues, client_id, schedule_id, spec)
    try:
        await queues.bullmq(spec.queue, partition).upsertJobScheduler(
            schedule_id, spec.repeat_options(), name, data, opts
        )
    except Exception:
        await _forget(queues, client_id, schedule_id)
        raise
    return await get_schedule(queues, client_id, schedule_id)


async def get_schedule(queues: JobQueues, client_id: str, schedule_id: str) -> Schedule:
    """One of the client's schedules. Raises NotFound for an unknown or another client's id."""
    found = await _read(queues, client_id, [schedule_id])
    if not found:
        raise NotFound(f"no schedule with id {schedule_id!r}")
    return found[0]


async def list_schedules(queues: JobQueues, client_id: str) -> list[Schedule]:
    """The client's schedules, oldest first."""
    ids = await queues.redis.zrange(queues.keys.schedules(client_id), 0, -1)
    return await _read(queues, client_id, [str(i) for i in ids])


async def delete_schedule(queues: JobQueues, client_id: str, schedule_id: str) -> None:
    """Delete the schedule: no run starts after this returns (a run already taken by a
    worker runs on). Raises NotFound for an unknown or another client's id."""
    queue = schedule_queue(schedule_id)
    if queue is None or not await _forget(queues, client_id, schedule_id):
        raise NotFound(f"no schedule with id {schedule_id!r}")
    # The record is gone first, so a run taken from here on is dropped by the gate; this
    # removes the scheduler and its next run if it is still delayed.
    await queues.bullmq(queue, schedule_partition(schedule_id)).removeJobScheduler(schedule_id)


async def delete_client_schedules(queues: JobQueues, client_id: str) -> int:
    """Delete every schedule of a client (DELETE /admin/clients/{id}); returns how many."""
    ids = await queues.redis.zrange(queues.keys.schedules(client_id), 0, -1)
    deleted = 0
    for schedule_id in ids:
        try:
            await delete_schedule(queues, client_id, str(schedule_id))
        except NotFound:
            continue  # deleted concurrently
        deleted += 1
    return deleted


async def _forget(queues: JobQueues, client_id: str, schedule_id: str) -> bool:
    """Delete errand's record of a schedule; False when there was none."""
    async with queues.redis.pipeline(transaction=not queues.cluster) as pipe:
        pipe.delete(queues.keys.schedule(client_id, schedule_id))
        pipe.zrem(queues.keys.schedules(client_id), schedule_id)
        deleted, _ = await pipe.execute()
    return bool(deleted)


async def _read(queues: JobQueues, client_id: str, ids: list[str]) -> list[Schedule]:
    """Records and BullMQ's next-run times of `ids`, in one round trip; unknown ids skipped."""
    known = [(i, q) for i in ids if (q := schedule_queue(i)) is not None]
    if not known:
        return []
    async with queues.redis.pipeline(transaction=False) as pipe:
        for schedule_id, queue in known:
            pipe.hgetall(queues.keys.schedule(client_id, schedule_id))
            repeat = queues.keys.queue(queue, "repeat", schedule_partition(schedule_id))
            pipe.zscore(repeat, schedule_id)
        replies = await pipe.execute()
    found = []
    for (schedule_id, _), record, next_run in zip(known, replies[::2], replies[1::2], strict=True):
        if record:
            found.append(_schedule_from(schedule_id, client_id, record, next_run))
    return found


def _schedule_from(
    schedule_id: str, client_id: str, record: dict[str, str], next_run: Any
) -> Schedule:
    last_run = record.get("lastRunAt")
    return Schedule(
        schedule_id=schedule_id,
        client_id=client_id,
        spec=ScheduleSpec.from_json(orjson.loads(record["request"])),
        created_ms=int(record.get("createdAt") or 0),
        next_run_ms=int(float(next_run)) if next_run is not None else None,
        last_run_ms=int(last_run) if last_run else None,
        last_job_id=record.get("lastJobId") or None,
    )


def schedule_view(schedule: Schedule) -> dict[str, Any]:
    """The public schedule view: `cron` (with its `timezone`) or `every` (timezone null)."""
    spec = schedule.spec
    view: dict[str, Any] = {"scheduleId": schedule.schedule_id}
    if spec.cron is not None:
        view.update(cron=spec.cron, timezone=spec.timezone)
    else:
        view.update(every=spec.every_s, timezone=None)
    view.update(
        job={"queue": str(spec.queue), **spec.job},
        createdAt=iso_ms(schedule.created_ms),
        nextRunAt=iso_ms(schedule.next_run_ms),
        lastRunAt=iso_ms(schedule.last_run_ms),
        lastJobId=schedule.last_job_id,
    )
    return view
