"""Every Redis key, queue name and job-id shape errand uses; no key string anywhere else.

BullMQ owns the keys under `{prefix}:{queue}:*`. errand's own keys live under
`{prefix}:x:*`, so with a hash-tagged prefix such as `{errand}` every key
errand touches shares one Redis Cluster slot (MULTI and Lua stay legal).
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
    """The queue a job id belongs to, or None for an id errand never issued."""
    tag, sep, rest = job_id.partition("_")
    if not sep or len(rest) != 32 or not rest.isalnum():
        return None
    return _TAG_QUEUES.get(tag)


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

    def replica_mark(self, same_slot_as: str) -> str:
        """The strict-durability barrier's mark (redisio/replication.py): written, then
        `WAIT`ed for, right after an add.

        Slot: the one of `same_slot_as` (a key the add wrote), so the mark goes to the
        master that holds the job; it takes that key's hash tag (or, untagged, the whole
        key as its tag, which hashes the same).
        """
        return "{" + hash_tag(same_slot_as) + "}:x:replica-mark"

    def dead_lettered_total(self) -> str:
        return f"{self.prefix}:x:stats:dead-lettered"


def hash_tag(key: str) -> str:
    """What Redis Cluster hashes of `key`: the text of its first non-empty `{...}`, or
    the whole key."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


ANONYMOUS_CLIENT = "anonymous"
"""The client every job belongs to when `ERRAND_AUTH=none`."""


def report_dedup_id(client_id: str, user_id: str, report_type: str) -> str:
    """BullMQ deduplication id of an in-flight report: one per client, user and type."""
    return f"report:{client_id}:{user_id}:{report_type}"
