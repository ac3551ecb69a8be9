"""FastJob and the argument layouts of BullMQ's worker-side Lua scripts, for the fast engine.

The layouts copy bullmq's `scripts.py` (3.4.4) key for key and argument for
argument, so a job moved by errand's fast loop is the same job, in the same
keys, that Node BullMQ, bull-board and bullmq's own Worker read and write.
"""

from __future__ import annotations

import json
import traceback
from typing import Any

import msgpack
import orjson
from bullmq import Job
from bullmq.backoffs import Backoffs
from bullmq.job import optsDecodeMap
from bullmq.utils import object_to_flat_array

from errand.clock import now_ms
from errand.keys import Keys
from errand.queue.jobhash import attempts_made, attempts_started, int_field, loads, pairs

# The BullMQ scripts the fast engine runs, by bullmq's name for them.
SCRIPTS = {
    "moveToActive": "moveToActive-11.lua",
    "moveToFinished": "moveToFinished-14.lua",
    "moveToDelayed": "moveToDelayed-11.lua",
    "retryJob": "retryJob-11.lua",
    "extendLocks": "extendLocks-1.lua",
    "moveStalledJobsToWait": "moveStalledJobsToWait-9.lua",
}

# Job hash fields that Job.fromJSON reads as integers.
_INT_FIELDS = ("delay", "priority", "timestamp")


