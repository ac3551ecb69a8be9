"""Every Redis key errand uses, and the cluster slot each one shares; no key string
anywhere else (queue names, id shapes and a job's partition are in `jobids.py`).

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
from dataclasses import dataclass
from functools import lru_cache

from errand.jobids import QueueName, partition_of, schedule_partition

CLUSTER_SLOTS = 16384
# A partition's tag is searched so its slot lands within this many slots of its target.
_SLOT_WINDOW = 64


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
