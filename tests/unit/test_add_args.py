"""errand's add-script calls (`queue/addargs.py`) equal what bullmq's own `Scripts.addJob`
sends for the same job: the same script, KEYS and ARGV, byte for byte.

bullmq's side runs its real builder (a `Job`, then `Scripts.addJob`) on a client that
records the EVALSHA instead of sending it; errand's side is `AddArgs.call`. A bullmq
upgrade that moves a key or an argument of the add scripts fails here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
from bullmq import Job, Queue

from errand.jobids import QueueName, new_job_id
from errand.queue.addargs import SCRIPT_KEYS, AddArgs, job_json
from errand.queue.policies import retry_policies
from errand.settings import Settings

NOW_S = 1_700_000_000.5


class EvalshaRecorder:
    """The client bullmq calls its add script on: keeps the EVALSHA arguments."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    async def evalsha(self, *args: Any) -> str:
        self.calls.append(args)
        return ""


@pytest.fixture
def queue(monkeypatch: pytest.MonkeyPatch) -> Iterator[Queue]:
    monkeypatch.setattr(time, "time", lambda: NOW_S)
    yield Queue("notifications", {"connection": "redis://127.0.0.1:1/0", "prefix": "{errand:3}"})


async def bullmq_call(queue: Queue, name: str, data: Any, opts: dict[str, Any]) -> tuple[Any, ...]:
    recorder = EvalshaRecorder()
    await queue.scripts.addJob(Job(queue, name, data, opts), recorder)
    (call,) = recorder.calls
    return tuple(call)


def policy_opts(job_id: str, **extra: Any) -> dict[str, Any]:
    opts: dict[str, Any] = retry_policies(Settings())[QueueName.NOTIFICATIONS].job_options()
    return {**opts, "jobId": job_id, **extra}


@pytest.mark.parametrize(
    ("extra", "script"),
    [
        ({}, "addStandardJob"),
        ({"priority": 5}, "addPrioritizedJob"),
        ({"priority": 1, "delay": 60_000}, "addDelayedJob"),
        ({"deduplication": {"id": "report:c:u-1:activity"}}, "addStandardJob"),
        ({"timestamp": 1_600_000_000_000, "backoff": 500}, "addStandardJob"),
    ],
    ids=["standard", "prioritized", "delayed", "deduplicated", "timestamp-and-int-backoff"],
)
async def test_errands_add_call_is_bullmqs(
    queue: Queue, extra: dict[str, Any], script: str
) -> None:
    job_id = new_job_id(QueueName.NOTIFICATIONS, 3)
    data = {"clientId": "c-1", "type": "welcome", "userId": 'ü-1 "quoted"'}
    opts = policy_opts(job_id, **extra)
    ours, timestamp = AddArgs(queue).call(job_id, "welcome", data, opts)
    theirs = await bullmq_call(queue, "welcome", data, opts)
    assert ours == theirs
    assert ours[0] == queue.scripts.commands[script].sha
    assert ours[1] == len(SCRIPT_KEYS[script])
    assert timestamp == extra.get("timestamp", round(NOW_S * 1000))
    packed_args = msgpack.unpackb(ours[2 + ours[1]])
    assert packed_args[1] == job_id  # the custom id bullmq's script stores the job under


@pytest.mark.parametrize(
    "data",
    [
        {"userId": "".join(chr(c) for c in range(127)), "type": "welcome"},  # orjson's
        {"userId": "del \x7f"},
        {"userId": "ü-€-😀", "k\u2028": "line\u2028separator"},
        {"clientId": "c", "trace": {"traceparent": "00-ab-cd-01"}},
        {"n": 1.5e16, "flag": True, "none": None, "list": [1, "x"]},
        {1: "an int key"},
        {},
    ],
    ids=["ascii-controls-quotes", "del", "non-ascii", "nested", "numbers", "int-key", "empty"],
)
def test_job_data_is_encoded_as_bullmq_encodes_it(data: Any) -> None:
    assert job_json(data) == json.dumps(data, separators=(",", ":"), allow_nan=False)
