"""The EVALSHA of BullMQ's add scripts, built as bullmq-python's `Scripts.addJob` builds it.

bullmq-python adds a job through a `Job` object (defaults, backoff, parent options), a
coroutine per script call and a fresh key list per call: ~15 µs of an API process per
job, a third of a batch item's cost. `AddArgs` builds the same EVALSHA arguments from
the job's id, name, data and `opts` directly, with the KEYS of each add script made once
per queue partition. `tests/unit/test_script_args.py` compares its calls with bullmq's
own `Scripts.addJob` for standard, prioritized, delayed and deduplicated jobs, so a
bullmq upgrade that changes the layout fails there (bullmq is pinned, `pins.py`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import msgpack
import orjson
from bullmq import Queue
from bullmq.backoffs import Backoffs
from bullmq.job import optsEncodeMap

# json.dumps(data, separators=(",", ":"), allow_nan=False), as bullmq encodes job data,
# without a new encoder per call.
_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=False)

# Each add script's KEYS, as bullmq-python's Scripts.add*Job list them.
SCRIPT_KEYS: Mapping[str, tuple[str, ...]] = {
    "addStandardJob": (
        "wait",
        "paused",
        "meta",
        "id",
        "completed",
        "delayed",
        "active",
        "events",
        "marker",
    ),
    "addPrioritizedJob": (
        "marker",
        "meta",
        "id",
        "prioritized",
        "delayed",
        "completed",
        "active",
        "events",
        "pc",
    ),
    "addDelayedJob": ("marker", "meta", "id", "delayed", "completed", "events"),
}


class AddArgs:
    """The add-script calls of one bullmq `Queue` (one queue partition)."""

    def __init__(self, queue: Queue) -> None:
        scripts = queue.scripts
        self.prefix: str = scripts.keys[""]
        self._heads = {
            name: (scripts.commands[name].sha, len(names), *(scripts.keys[k] for k in names))
            for name, names in SCRIPT_KEYS.items()
        }

    def call(
        self, job_id: str, name: str, data: Any, opts: Mapping[str, Any]
    ) -> tuple[tuple[Any, ...], int]:
        """(EVALSHA's arguments, the job's timestamp in ms) for adding the job: what
        `Scripts.addJob(Job(queue, name, data, opts))` sends (no parent, no repeat)."""
        timestamp = opts["timestamp"] if "timestamp" in opts else round(time.time() * 1000)
        if opts.get("delay"):
            script, last = "addDelayedJob", opts["delay"]
        elif opts.get("priority"):
            script, last = "addPrioritizedJob", opts["priority"]
        else:
            script, last = "addStandardJob", timestamp
        dedup = opts.get("deduplication")
        dedup_id = dedup.get("id") if isinstance(dedup, dict) else None
        packed_args = msgpack.packb(
            [
                self.prefix,
                opts.get("jobId") or job_id,
                name,
                timestamp,
                None,  # parent key
                None,  # parent dependencies key
                None,  # parent
                None,  # repeat job key
                f"{self.prefix}de:{dedup_id}" if dedup_id else None,
            ],
            use_bin_type=True,
        )
        json_data = job_json(data)
        return (*self._heads[script], packed_args, json_data, packed_opts(opts), last), timestamp


def job_json(data: Any) -> str:
    """`json.dumps(data, separators=(",", ":"), allow_nan=False)`, as bullmq encodes job
    data. orjson writes the same bytes for a flat object of strings whose JSON is printable
    ASCII (the stdlib escapes everything else as \\uXXXX, orjson does not): 1.4 µs a job
    instead of 5.5."""
    if type(data) is dict:
        for key, value in data.items():
            if type(key) is not str or type(value) is not str:
                break
        else:
            out = orjson.dumps(data)
            if out.isascii() and b"\x7f" not in out:
                return out.decode()
    return _JSON.encode(data)


def packed_opts(opts: Mapping[str, Any]) -> bytes:
    """The job's `opts` as bullmq stores them: Job's defaults and normalized backoff, keys
    in their short form, msgpack."""
    final: dict[str, Any] = {"attempts": 0, "delay": 0, **opts}
    final["backoff"] = Backoffs.normalize(opts.get("backoff"))
    packed: bytes = msgpack.packb({optsEncodeMap.get(k, k): v for k, v in final.items()})
    return packed