def dumps(value: Any) -> str:
    """JSON as bullmq writes it (compact); orjson where it can, the stdlib otherwise."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)


class FastJob(Job):  # type: ignore[misc]  # bullmq is untyped
    """A bullmq `Job` built straight from the flat HGETALL a script returned.

    It skips `Job.__init__` (option validation for jobs that are already stored) but
    sets every attribute `Job.fromJSON` sets, so processors, listeners and bullmq's
    own Job methods (updateProgress, log, updateData, ...) see the usual object.
    """

    fields: dict[str, str]

    @classmethod
    def from_reply(cls, queue: Any, flat: list[Any], job_id: str, token: str) -> FastJob:
        fields = pairs(flat)
        raw_opts = loads(fields.get("opts"), {})
        opts = {optsDecodeMap.get(k, k): v for k, v in raw_opts.items()}
        job = cls.__new__(cls)
        job.fields = fields
        job.queue = queue
        job.backend = queue.backend
        job.queueQualifiedName = queue.qualifiedName
        job.name = fields.get("name")
        job.id = job_id
        job.token = token
        job.data = loads(fields.get("data"), {})
        job.opts = {
            "attempts": 0,
            "delay": 0,
            **opts,
            "backoff": Backoffs.normalize(opts.get("backoff")),
        }
        job.attempts = opts.get("attempts", 1)
        job.progress = loads(fields.get("progress"), 0)
        for name in _INT_FIELDS:
            setattr(job, name, int_field(fields, name))
        job.processedOn = int_field(fields, "processedOn")
        job.finishedOn = int_field(fields, "finishedOn")
        job.attemptsStarted = attempts_started(fields)
        job.attemptsMade = attempts_made(fields)
        job.stalledCounter = int_field(fields, "stc")
        job.failedReason = fields.get("failedReason")
        job.deferredFailure = fields.get("defa")
        job.repeatJobKey = fields.get("rjk")
        job.returnvalue = None
        job.discarded = False
        job.removeOnComplete = opts.get("removeOnComplete", True)
        job.removeOnFail = opts.get("removeOnFail", False)
        job.parentKey = fields.get("parentKey")
        job.parent = loads(fields.get("parent"), None)
        dedup = opts.get("deduplication")
        job.deduplication_id = dedup.get("id") if isinstance(dedup, dict) else None
        job.stacktrace = []
        return job

    def load_stacktrace(self) -> list[str]:
        value = loads(self.fields.get("stacktrace"), [])
        return value if isinstance(value, list) else []


def keep_jobs(should_remove: Any) -> dict[str, Any]:
    """bullmq's getKeepJobs: removeOnComplete/removeOnFail as the scripts' keepJobs."""
    if isinstance(should_remove, bool):
        return {"count": 0} if should_remove else {"count": -1}
    if isinstance(should_remove, int):
        return {"count": should_remove}
    if isinstance(should_remove, dict):
        return should_remove
    return {"count": -1}


class ScriptArgs:
    """Keys and ARGV of moveToActive, moveToFinished, moveToDelayed, retryJob and friends."""

    def __init__(
        self,
        keys: dict[str, str],
        queue_keys: tuple[Keys, str],
        lock_duration_ms: int,
        worker_name: str | None,
    ) -> None:
        self.keys = keys  # bullmq's keys of the queue (one partition), `""` its job prefix
        self.prefix = keys[""]
        # Keys bound to the partition's own prefix (its partition 0), and the queue name.
        self.errand_keys, self.queue = queue_keys
        self.lock_duration_ms = lock_duration_ms
        self.worker_name = worker_name
        k = keys
        base = [
            k[n]
            for n in (
                "wait",
                "active",
                "prioritized",
                "events",
                "stalled",
                "limiter",
                "delayed",
                "paused",
                "meta",
                "pc",
            )
        ]
        self._active_keys = [*base, k["marker"]]  # moveToActive's KEYS, in its order
        self._finish_keys = {
            target: ([*base, k[target]], self.errand_keys.bullmq_metrics(self.queue, target))
            for target in ("completed", "failed")
        }
        self._fetch_opts = self.fetch_opts("")

    def job_key(self, job: FastJob) -> str:
        """The job's hash: bullmq's own `prefix:queue:id` of the partition this runs."""
        return self.prefix + str(job.id)

    def fetch_opts(self, token: str) -> dict[str, Any]:
        opts: dict[str, Any] = {
            "token": token,
            "lockDuration": self.lock_duration_ms,
            "limiter": None,
        }
        if self.worker_name:
            opts["name"] = self.worker_name
        return opts

    def move_to_active(self, token: str) -> tuple[list[str], list[Any]]:
        packed = msgpack.packb(self.fetch_opts(token), use_bin_type=True)
        return self._active_keys, [self.prefix, now_ms(), packed]

    def move_to_finished(
        self,
        job: FastJob,
        token: str,
        target: str,
        value: str,
        fetch_next: bool,
        fields: dict[str, Any] | None = None,
    ) -> tuple[list[str], list[Any]]:
        """moveToFinished-14: `target` is completed (value: JSON) or failed (value: reason)."""
        base, metrics_key = self._finish_keys[target]
        keys = [*base, self.job_key(job), metrics_key, self.keys["marker"]]
        remove = job.opts.get(
            "removeOnComplete" if target == "completed" else "removeOnFail", False
        )
        opts = {
            "token": token,
            "keepJobs": keep_jobs(remove),
            "limiter": None,
            "lockDuration": self.lock_duration_ms,
            "attempts": job.attempts,
            "attemptsMade": job.attemptsMade,
            "maxMetricsSize": "",
            "fpof": job.opts.get("failParentOnFailure", False),
            "cpof": job.opts.get("continueParentOnFailure", False),
            "idof": job.opts.get("ignoreDependencyOnFailure", False),
            "rdof": job.opts.get("removeDependencyOnFailure", False),
        }
        if self.worker_name:
            opts["name"] = self.worker_name
        prop = "returnvalue" if target == "completed" else "failedReason"
        args = [
            job.id,
            now_ms(),
            prop,
            value or "",
            target,
            "1" if fetch_next else "",
            self.prefix,
            msgpack.packb(opts, use_bin_type=True),
        ]
        if fields:
            args.append(msgpack.packb(object_to_flat_array(fields), use_bin_type=True))
        return keys, args

    def move_to_delayed(
        self, job: FastJob, token: str, delay_ms: int, fields: dict[str, Any], fetch_next: bool
    ) -> tuple[list[str], list[Any]]:
        """moveToDelayed-11, as Job.moveToFailed calls it for a retry with backoff."""
        k = self.keys
        keys = [
            k["marker"],
            k["active"],
            k["prioritized"],
            k["delayed"],
            self.job_key(job),
            k["events"],
            k["meta"],
            k["stalled"],
            k["wait"],
            k["limiter"],
            k["pc"],
        ]
        args: list[Any] = [
            self.prefix,
            str(now_ms()),
            job.id,
            token,
            delay_ms,
            "0",
            msgpack.packb(object_to_flat_array(fields), use_bin_type=True),
            "1" if fetch_next else "0",
        ]
        if fetch_next:
            args.append(msgpack.packb(self.fetch_opts(token), use_bin_type=True))
        return keys, args

    def retry_job(
        self, job: FastJob, token: str, fields: dict[str, Any]
    ) -> tuple[list[str], list[Any]]:
        """retryJob-11, as Job.moveToFailed calls it for a retry without delay."""
        k = self.keys
        keys = [
            k["active"],
            k["wait"],
            k["paused"],
            self.job_key(job),
            k["meta"],
            k["events"],
            k["delayed"],
            k["prioritized"],
            k["pc"],
            k["marker"],
            k["stalled"],
        ]
        push = "RPUSH" if job.opts.get("lifo") else "LPUSH"
        args = [
            self.prefix,
            now_ms(),
            push,
            job.id,
            token,
            msgpack.packb(object_to_flat_array(fields), use_bin_type=True),
        ]
        return keys, args

    def extend_locks(self, job_ids: list[str], tokens: list[str]) -> tuple[list[str], list[Any]]:
        return [self.keys["stalled"]], [
            self.prefix,
            msgpack.packb(tokens, use_bin_type=True),
            msgpack.packb(job_ids, use_bin_type=True),
            self.lock_duration_ms,
        ]

    def move_stalled(self, max_stalled: int, interval_ms: int) -> tuple[list[str], list[Any]]:
        k = self.keys
        keys = [
            k[n]
            for n in (
                "stalled",
                "wait",
                "active",
                "stalled-check",
                "meta",
                "paused",
                "marker",
                "events",
                "repeat",
            )
        ]
        return keys, [max_stalled, self.prefix, now_ms(), interval_ms]


def failure_fields(job: FastJob, err: BaseException) -> dict[str, Any]:
    """failedReason and the grown stacktrace, as Job.moveToFailed writes them."""
    trace = job.load_stacktrace()
    trace.append("".join(traceback.format_exception(err)))
    limit = job.opts.get("stackTraceLimit")
    if limit == 0:
        trace = []
    elif limit:
        trace = trace[-limit:]
    job.stacktrace = trace
    return {"failedReason": str(err), "stacktrace": dumps(trace)}
