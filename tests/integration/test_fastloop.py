"""The fast worker engine and its pipelined client, against real Valkey.

The whole integration suite also runs with ERRAND_WORKER_ENGINE=fast; these tests
pin what is specific to the engine: BullMQ's own bookkeeping as other BullMQ
clients read it, stalled-job recovery, permanent failures, shutdown, and that the
pipelined client answers exactly like redis-py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack
import pytest
import redis.asyncio as aioredis
from bullmq import Job, Queue, UnrecoverableError

from errand.engine.fastloop import FastWorker
from errand.redisio.connection import bullmq_connection, connect, is_cluster, warm_up
from errand.redisio.pipelined import WireScript, pipelined_from_url
from errand.redisio.slotclient import slot_client
from errand.settings import Settings
from support.waiting import wait_for

QUEUE = "notifications"


async def engine_clients(settings: Settings) -> tuple[Any, Any, Any]:
    """(the engine's pipelined client, a plain redis-py client, a maker of the workers'
    connection option) for the store: on a cluster the pipelined client is the SlotRedis of the
    queue's slot, as `WorkerProcess.partition_client` makes it, and the plain one
    redis-py's cluster client."""
    url = settings.redis_url
    assert url is not None
    if not is_cluster(settings):
        plain_client = aioredis.from_url(url, decode_responses=True)
        return pipelined_from_url(url, decode_responses=True), plain_client, lambda: url
    plain = connect(settings)
    await warm_up(plain)
    markers = bullmq_connection(settings)  # shared by the workers, as WorkerProcess shares it
    return slot_client(plain, settings.queue_prefix), plain, lambda: markers


@pytest.fixture
async def env(make_settings: Any) -> Any:
    settings: Settings = make_settings()
    client, plain, connection = await engine_clients(settings)
    queue = Queue(QUEUE, {"connection": plain, "prefix": settings.queue_prefix})
    workers: list[FastWorker] = []
    runs: list[asyncio.Future[None]] = []

    def worker(processor: Any, **opts: Any) -> FastWorker:
        w = FastWorker(
            QUEUE,
            processor,
            {
                "connection": connection(),
                "prefix": settings.queue_prefix,
                "concurrency": 4,
                "lockDuration": 1000,
                "stalledInterval": 500,
                "name": "t",
                "autorun": False,
                **opts,
            },
            client,
        )
        workers.append(w)
        return w

    def start(w: FastWorker) -> asyncio.Future[None]:
        runs.append(asyncio.ensure_future(w.run()))
        return runs[-1]

    yield settings, client, plain, queue, worker, start
    for w in workers:
        await w.close(force=True)
    await asyncio.gather(*runs, return_exceptions=True)
    await client.aclose()
    await plain.aclose()
    marker_client = connection()
    if not isinstance(marker_client, str):
        await marker_client.aclose()


def key(settings: Settings, suffix: str) -> str:
    return f"{settings.queue_prefix}:{QUEUE}:{suffix}"


async def test_pipelined_client_answers_like_redis_py(env: Any) -> None:
    settings, client, plain, _, _, _ = env
    k = settings.queue_prefix + ":x:parity"
    for c in (plain, client):
        await c.delete(k + ":h", k + ":z", k + ":s")
        assert await c.set(k + ":s", "v", nx=True, px=5000) is True
        assert await c.set(k + ":s", "v", nx=True, px=5000) is None
        assert await c.hset(k + ":h", mapping={"a": 1, "b": "x"}) == 2
        assert await c.hgetall(k + ":h") == {"a": "1", "b": "x"}
        assert await c.zadd(k + ":z", {"m": 1.5}) == 1
        assert await c.zscore(k + ":z", "m") == 1.5
        assert await c.eval("return {1, 'a', KEYS[1]}", 1, "x") == [1, "a", "x"]
        with pytest.raises(Exception, match="WRONGTYPE"):
            await c.incr(k + ":h")
        async with c.pipeline(transaction=True) as pipe:
            pipe.hgetall(k + ":h")
            pipe.zscore(k + ":z", "m")
            pipe.lpos(k + ":none", "x")
            assert await pipe.execute() == [{"a": "1", "b": "x"}, 1.5, None]
        await c.delete(k + ":h", k + ":z", k + ":s")
    # Many coroutines at once share the one connection; replies match their commands.
    values = await asyncio.gather(*(client.echo(f"n{i}") for i in range(500)))
    assert values == [f"n{i}" for i in range(500)]


async def test_registered_scripts_answer_like_redis_pys(env: Any) -> None:
    """The pipelined client's scripts skip redis-py's AsyncScript path, not its answers."""
    settings, client, plain, _, _, _ = env
    body = "return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}"
    k = settings.queue_prefix + ":x:script"
    wire, pooled = client.register_script(body), plain.register_script(body)
    assert type(wire) is WireScript and wire.sha == pooled.sha
    assert await pooled(keys=[k], args=["a"]) == [k, "a", 1]
    assert await wire(keys=[k], args=["a"]) == [k, "a", 2]
    wire.sha = "0" * 40  # unknown to the server (flushed, or another server): loaded again
    assert await wire(keys=[k], args=[7]) == [k, "7", 3]
    assert wire.sha == pooled.sha
    async with client.pipeline(transaction=True) as pipe:
        await wire(keys=[k], args=["p"], client=pipe)
        assert await pipe.execute() == [[k, "p", 4]]


