"""The fast engine's KEYS/ARGV for each BullMQ script equal what bullmq's own `Scripts` builds.

errand's fast engine (workers/fastjob.py) writes the arguments of BullMQ's Lua scripts
itself. These tests build the same call both ways for the same job and options: errand's
through `ScriptArgs`, bullmq's through the `Scripts` object of the same worker, whose
registered scripts are swapped for recorders where its builder also sends the call. A
bullmq upgrade that moves a key or an argument fails here, not in production.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from importlib.metadata import distribution, version
from types import SimpleNamespace
from typing import Any

import msgpack
import pytest
import redis.asyncio as aioredis
from bullmq import Job, Worker
from bullmq.job_scheduler import JobScheduler
from bullmq.redis_connection import SCRIPT_DEFINITIONS

from errand.engine.fastjob import FastJob, dumps, failure_fields
from errand.engine.fastloop import SCRIPTS, FastWorker
from errand.engine.scheduled import schedule_next_run
from errand.pins import PINNED

NOW_S = 1_700_000_000.5  # exact in binary, so both sides read the same millisecond
TOKEN = "worker-1:3"
LOCK_MS = 45_000
Call = tuple[list[str], list[Any]]


class Recorder:
    """Stands in for a registered script: records KEYS and ARGV, answers "nothing to do"."""

    def __init__(self) -> None:
        self.calls: list[Call] = []

    def __call__(self, keys: list[str], args: list[Any], client: Any = None) -> Recorder:
        self.calls.append((list(keys), list(args)))
        return self

    def __await__(self) -> Generator[Any, None, None]:
        return None
        yield  # an awaitable that is done at once, for the callers that await the script


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time", lambda: NOW_S)  # bullmq's clock
    monkeypatch.setattr(time, "time_ns", lambda: int(NOW_S * 1e9))  # errand's clock seam


@pytest.fixture
def worker(frozen_clock: None) -> Iterator[FastWorker]:
    """A FastWorker that never connects: errand's ScriptArgs and bullmq's Scripts, same keys."""
    client = aioredis.Redis(host="127.0.0.1", port=1, decode_responses=True)
    opts = {"connection": "redis://127.0.0.1:1/0", "prefix": "{errand}", "lockDuration": LOCK_MS}
    fast = FastWorker("notifications", None, opts, client)
    fast.scripts.commands = {name: Recorder() for name in SCRIPT_DEFINITIONS}
    yield fast


def recorded(fast: FastWorker, script: str) -> Call:
    calls: list[Call] = fast.scripts.commands[script].calls
    assert len(calls) == 1, f"bullmq sent {script} {len(calls)} times"
    return calls[0]


def make_job(fast: FastWorker, **opts: Any) -> FastJob:
    """A job as moveToActive hands it over: hash fields, then errand's FastJob."""
    job_opts = {"attempts": 4, "backoff": {"type": "exponential", "delay": 1000}, **opts}
    fields = {
        "name": "welcome",
        "data": dumps({"to": "ada@example.com"}),
        "opts": dumps(job_opts),
        "timestamp": "1699999990000",
        "ats": "2",
        "atm": "1",
    }
    flat = [item for pair in fields.items() for item in pair]
    return FastJob.from_reply(fast, flat, "ntf_0123456789abcdef0123456789abcdef", TOKEN)


