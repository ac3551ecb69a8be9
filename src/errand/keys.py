"""Every Redis key, queue name and job-id shape errand uses; no key string anywhere else.

BullMQ owns the keys under `{prefix}:{queue}:*`. errand's own keys live under
`{prefix}:x:*`, so with a hash-tagged prefix such as `{errand}` every key
errand touches shares one Redis Cluster slot (MULTI and Lua stay legal).

Slots, for the partitioned queues to come (today every key shares the prefix's tag):
- global, one slot: the client index (`clients`), each client's record and key list
  (`client`, `client_keys`) and the key-id index (`api_key`); admin writes touch
  several of them in one MULTI, so they must stay together;
- per client, each key alone: the rate-limit bucket (`rate_bucket`, one key per
  client) and the recipient window (`recipient_window`, one key per client and
  user); every Lua script that touches one touches only that key.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum


class QueueName(StrEnum):
    REPORTS = "reports"
    NOTIFICATIONS = "notifications"
    WEBHOOKS = "webhooks"


# Job ids carry their queue in a short tag so `GET /jobs/{id}` needs no lookup.
_ID_TAGS: dict[QueueName, str] = {
    QueueName.REPORTS: "rep",
    QueueName.NOTIFICATIONS: "ntf",
    QueueName.WEBHOOKS: "whk",
}
_TAG_QUEUES = {tag: queue for queue, tag in _ID_TAGS.items()}


def new_job_id(queue: QueueName) -> str:
    """A fresh job id, unique across queues, that names its queue."""
    return f"{_ID_TAGS[queue]}_{uuid.uuid4().hex}"


def queue_of(job_id: str) -> QueueName | None:
    """The queue a job id belongs to, or None for an id errand never issued.

    Besides errand's own ids this knows the ids BullMQ gives a schedule's runs
    (`repeat:<scheduleId>:<epoch ms>`, see `schedule_of`).
    """
    if job_id.startswith(_RUN_PREFIX):
        schedule_id = schedule_of(job_id)
        return None if schedule_id is None else schedule_queue(schedule_id)
    tag, sep, rest = job_id.partition("_")
    if not sep or len(rest) != 32 or not rest.isalnum():
        return None
    return _TAG_QUEUES.get(tag)


# A schedule id names its job's queue too (`sch_rep_<32 hex>`): BullMQ names every run
# `repeat:<scheduler id>:<epoch ms>` (its Lua builds the id), and errand uses the
# schedule id as the scheduler id, so a run's id still says which queue holds it.
_SCHEDULE_TAG = "sch"
_RUN_PREFIX = "repeat:"


def new_schedule_id(queue: QueueName) -> str:
    """A fresh schedule id for a schedule whose runs go to `queue`."""
    return f"{_SCHEDULE_TAG}_{_ID_TAGS[queue]}_{uuid.uuid4().hex}"


def schedule_queue(schedule_id: str) -> QueueName | None:
    """The queue of a schedule's runs, or None for an id errand never issued."""
    tag, sep, rest = schedule_id.partition("_")
    if tag != _SCHEDULE_TAG or not sep:
        return None
    queue = queue_of(rest)
    return queue if queue in (QueueName.REPORTS, QueueName.NOTIFICATIONS) else None


def schedule_of(job_id: str) -> str | None:
    """The schedule id of a run's job id (`repeat:<scheduleId>:<epoch ms>`), else None."""
    if not job_id.startswith(_RUN_PREFIX):
        return None
    schedule_id, sep, millis = job_id[len(_RUN_PREFIX) :].rpartition(":")
    if not sep or not millis.isdigit() or schedule_queue(schedule_id) is None:
        return None
    return schedule_id