async def test_cancelled_command_does_not_shift_replies(env: Any) -> None:
    _, client, _, _, _, _ = env
    await client.set("{x}:cancel", "kept")
    doomed = asyncio.ensure_future(client.get("{x}:cancel"))
    await asyncio.sleep(0)
    doomed.cancel()
    assert await client.echo("next") == "next"
    assert await client.get("{x}:cancel") == "kept"


async def test_completed_job_is_bullmq_state_other_clients_read(env: Any) -> None:
    settings, _, plain, queue, worker, start = env
    job = await queue.add(
        "welcome", {"userId": "u1"}, {"jobId": "j1", "attempts": 2, "deduplication": {"id": "d1"}}
    )
    assert await plain.exists(key(settings, "de:d1"))
    w = worker(lambda job, token: asyncio.sleep(0, {"echo": job.data["userId"]}))
    start(w)
    await wait_for(lambda: queue.getJobState("j1"), lambda s: s == "completed", what="completed")
    done = await Job.fromId(queue, job.id)
    assert done.returnvalue == {"echo": "u1"}
    assert done.attemptsMade == 1 and done.finishedOn >= done.processedOn > 0
    assert not await plain.exists(key(settings, "de:d1")), "dedup key removed on finalization"
    assert not await plain.exists(key(settings, "j1:lock"))
    assert await plain.llen(key(settings, "active")) == 0


async def test_unrecoverable_error_skips_the_remaining_attempts(env: Any) -> None:
    _, _, _, queue, worker, start = env
    await queue.add(
        "x", {}, {"jobId": "j2", "attempts": 5, "backoff": {"type": "exponential", "delay": 1000}}
    )

    async def refuse(job: Any, token: str) -> None:
        raise UnrecoverableError("no such mailbox")

    failed: list[Any] = []
    w = worker(refuse)
    w.on("failed", lambda job, err: failed.append((job.id, job.attemptsMade, str(err))))
    start(w)
    await wait_for(lambda: queue.getJobState("j2"), lambda s: s == "failed", what="failed")
    assert failed == [("j2", 1, "no such mailbox")]
    assert (await Job.fromId(queue, "j2")).failedReason == "no such mailbox"


async def test_transient_failure_is_delayed_by_the_jobs_backoff(env: Any) -> None:
    settings, _, plain, queue, worker, start = env
    await queue.add(
        "x", {}, {"jobId": "j3", "attempts": 3, "backoff": {"type": "exponential", "delay": 5000}}
    )

    async def flaky(job: Any, token: str) -> None:
        raise RuntimeError("try later")

    w = worker(flaky)
    start(w)
    await wait_for(lambda: queue.getJobState("j3"), lambda s: s == "delayed", what="delayed")
    score = await plain.zscore(key(settings, "delayed"), "j3")
    job = await Job.fromId(queue, "j3")
    assert job.attemptsMade == 1 and job.failedReason == "try later" and job.stacktrace
    assert 4000 < int(score) // 0x1000 - job.processedOn <= 6000  # 5 s from the first attempt


async def test_stalled_job_is_recovered_and_run_again(env: Any) -> None:
    _, _, _, queue, worker, start = env
    await queue.add("x", {"n": 1}, {"jobId": "j4", "attempts": 2})
    # A worker that died mid-job: moveToActive took it with a short lock, nothing renews it.
    w0 = worker(None)
    keys, args = w0.args.move_to_active("dead-token")
    args[2] = msgpack.packb({"token": "dead-token", "lockDuration": 300, "limiter": None})
    reply = await w0._lua["moveToActive"](keys, args)
    assert reply[1] == "j4"
    runs: list[int] = []

    async def record(job: Any, token: str) -> str:
        runs.append(job.attemptsStarted)
        return "ok"

    w = worker(record)
    stalled: list[str] = []
    w.on("stalled", lambda job_id, prev: stalled.append(job_id))
    start(w)
    await wait_for(
        lambda: queue.getJobState("j4"), lambda s: s == "completed", timeout_s=10, what="recovered"
    )
    assert stalled == ["j4"] and runs == [2]


async def test_graceful_close_finishes_the_active_job(env: Any) -> None:
    _, _, _, queue, worker, start = env
    await queue.add("x", {}, {"jobId": "j5"})
    started = asyncio.Event()

    async def slow(job: Any, token: str) -> str:
        started.set()
        await asyncio.sleep(0.3)
        return "done"

    w = worker(slow)
    run = start(w)
    await asyncio.wait_for(started.wait(), 5)
    assert len(w.jobs) == 1
    await w.close()
    await run
    assert await queue.getJobState("j5") == "completed"


async def test_close_before_run_starts_nothing(env: Any) -> None:
    _, _, _, queue, worker, _ = env
    await queue.add("x", {}, {"jobId": "j6"})
    w = worker(lambda job, token: asyncio.sleep(0))
    await w.close()
    await w.run()
    assert await queue.getJobState("j6") in ("waiting", "prioritized")


@pytest.mark.parametrize("after_s", [0.002, 0.005, 0.01, 0.05])
async def test_a_worker_closed_just_after_it_started_does_not_wait_out_its_block(
    env: Any, after_s: float
) -> None:
    """Closed while its blocking connection starts up, a worker used to sit out the whole
    block timeout (cancelling BZPOPMIN does not end it); close() now ends it at once."""
    _, _, _, _, worker, start = env
    w = worker(lambda job, token: asyncio.sleep(0), drainDelay=30)
    run = start(w)
    await asyncio.sleep(after_s)  # the moment under test, not a wait for a condition
    await asyncio.wait_for(w.close(), 2)
    await asyncio.wait_for(run, 2)
    assert w.closed and not w.running
