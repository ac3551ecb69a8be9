"""Every Redis key, queue name, partition and job-id shape errand uses; no key string
anywhere else.

A queue is split into partitions (`ERRAND_PARTITIONS`): partition `p` of queue `q` is
an ordinary BullMQ queue named `q` under the prefix `Keys.partition_prefix(p)`, whose
hash tag is the partition's own, so a Redis Cluster spreads the partitions over its
masters. Partition 0 keeps the configured prefix (`{errand}`), so with one partition
the layout is exactly errand's single-slot one. Every key lives in one of three kinds
of slot, named in each builder's docstring:

- **partition slot** (`partition_prefix(p)`): BullMQ's keys of the partition and
  errand's per-job keys that a script or MULTI reads with the job hash (cancel flag,
  sent ledger and claim, webhook state, report result, outbox count);
- **client slot** (`client_prefix(client)`): one client's keys that must change
  together (Idempotency-Key records, the listing index and its sequence); with one
  partition this is the configured prefix;
- **base slot** (the configured prefix): process-wide keys read on their own (worker
  heartbeats, the cursor key, counters) and the client registry: the client index
  (`clients`), each client's record and key list (`client`, `client_keys`) and the
  key-id index (`api_key`), which admin writes touch together in one MULTI.

A client's rate-limit bucket and recipient windows are each touched alone by their
scripts; they live in the client's slot. A schedule's record lives in the partition
of its runs (a run's gate script reads it with the run's deduplication key), the
client's set of schedules in the client's slot.
"""

from __future__ import annotations

import binascii
import secrets
import zlib
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache


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
CLUSTER_SLOTS = 16384
# A partition's tag is searched so its slot lands within this many slots of its target.
_SLOT_WINDOW = 64


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


def key_slot(key: str) -> int:
    """The Redis Cluster slot of `key` (CRC16/XMODEM of its hash tag, as Redis computes it)."""
    return binascii.crc_hqx(hash_tag(key).encode(), 0) % CLUSTER_SLOTS


def _spread(partition: int) -> float:
    """The van der Corput point of `partition` in [0, 1): the first P points of the
    sequence are spread evenly for any P (exactly, for P a power of two), and partition
    p's point does not depend on P."""
    point, scale = 0.0, 0.5
    while partition:
        point += scale * (partition & 1)
        partition >>= 1
        scale /= 2
    return point


@lru_cache(maxsize=4096)
def partition_prefix(prefix: str, partition: int) -> str:
    """The prefix of partition `partition` under the configured `prefix`.

    Partition 0 is `prefix` itself. Partition p's hash tag is `<tag>:<p>` (or
    `<tag>:<p>.<n>` for the first n that fits) chosen so its slot lies near
    `slot(prefix) + spread(p) * 16384`: a cluster with the usual equal slot ranges per
    master then holds an equal share of the partitions (16 on 3 masters: 6/5/5).
    """
    if partition == 0:
        return prefix
    before, tag, after = _split_tag(prefix)
    target = (key_slot(prefix) + int(_spread(partition) * CLUSTER_SLOTS)) % CLUSTER_SLOTS
    candidate = f"{tag}:{partition}"
    n = 0
    while (key_slot(f"{{{candidate}}}") - target) % CLUSTER_SLOTS >= _SLOT_WINDOW:
        n += 1
        candidate = f"{tag}:{partition}.{n}"
    return f"{before}{{{candidate}}}{after}"


def _split_tag(prefix: str) -> tuple[str, str, str]:
    """(before, tag, after) of a prefix `before{tag}after`; the whole prefix is the tag of
    one without braces."""
    start = prefix.find("{")
    end = prefix.find("}", start + 1) if start >= 0 else -1
    if start < 0 or end <= start + 1:
        return "", prefix, ""
    return prefix[:start], prefix[start + 1 : end], prefix[end + 1 :]