def on_the_wire(call: Call) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV as Redis receives them, msgpack arguments unpacked so a diff reads."""
    keys, args = call
    wire: list[Any] = []
    for arg in args:
        if isinstance(arg, bytes):
            wire.append(("msgpack", msgpack.unpackb(arg)))
        elif isinstance(arg, str | int) and not isinstance(arg, bool):
            wire.append(str(arg))
        else:
            raise TypeError(f"{arg!r} is not an argument Redis takes as it is")
    return list(keys), wire


def assert_same_call(script: str, errand: Call, bullmq: Call) -> None:
    (our_keys, our_args), (their_keys, their_args) = on_the_wire(errand), on_the_wire(bullmq)
    assert our_keys == their_keys, f"{script}: errand's KEYS differ from bullmq's"
    assert our_args == their_args, f"{script}: errand's ARGV differ from bullmq's"
    keys_in_name = int(SCRIPTS[script].removesuffix(".lua").rsplit("-", 1)[1])
    assert len(errand[0]) == keys_in_name, f"{SCRIPTS[script]} takes {keys_in_name} keys"


async def test_move_to_active(worker: FastWorker) -> None:
    await worker.scripts.moveToActive(TOKEN, worker.opts)
    ours = worker.args.move_to_active(TOKEN)
    assert_same_call("moveToActive", ours, recorded(worker, "moveToActive"))


@pytest.mark.parametrize("remove", [True, False, 100, {"age": 3600}, {"age": 60, "count": 5}])
@pytest.mark.parametrize("fetch_next", [True, False])
def test_move_to_completed(worker: FastWorker, remove: Any, fetch_next: bool) -> None:
    job = make_job(worker, removeOnComplete=remove)
    result = {"sent": True, "messageId": "<m1@errand>"}
    ours = worker.args.move_to_finished(job, TOKEN, "completed", dumps(result), fetch_next)
    theirs = worker.scripts.moveToCompletedArgs(
        job, result, job.opts.get("removeOnComplete", False), TOKEN, fetch_next
    )
    assert_same_call("moveToFinished", ours, theirs)


@pytest.mark.parametrize("remove", [False, {"age": 86400}])
@pytest.mark.parametrize("fetch_next", [True, False])
def test_move_to_failed(worker: FastWorker, remove: Any, fetch_next: bool) -> None:
    job = make_job(worker, removeOnFail=remove, failParentOnFailure=True)
    fields = failure_fields(job, RuntimeError("SMTP said 451"))
    reason = fields["failedReason"]
    ours = worker.args.move_to_finished(job, TOKEN, "failed", reason, fetch_next, fields)
    theirs = worker.scripts.moveToFailedArgs(
        job, reason, job.opts.get("removeOnFail", False), TOKEN, fetch_next, fields
    )
    assert_same_call("moveToFinished", ours, theirs)


@pytest.mark.parametrize("fetch_next", [True, False])
def test_move_to_delayed(worker: FastWorker, fetch_next: bool) -> None:
    # As Job.moveToFailed calls it for a retry with a backoff delay.
    job = make_job(worker)
    fields = failure_fields(job, RuntimeError("timeout"))
    ours = worker.args.move_to_delayed(job, TOKEN, 2000, fields, fetch_next)
    opts = {"fieldsToUpdate": fields, "fetchNext": fetch_next, "workerOpts": worker.opts}
    theirs = worker.scripts.moveToDelayedArgs(job.id, int(NOW_S * 1000), TOKEN, 2000, opts)
    assert_same_call("moveToDelayed", ours, theirs)


@pytest.mark.parametrize("lifo", [False, True])
def test_retry_job(worker: FastWorker, lifo: bool) -> None:
    # As Job.moveToFailed calls it for a retry without delay.
    job = make_job(worker, lifo=lifo)
    fields = failure_fields(job, RuntimeError("connection reset"))
    ours = worker.args.retry_job(job, TOKEN, fields)
    theirs = worker.scripts.retryJobArgs(job.id, lifo, TOKEN, {"fieldsToUpdate": fields})
    assert_same_call("retryJob", ours, theirs)


def test_extend_locks(worker: FastWorker) -> None:
    ids, tokens = ["ntf_a", "ntf_b"], [TOKEN, "worker-1:4"]
    worker.scripts.extendJobLocks(ids, tokens, LOCK_MS)
    ours = worker.args.extend_locks(ids, tokens)
    assert_same_call("extendLocks", ours, recorded(worker, "extendLocks"))


def test_move_stalled_jobs_to_wait(worker: FastWorker) -> None:
    worker.scripts.moveStalledJobsToWait(1, 30_000)
    ours = worker.args.move_stalled(1, 30_000)
    assert_same_call("moveStalledJobsToWait", ours, recorded(worker, "moveStalledJobsToWait"))


async def test_a_worker_name_only_adds_the_name_the_scripts_read(worker: FastWorker) -> None:
    # Node BullMQ passes the worker's name in the packed opts (bullmq-python does not);
    # moveToActive, moveToFinished and moveToDelayed record it on the job.
    worker.args.worker_name = "errand-w1"
    await worker.scripts.moveToActive(TOKEN, worker.opts)
    job = make_job(worker)
    ours = {
        "moveToActive": worker.args.move_to_active(TOKEN)[1][2],
        "moveToFinished": worker.args.move_to_finished(job, TOKEN, "completed", "{}", True)[1][7],
    }
    theirs = {
        "moveToActive": recorded(worker, "moveToActive")[1][2],
        "moveToFinished": worker.scripts.moveToCompletedArgs(job, {}, False, TOKEN, True)[1][7],
    }
    for script, packed in ours.items():
        opts = msgpack.unpackb(packed)
        assert opts.pop("name") == "errand-w1"
        assert opts == msgpack.unpackb(theirs[script])
        assert "opts['name']" in worker._lua[script].script


def test_the_fast_engine_runs_the_installed_bullmq_scripts(worker: FastWorker) -> None:
    assert version("bullmq") == PINNED["bullmq"][0]
    bullmq = distribution("bullmq")
    for name, filename in SCRIPTS.items():
        assert SCRIPT_DEFINITIONS[name] == filename, f"bullmq runs {name} from another file"
        path = bullmq.locate_file(f"bullmq/commands/{filename}")
        assert worker._lua[name].script == path.read_text(), f"{filename} is not bullmq's"


@pytest.mark.parametrize(
    "repeat",
    [
        {"every": 1000, "offset": 250, "count": 3},
        {"pattern": "30 9 * * *", "tz": "Asia/Tokyo", "count": 7},
    ],
)
async def test_a_schedules_next_run_is_made_as_bullmqs_worker_makes_it(
    worker: FastWorker, repeat: dict[str, Any]
) -> None:
    # bullmq's Worker upserts the scheduler of every job it takes that carries one (`rjk`);
    # the fast engine runs the same code on its FastJob: same updateJobScheduler call.
    run_id = "repeat:sch_ntf_0123456789abcdef0123456789abcdef:1699999990000"
    job_opts = {
        "attempts": 4,
        "backoff": {"type": "exponential", "delay": 1000},
        "priority": 5,
        "de": {"id": "report:anonymous:u-1:activity"},
        "removeOnComplete": {"age": 86400},
        "repeat": repeat,
        "prevMillis": 1699999990000,
        "repeatJobKey": "sch_ntf_0123456789abcdef0123456789abcdef",
    }
    fields = {
        "name": "welcome",
        "data": dumps({"clientId": "anonymous", "type": "welcome", "scheduleId": "sch_ntf_x"}),
        "opts": dumps(job_opts),
        "timestamp": "1699999980000",
        "delay": "10000",
        "priority": "5",
        "rjk": "sch_ntf_0123456789abcdef0123456789abcdef",
        "ats": "1",
    }
    flat = [item for pair in fields.items() for item in pair]
    await schedule_next_run(worker, FastJob.from_reply(worker, flat, run_id, TOKEN))
    theirs = Job.fromJSON(worker, fields, run_id)
    assert theirs.repeatJobKey == fields["rjk"]
    await Worker._scheduleNextIteration(SimpleNamespace(jobScheduler=JobScheduler(worker)), theirs)
    calls = worker.scripts.commands["updateJobScheduler"].calls
    assert len(calls) == 2, "each side sends updateJobScheduler once"
    ours_wire, theirs_wire = on_the_wire(calls[0]), on_the_wire(calls[1])
    assert ours_wire == theirs_wire
    assert len(calls[0][0]) == int(SCRIPT_DEFINITIONS["updateJobScheduler"].split("-")[1][:-4])
    assert theirs_wire[1][-1] == run_id  # the producer: only the taker of this run makes the next
