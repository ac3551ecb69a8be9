"""Property test: report deduplication and Idempotency-Key under random concurrent interleavings.

Hypothesis draws programs of steps. A step is either a batch of requests sent all at once
from a thread pool (random route, user, report type, Idempotency-Key and body) or a drain
(a worker runs every waiting job to completion). After each step the replies must obey
API.md, checked against a small model:
- a key used before with the same body replays the first answer byte for byte; with
  another body it is a 422; a key first seen in the batch has one winner, every other
  request with it is a replay, a 409 (still running) or a 422 (other body);
- a report for a user and type in flight is the in-flight job (`deduplicated: true`);
  one batch never creates two jobs for one user and type;
- nothing else is created: the queues hold exactly the jobs the replies name.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import hypothesis
import orjson
from hypothesis import HealthCheck
from hypothesis import strategies as st

from errand.engine.runner import WorkerProcess
from errand.jobids import QueueName
from support.stack import Stack
from support.waiting import wait_for

KINDS = ("welcome", "order-confirmed")


@dataclass(frozen=True)
class Req:
    route: str  # "reports" or "notifications"
    user: int
    kind: int
    key: int | None


requests_st = st.builds(
    Req,
    route=st.sampled_from(["reports", "notifications"]),
    user=st.integers(0, 2),
    kind=st.integers(0, 1),
    key=st.none() | st.integers(0, 2),
)
program_st = st.lists(
    st.one_of(st.lists(requests_st, min_size=1, max_size=8), st.just("drain")),
    min_size=1,
    max_size=6,
)


@dataclass
class Model:
    salt: str
    recorded: dict[tuple[str, str], tuple[bytes, bytes, int]] = field(default_factory=dict)
    in_flight: dict[tuple[int, int], str] = field(default_factory=dict)
    job_ids: set[str] = field(default_factory=set)

    def body(self, req: Req) -> dict[str, Any]:
        user = f"{self.salt}-u{req.user}"
        if req.route == "reports":
            return {"userId": user, "reportType": f"t{req.kind}"}
        return {"type": KINDS[req.kind], "userId": user}

    def key(self, req: Req) -> str | None:
        return None if req.key is None else f"{self.salt}-k{req.key}"


def send(http: httpx.Client, model: Model, req: Req) -> httpx.Response:
    key = model.key(req)
    headers = {"Idempotency-Key": key} if key else {}
    return http.post(
        f"/{req.route}",
        content=orjson.dumps(model.body(req)),
        headers={**headers, "content-type": "application/json"},
    )


def fingerprint(reply: httpx.Response) -> bytes:
    return reply.content + reply.headers.get("location", "").encode()


def check_keys(model: Model, batch: list[Req], replies: list[httpx.Response]) -> None:
    by_key: dict[tuple[str, str], list[tuple[Req, httpx.Response]]] = defaultdict(list)
    for req, reply in zip(batch, replies, strict=True):
        key = model.key(req)
        if key is not None:
            by_key[(req.route, key)].append((req, reply))
    for scoped, pairs in by_key.items():
        known = model.recorded.get(scoped)
        if known is not None:
            body, answer, status = known
            for req, reply in pairs:
                if orjson.dumps(model.body(req), option=orjson.OPT_SORT_KEYS) == body:
                    assert (reply.status_code, fingerprint(reply)) == (status, answer)
                else:
                    assert reply.status_code == 422, reply.text
            continue
        winners = {fingerprint(r) for _, r in pairs if r.status_code == 202}
        assert len(winners) == 1, f"one key, {len(winners)} different answers"
        winner_bodies = {
            orjson.dumps(model.body(q), option=orjson.OPT_SORT_KEYS)
            for q, r in pairs
            if r.status_code == 202
        }
        assert len(winner_bodies) == 1
        (body,) = winner_bodies
        for req, reply in pairs:
            same = orjson.dumps(model.body(req), option=orjson.OPT_SORT_KEYS) == body
            allowed = {202, 409} if same else {409, 422}
            assert reply.status_code in allowed, (req, reply.status_code, reply.text)
        model.recorded[scoped] = (body, winners.pop(), 202)


def check_dedup(
    model: Model, batch: list[Req], replies: list[httpx.Response], replayed: set[int]
) -> None:
    ids: dict[tuple[int, int], set[str]] = defaultdict(set)
    for n, (req, reply) in enumerate(zip(batch, replies, strict=True)):
        if reply.status_code != 202:
            continue
        job_id = reply.json()["jobId"]
        model.job_ids.add(job_id)
        if req.route != "reports" or n in replayed:
            continue
        ids[(req.user, req.kind)].add(job_id)
    for user_kind, seen in ids.items():
        assert len(seen) == 1, f"{user_kind}: one batch created {len(seen)} report jobs"
        (job_id,) = seen
        before = model.in_flight.get(user_kind)
        assert before in (None, job_id), "a report in flight must be deduplicated"
        model.in_flight[user_kind] = job_id


async def drain(stack: Stack) -> None:
    worker = WorkerProcess(stack.settings, [QueueName.REPORTS, QueueName.NOTIFICATIONS])
    await worker.start()
    try:

        async def busy() -> int:
            total = 0
            for queue in (QueueName.REPORTS, QueueName.NOTIFICATIONS):
                counts = await _counts(stack, queue)
                total += sum(counts[s] for s in ("waiting", "prioritized", "active", "delayed"))
            return total

        await wait_for(busy, lambda n: n == 0, timeout_s=30, what="queues drained")
    finally:
        await worker.stop()


async def _counts(stack: Stack, queue: QueueName) -> dict[str, int]:
    keys, redis = stack.keys, stack.redis
    names = ("waiting", "prioritized", "active", "delayed", "completed", "failed")
    totals = dict.fromkeys(names, 0)
    for p in range(keys.partitions):
        async with redis.pipeline(transaction=False) as pipe:
            pipe.llen(keys.queue(queue, "wait", p))
            pipe.zcard(keys.queue(queue, "prioritized", p))
            pipe.llen(keys.queue(queue, "active", p))
            pipe.zcard(keys.queue(queue, "delayed", p))
            pipe.zcard(keys.queue(queue, "completed", p))
            pipe.zcard(keys.queue(queue, "failed", p))
            values = await pipe.execute()
        for name, value in zip(names, values, strict=True):
            totals[name] += int(value)
    return totals


async def total_jobs(stack: Stack) -> int:
    total = 0
    for queue in (QueueName.REPORTS, QueueName.NOTIFICATIONS):
        total += sum((await _counts(stack, queue)).values())
    return total


async def test_dedup_and_idempotency_keys_hold_under_random_interleavings(api: Stack) -> None:
    loop = asyncio.get_running_loop()
    seen: Counter[str] = Counter()

    def on_loop(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(60)

    def run_program(program: list[Any]) -> None:
        model = Model(uuid.uuid4().hex[:10])
        jobs_before = on_loop(total_jobs(api))
        with (
            httpx.Client(base_url=api.base_url, timeout=20, auth=api.http.auth) as http,
            ThreadPoolExecutor(max_workers=8) as pool,
        ):
            for step in program:
                if step == "drain":
                    on_loop(drain(api))
                    model.in_flight.clear()
                    continue
                known = {
                    n
                    for n, req in enumerate(step)
                    if (k := model.key(req)) is not None and (req.route, k) in model.recorded
                }
                replies = list(pool.map(lambda req: send(http, model, req), step))
                assert all(r.status_code in (202, 409, 422) for r in replies), [
                    r.text for r in replies
                ]
                seen.update(_outcome(r) for r in replies)
                check_keys(model, step, replies)
                keyed_new = _replays_within_batch(model, step, replies)
                check_dedup(model, step, replies, known | keyed_new)
        assert on_loop(total_jobs(api)) - jobs_before == len(model.job_ids)

    @hypothesis.settings(
        max_examples=25,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(program=program_st)
    def property_holds(program: list[Any]) -> None:
        run_program(program)

    await asyncio.to_thread(property_holds)
    print(f"\n[idempotency] outcomes over all examples: {dict(seen)}")
    assert seen["deduplicated"] and seen["409"] + seen["422"] > 0


def _outcome(reply: httpx.Response) -> str:
    if reply.status_code != 202:
        return str(reply.status_code)
    return "deduplicated" if reply.json().get("deduplicated") else "202"


def _replays_within_batch(
    model: Model, batch: list[Req], replies: list[httpx.Response]
) -> set[int]:
    """Indexes of keyed 202s that replay another request's answer in the same batch."""
    first: dict[tuple[str, str], int] = {}
    replays = set()
    for n, (req, reply) in enumerate(zip(batch, replies, strict=True)):
        key = model.key(req)
        if key is None or reply.status_code != 202:
            continue
        if (req.route, key) in first:
            replays.add(n)
        else:
            first[(req.route, key)] = n
    return replays
