"""Queue names and the shapes of job and schedule ids: an id names its queue and its
partition, so `GET /jobs/{id}` needs no lookup; and which partition a job belongs to.

The keys these ids are stored under are built in `keys.py`.
"""

from __future__ import annotations

import secrets
import zlib
from enum import StrEnum


class QueueName(StrEnum):
    REPORTS = "reports"
    NOTIFICATIONS = "notifications"
    WEBHOOKS = "webhooks"


# Job ids carry their queue in a short tag, and their partition when it is not 0, so
# `GET /jobs/{id}` needs no lookup: `ntf_<32 hex>` (partition 0, the only shape errand
# issued before partitions) or `ntf_<p>_<32 hex>`.
_ID_TAGS: dict[QueueName, str] = {
    QueueName.REPORTS: "rep",
    QueueName.NOTIFICATIONS: "ntf",
    QueueName.WEBHOOKS: "whk",
}
_TAG_QUEUES = {tag: queue for queue, tag in _ID_TAGS.items()}
MAX_PARTITIONS = 1024


def new_job_id(queue: QueueName, partition: int = 0) -> str:
    """A fresh job id, unique across queues, that names its queue and partition."""
    return job_id_of(queue, secrets.token_hex(16), partition)


def job_id_of(queue: QueueName, hex32: str, partition: int = 0) -> str:
    """The job id of `queue` and `partition` around 32 hex digits."""
    if partition:
        return f"{_ID_TAGS[queue]}_{partition}_{hex32}"
    return f"{_ID_TAGS[queue]}_{hex32}"


def _parse(job_id: str) -> tuple[QueueName, int] | None:
    if job_id.startswith(_RUN_PREFIX):  # a schedule's run: its schedule id says
        schedule_id = schedule_of(job_id)
        return None if schedule_id is None else _parse(schedule_id.partition("_")[2])
    parts = job_id.split("_")
    if len(parts) == 2:
        tag, rest = parts
        partition = 0
    elif len(parts) == 3 and parts[1].isdigit() and parts[1].isascii():
        tag, number, rest = parts
        partition = int(number)
        if str(partition) != number or not 0 < partition < MAX_PARTITIONS:
            return None
    else:
        return None
    queue = _TAG_QUEUES.get(tag)
    if queue is None or len(rest) != 32 or not rest.isalnum() or not rest.isascii():
        return None
    return queue, partition


def queue_of(job_id: str) -> QueueName | None:
    """The queue a job id belongs to, or None for an id errand never issued.

    Besides errand's own ids this knows the ids BullMQ gives a schedule's runs
    (`repeat:<scheduleId>:<epoch ms>`, see `schedule_of`).
    """
    parsed = _parse(job_id)
    return None if parsed is None else parsed[0]


# A schedule id names its job's queue and partition too (`sch_rep_<32 hex>`,
# `sch_rep_<p>_<32 hex>`): BullMQ names every run `repeat:<scheduler id>:<epoch ms>`
# (its Lua builds the id), and errand uses the schedule id as the scheduler id, so a
# run's id still says which queue and partition hold it.
_SCHEDULE_TAG = "sch"
_RUN_PREFIX = "repeat:"


def new_schedule_id(queue: QueueName, partition: int = 0) -> str:
    """A fresh schedule id for a schedule whose runs go to `partition` of `queue`."""
    return f"{_SCHEDULE_TAG}_{new_job_id(queue, partition)}"


def schedule_queue(schedule_id: str) -> QueueName | None:
    """The queue of a schedule's runs, or None for an id errand never issued."""
    tag, sep, rest = schedule_id.partition("_")
    if tag != _SCHEDULE_TAG or not sep:
        return None
    queue = queue_of(rest)
    return queue if queue in (QueueName.REPORTS, QueueName.NOTIFICATIONS) else None


def schedule_partition(schedule_id: str) -> int:
    """The partition of a schedule's scheduler and runs."""
    return partition_of(schedule_id.partition("_")[2])


def schedule_of(job_id: str) -> str | None:
    """The schedule id of a run's job id (`repeat:<scheduleId>:<epoch ms>`), else None."""
    if not job_id.startswith(_RUN_PREFIX):
        return None
    schedule_id, sep, millis = job_id[len(_RUN_PREFIX) :].rpartition(":")
    if not sep or not millis.isdigit() or schedule_queue(schedule_id) is None:
        return None
    return schedule_id


def partition_of(job_id: str) -> int:
    """The partition a job id names (0 for an id errand never issued: its keys miss)."""
    parsed = _parse(job_id)
    return 0 if parsed is None else parsed[1]


def partition_for(client_id: str, user_id: str, partitions: int) -> int:
    """The partition of a report or notification: a stable hash (CRC32, the same in every
    process and release) of what must stay together, its client and `userId`, so one
    user's in-flight report dedup is one script in one slot, and one user's mails keep
    their order and their per-recipient cap."""
    if partitions <= 1:
        return 0
    return zlib.crc32(f"{client_id}:{user_id}".encode()) % partitions