@dataclass(frozen=True, slots=True)
class Keys:
    """Key builder bound to one prefix."""

    prefix: str

    # --- BullMQ's keys (`queue` is a QueueName, or any queue name the engine runs) ---
    def queue(self, queue: str, suffix: str) -> str:
        return f"{self.prefix}:{queue}:{suffix}"

    def job(self, queue: str, job_id: str) -> str:
        return f"{self.prefix}:{queue}:{job_id}"

    def events(self, queue: QueueName) -> str:
        return f"{self.prefix}:{queue}:events"

    def dedup(self, queue: QueueName, dedup_id: str) -> str:
        """BullMQ's deduplication key: holds the id of the job in flight for `dedup_id`."""
        return f"{self.prefix}:{queue}:de:{dedup_id}"

    def bullmq_metrics(self, queue: str, target: str) -> str:
        """BullMQ's metrics of `completed` or `failed` jobs (moveToFinished's KEYS[13])."""
        return f"{self.prefix}:{queue}:metrics:{target}"

    # --- errand's own keys -----------------------------------------------
    def report_result(self, client_id: str, job_id: str) -> str:
        """A generated report, under its owner: another client's lookup misses it."""
        return f"{self.prefix}:x:result:{client_id}:{job_id}"

    def sent_ledger(self, job_id: str) -> str:
        """Marks a notification whose email went out (idempotent sending)."""
        return f"{self.prefix}:x:sent:{job_id}"

    def send_claim(self, job_id: str) -> str:
        """Short lock held while one worker sends a job's email."""
        return f"{self.prefix}:x:sending:{job_id}"

    def outbox(self) -> str:
        """The simulated transport's outbox (a capped list)."""
        return f"{self.prefix}:x:outbox"

    def outbox_count(self, job_id: str) -> str:
        return f"{self.prefix}:x:outbox-count:{job_id}"

    def webhook_state(self, job_id: str) -> str:
        """Delivery status of the webhook of one job (a hash)."""
        return f"{self.prefix}:x:webhook:{job_id}"

    def idempotency(self, client_id: str, route: str, key: str) -> str:
        """An Idempotency-Key record, scoped per client and route."""
        return f"{self.prefix}:x:idem:{client_id}:{route}:{key}"

    # --- the listing index (GET /jobs) ---------------------------------------
    # Slot: written in one MULTI with BullMQ's add script, so today these keys share
    # the slot of the job's queue (the `{prefix}` hash tag). When queues split into
    # partitions, the index moves to a slot of its own per client (so one client's
    # listing stays one slot); the write then becomes index-then-job in two steps,
    # which stays correct because a read skips entries whose job hash is absent.
    def job_index(self, client_id: str, queue: QueueName) -> str:
        """One client's jobs of one queue: a sorted set scored by createdAt (ms),
        member `{jobId}:{seq}` (see queue/jobindex.py)."""
        return f"{self.prefix}:x:list:{client_id}:{queue}"

    def job_index_by(self, client_id: str, queue: QueueName, field: str, value: str) -> str:
        """The same index narrowed to one `userId` or `type` (`field` is `user` or `type`)."""
        return f"{self.prefix}:x:list:{client_id}:{queue}:{field}:{value}"

    def job_index_seq(self, client_id: str) -> str:
        """One client's index sequence: every index entry carries the next number, so a
        listing can leave out what was created after its first page (same slot as
        `job_index`)."""
        return f"{self.prefix}:x:list:{client_id}:seq"

    def cursor_secret(self) -> str:
        """The HMAC key of GET /jobs cursors, shared by every API process (any slot)."""
        return f"{self.prefix}:x:list-cursor-key"

    # --- clients, API keys and limits (see the module docstring for their slots) ---
    def clients(self) -> str:
        """Every client id, scored by creation time in ms (a sorted set)."""
        return f"{self.prefix}:x:clients"

    def client(self, client_id: str) -> str:
        """One client's record: name, createdAt and limits (a hash)."""
        return f"{self.prefix}:x:client:{client_id}"

    def client_keys(self, client_id: str) -> str:
        """One client's live key ids -> creation time in ms (a hash)."""
        return f"{self.prefix}:x:client-keys:{client_id}"

    def api_key(self, key_id: str) -> str:
        """One live API key by its id: the SHA-256 of the whole key and its client (a hash)."""
        return f"{self.prefix}:x:apikey:{key_id}"

    def rate_bucket(self, client_id: str) -> str:
        """A client's token bucket (a hash: tokens, last refill in ms), alone in its slot."""
        return f"{self.prefix}:x:bucket:{client_id}"

    def recipient_window(self, client_id: str, user_id: str) -> str:
        """The notifications one client created for one user in the last hour (a sorted
        set scored by time in ms)."""
        return f"{self.prefix}:x:recipient:{client_id}:{user_id}"

    def workers(self) -> str:
        """Heartbeats of live worker processes (a hash: worker id -> JSON)."""
        return f"{self.prefix}:x:workers"

    def cancel_request(self, job_id: str) -> str:
        """A job's cancel flag: set when a client cancels an active report (its processor
        stops at the next progress step) and on a job canceled before it ran (a worker
        still running a stalled copy of it then never sends). Kept as long as the job.

        Slot: with the job's own queue keys (the snapshot script and the cancel script
        read it together with the job hash); a partitioned queue keeps it in the job's
        partition, not in a per-client slot.
        """
        return f"{self.prefix}:x:cancel:{job_id}"

    # Schedules. BullMQ keeps each scheduler (`{prefix}:{queue}:repeat` and
    # `...:repeat:<scheduleId>`) in its queue's keys; errand keeps the owner and the
    # request here. Slots: a client's record and its set are written in one MULTI, so
    # they must share a slot (the client's own: "schedules ... in slots of their own,
    # by client"); a run's gate script reads the record together with the report's
    # deduplication key, which lives in the queue's slot, so with partitioned queues
    # that gate becomes two steps (claim the dedup key in the queue's slot, then stamp
    # the record) or the record moves to the partition of its runs.
    def schedule(self, client_id: str, schedule_id: str) -> str:
        """One schedule's record (a hash: request, createdAt, lastRunAt, lastJobId)."""
        return f"{self.prefix}:x:schedule:{client_id}:{schedule_id}"

    def schedules(self, client_id: str) -> str:
        """A client's schedule ids, scored by creation time (a sorted set)."""
        return f"{self.prefix}:x:schedules:{client_id}"

    def dead_lettered_total(self) -> str:
        return f"{self.prefix}:x:stats:dead-lettered"


ANONYMOUS_CLIENT = "anonymous"
"""The client every job belongs to when `ERRAND_AUTH=none`."""

DEFAULT_CLIENT_NAME = "default"
"""The client `errand up` makes on its first start."""


def report_dedup_id(client_id: str, user_id: str, report_type: str) -> str:
    """BullMQ deduplication id of an in-flight report: one per client, user and type."""
    return f"report:{client_id}:{user_id}:{report_type}"