@dataclass(frozen=True, slots=True)
class Keys:
    """Key builder bound to one prefix and a partition count."""

    prefix: str
    partitions: int = 1

    # --- slots ----------------------------------------------------------------
    def partition_prefix(self, partition: int) -> str:
        """The prefix (and hash tag) of one partition: BullMQ's and the per-job keys."""
        return partition_prefix(self.prefix, partition)

    def job_prefix(self, job_id: str) -> str:
        """The prefix of the partition a job id names."""
        return partition_prefix(self.prefix, partition_of(job_id))

    def client_prefix(self, client_id: str) -> str:
        """The slot of one client's own keys. With one partition: the configured prefix
        (errand's single-slot layout); with more, `{<tag>:c:<client>}`, so one client's
        keys stay together and different clients spread over the cluster."""
        if self.partitions <= 1:
            return self.prefix
        before, tag, after = _split_tag(self.prefix)
        safe = client_id.replace("{", "%7B").replace("}", "%7D")
        return f"{before}{{{tag}:c:{safe}}}{after}"

    # --- BullMQ's keys (partition slot; `queue` is any queue name the engine runs) ---
    def queue(self, queue: str, suffix: str, partition: int = 0) -> str:
        return f"{self.partition_prefix(partition)}:{queue}:{suffix}"

    def job(self, queue: str, job_id: str) -> str:
        """A job's hash, in the partition its id names."""
        return f"{self.job_prefix(job_id)}:{queue}:{job_id}"

    def events(self, queue: QueueName, partition: int = 0) -> str:
        return f"{self.partition_prefix(partition)}:{queue}:events"

    def dedup(self, queue: QueueName, dedup_id: str, partition: int = 0) -> str:
        """BullMQ's deduplication key: holds the id of the job in flight for `dedup_id`
        (in the partition of the client and user the dedup id names)."""
        return f"{self.partition_prefix(partition)}:{queue}:de:{dedup_id}"

    def bullmq_metrics(self, queue: str, target: str, partition: int = 0) -> str:
        """BullMQ's metrics of `completed` or `failed` jobs (moveToFinished's KEYS[13])."""
        return f"{self.partition_prefix(partition)}:{queue}:metrics:{target}"

    # --- errand's per-job keys: the job's partition slot ---------------------------
    # Each is read or written in one script or MULTI with the job's hash or with
    # another key of the same job, so it lives where the job id says the job lives.
    def report_result(self, client_id: str, job_id: str) -> str:
        """A generated report, under its owner: another client's lookup misses it.
        Partition slot: written by the worker that completes the job."""
        return f"{self.job_prefix(job_id)}:x:result:{client_id}:{job_id}"

    def sent_ledger(self, job_id: str) -> str:
        """Marks a notification whose email went out (idempotent sending). Partition slot,
        with its send claim (one script takes the claim only if no ledger entry exists)."""
        return f"{self.job_prefix(job_id)}:x:sent:{job_id}"

    def send_claim(self, job_id: str) -> str:
        """Short lock held while one worker sends a job's email (partition slot)."""
        return f"{self.job_prefix(job_id)}:x:sending:{job_id}"

    def outbox(self, partition: int = 0) -> str:
        """The simulated transport's outbox of one partition (a capped list). Partition
        slot: one script appends to it and writes the job's sent ledger."""
        return f"{self.partition_prefix(partition)}:x:outbox"

    def outboxes(self) -> list[str]:
        """The outbox of every partition (a reader merges them)."""
        return [self.outbox(p) for p in range(self.partitions)]

    def outbox_count(self, job_id: str) -> str:
        """How often the simulated transport sent one job's email (partition slot)."""
        return f"{self.job_prefix(job_id)}:x:outbox-count:{job_id}"

    def webhook_state(self, job_id: str) -> str:
        """Delivery status of the webhook of one job (a hash). Partition slot: the
        snapshot script reads it with the job hash."""
        return f"{self.job_prefix(job_id)}:x:webhook:{job_id}"

    def cancel_request(self, job_id: str) -> str:
        """A job's cancel flag: set when a client cancels an active report (its processor
        stops at the next progress step) and on a job canceled before it ran (a worker
        still running a stalled copy of it then never sends). Kept as long as the job.

        Partition slot: the snapshot script and the cancel script read it together with
        the job hash and the partition's BullMQ keys.
        """
        return f"{self.job_prefix(job_id)}:x:cancel:{job_id}"

    # --- one client's keys: the client slot --------------------------------------
    def idempotency(self, client_id: str, route: str, key: str) -> str:
        """An Idempotency-Key record, scoped per client and route. Client slot: it is
        read and written on its own, never with a job's keys (the job may land in any
        partition), and a batch's records are written in one MULTI."""
        return f"{self.client_prefix(client_id)}:x:idem:{client_id}:{route}:{key}"

    # The listing index (GET /jobs). Client slot: one client's sets and its sequence
    # are written by one script and read by another, so they share a slot; the jobs
    # they point at live in their partitions. With one partition the write runs in
    # the same MULTI as BullMQ's add script; on a cluster it runs first, then the add
    # (two steps), which stays correct because a read skips (and, once the entry is
    # old enough, drops) entries whose job hash is absent.
    def job_index(self, client_id: str, queue: QueueName) -> str:
        """One client's jobs of one queue: a sorted set scored by createdAt (ms),
        member `{jobId}:{seq}` (see queue/jobindex.py)."""
        return f"{self.client_prefix(client_id)}:x:list:{client_id}:{queue}"

    def job_index_by(self, client_id: str, queue: QueueName, field: str, value: str) -> str:
        """The same index narrowed to one `userId` or `type` (`field` is `user` or `type`)."""
        return f"{self.client_prefix(client_id)}:x:list:{client_id}:{queue}:{field}:{value}"

    def job_index_seq(self, client_id: str) -> str:
        """One client's index sequence: every index entry carries the next number, so a
        listing can leave out what was created after its first page (client slot)."""
        return f"{self.client_prefix(client_id)}:x:list:{client_id}:seq"

    # --- clients, API keys and limits -------------------------------------------------
    def clients(self) -> str:
        """Every client id, scored by creation time in ms (a sorted set; base slot)."""
        return f"{self.prefix}:x:clients"

    def client(self, client_id: str) -> str:
        """One client's record: name, createdAt and limits (a hash; base slot)."""
        return f"{self.prefix}:x:client:{client_id}"

    def client_keys(self, client_id: str) -> str:
        """One client's live key ids -> creation time in ms (a hash; base slot)."""
        return f"{self.prefix}:x:client-keys:{client_id}"

    def api_key(self, key_id: str) -> str:
        """One live API key by its id: the SHA-256 of the whole key and its client (a
        hash; base slot)."""
        return f"{self.prefix}:x:apikey:{key_id}"

    def rate_bucket(self, client_id: str) -> str:
        """A client's token bucket (a hash: tokens, last refill in ms). Client slot: its
        script touches only this key."""
        return f"{self.client_prefix(client_id)}:x:bucket:{client_id}"

    def recipient_window(self, client_id: str, user_id: str) -> str:
        """The notifications one client created for one user in the last hour (a sorted
        set scored by time in ms). Client slot: its script touches only this key."""
        return f"{self.client_prefix(client_id)}:x:recipient:{client_id}:{user_id}"

    # --- schedules ---------------------------------------------------------------------
    # BullMQ keeps each scheduler (`<prefix p>:<queue>:repeat` and `...:repeat:<id>`) in
    # the keys of the partition its runs go to. errand keeps the owner and the request:
    # the record in that partition too (a run's gate script reads it with the run's
    # deduplication key), the client's set of schedule ids in the client's slot. On a
    # single server both are written in one MULTI; on a cluster in two steps.
    def schedule(self, client_id: str, schedule_id: str) -> str:
        """One schedule's record (a hash: request, createdAt, lastRunAt, lastJobId)."""
        prefix = self.partition_prefix(schedule_partition(schedule_id))
        return f"{prefix}:x:schedule:{client_id}:{schedule_id}"

    def schedules(self, client_id: str) -> str:
        """A client's schedule ids, scored by creation time (a sorted set; client slot)."""
        return f"{self.client_prefix(client_id)}:x:schedules:{client_id}"

    # --- process-wide keys: the base slot -------------------------------------------
    def cursor_secret(self) -> str:
        """The HMAC key of GET /jobs cursors, shared by every API process (base slot)."""
        return f"{self.prefix}:x:list-cursor-key"

    def workers(self) -> str:
        """Heartbeats of live worker processes (a hash: worker id -> JSON; base slot)."""
        return f"{self.prefix}:x:workers"

    def replica_mark(self, same_slot_as: str) -> str:
        """The strict-durability barrier's mark (redisio/replication.py): written, then
        `WAIT`ed for, right after an add.

        Slot: the one of `same_slot_as` (a key the add wrote), so the mark goes to the
        master that holds the job; it takes that key's hash tag (or, untagged, the whole
        key as its tag, which hashes the same).
        """
        return "{" + hash_tag(same_slot_as) + "}:x:replica-mark"

    def dead_lettered_total(self) -> str:
        """Jobs dead-lettered so far (base slot, incremented on its own)."""
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

DEFAULT_CLIENT_NAME = "default"
"""The client `errand up` makes on its first start."""


def report_dedup_id(client_id: str, user_id: str, report_type: str) -> str:
    """BullMQ deduplication id of an in-flight report: one per client, user and type."""
    return f"report:{client_id}:{user_id}:{report_type}"
