"""End-to-end latency and the cost of waiting for a result (issue 8).

- POST -> worker start: the job's `processedOn` (written by the worker's
  moveToActive) minus the instant the POST was written, one job at a time with an
  idle worker; POST -> long-poll answered: the same jobs, until
  `GET /jobs/{id}?wait=` returns the finished job.
- Waiting strategies, on report jobs of ERRAND_REPORT_SECONDS: long-poll,
  100 ms polling, SSE and a webhook. For each: GET requests per job, and the delay
  between the job's `finishedOn` and the moment the client knows.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis.asyncio as aioredis
from rawhttp import RawHttp

FINAL = ("completed", "failed")


@dataclass
class Percentiles:
    samples: list[float] = field(default_factory=list)

    def pct(self, q: float) -> float:
        if not self.samples:
            return float("nan")
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def p50(self) -> float:
        return self.pct(0.50)

    @property
    def p99(self) -> float:
        return self.pct(0.99)


@dataclass
class WaitResult:
    method: str
    jobs: int = 0
    requests: int = 0
    delays_ms: Percentiles = field(default_factory=Percentiles)
    note: str = ""

    @property
    def requests_per_job(self) -> float:
        return self.requests / self.jobs if self.jobs else float("nan")


async def start_and_longpoll(
    port: int, redis_url: str, prefix: str, n: int
) -> tuple[Percentiles, Percentiles]:
    """(POST -> worker start, POST -> long-poll answered) in ms over n sequential jobs."""
    start, answered = Percentiles(), Percentiles()
    http, poll = RawHttp(port), RawHttp(port)
    client = aioredis.from_url(redis_url, decode_responses=True)
    try:
        for i in range(n):
            posted = await http.request(
                "POST", "/notifications", {"type": "welcome", "userId": f"lat-{i}"}
            )
            job_id = str(posted.json()["jobId"])  # type: ignore[index]
            done = await poll.request("GET", f"/jobs/{job_id}?wait=10")
            answered.samples.append((done.received_at - posted.sent_at) * 1000)
            started = await client.hget(f"{prefix}:notifications:{job_id}", "processedOn")
            if started:
                start.samples.append(int(started) - posted.sent_at * 1000)
            await asyncio.sleep(0.01)
    finally:
        await http.close()
        await poll.close()
        await client.aclose()
    return start, answered


class WebhookReceiver:
    """A loopback HTTP server that notes when each job's webhook arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.decode("latin-1").split("\r\n"):
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                body = await reader.readexactly(length)
                now = time.time()
                job_id = str(orjson.loads(body).get("data", {}).get("jobId", ""))
                self.arrived.setdefault(job_id, now)
                writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        writer.close()


async def _post_report(http: RawHttp, user: str, webhook: str | None = None) -> str:
    body: dict[str, Any] = {"userId": user, "reportType": "bench"}
    if webhook:
        body["webhookUrl"] = webhook
    reply = await http.request("POST", "/reports", body)
    if reply.status != 202:
        raise RuntimeError(f"POST /reports answered {reply.status}: {reply.body[:300]!r}")
    return str(reply.json()["jobId"])  # type: ignore[index]


async def _long_poll(port: int, user: str) -> tuple[str, float, int]:
    http = RawHttp(port)
    try:
        job_id = await _post_report(http, user)
        requests = 0
        while True:
            reply = await http.request("GET", f"/jobs/{job_id}?wait=30")
            requests += 1
            if reply.json()["status"] in FINAL:  # type: ignore[index]
                return job_id, reply.received_at, requests
    finally:
        await http.close()


async def _poll(port: int, user: str, every_s: float = 0.1) -> tuple[str, float, int]:
    http = RawHttp(port)
    try:
        job_id = await _post_report(http, user)
        requests = 0
        while True:
            reply = await http.request("GET", f"/jobs/{job_id}")
            requests += 1
            if reply.json()["status"] in FINAL:  # type: ignore[index]
                return job_id, reply.received_at, requests
            await asyncio.sleep(every_s)
    finally:
        await http.close()


async def _sse(port: int, user: str) -> tuple[str, float, int]:
    http, stream = RawHttp(port), RawHttp(port)
    try:
        job_id = await _post_report(http, user)
        buffer = b""
        async for chunk in stream.stream(f"/jobs/{job_id}/events"):
            buffer += chunk
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                for line in event.split(b"\n"):
                    if line.startswith(b"data:") and orjson.loads(line[5:])["status"] in FINAL:
                        return job_id, time.time(), 1
        raise RuntimeError("the SSE stream ended before the job finished")
    finally:
        await http.close()
        await stream.close()


async def _webhook(
    port: int, user: str, receiver: WebhookReceiver, timeout_s: float
) -> tuple[str, float, int]:
    http = RawHttp(port)
    try:
        job_id = await _post_report(http, user, f"http://127.0.0.1:{receiver.port}/hook")
    finally:
        await http.close()
    deadline = time.monotonic() + timeout_s
    while job_id not in receiver.arrived:
        if time.monotonic() > deadline:
            raise TimeoutError("no webhook")
        await asyncio.sleep(0.002)
    return job_id, receiver.arrived[job_id], 0


async def waiting_strategies(
    port: int, redis_url: str, prefix: str, jobs: int, report_s: float
) -> list[WaitResult]:
    """Each strategy on `jobs` concurrent report jobs; webhook last, n/a if none arrives."""
    client = aioredis.from_url(redis_url, decode_responses=True)
    receiver = WebhookReceiver()
    await receiver.start()
    results = []
    try:
        for method in ("long-poll", "poll 100 ms", "SSE", "webhook"):
            result = WaitResult(method)
            stamp = f"{method.split()[0]}-{time.time_ns()}"

            async def one(
                i: int, method: str = method, stamp: str = stamp
            ) -> tuple[str, float, int]:
                user = f"{stamp}-{i}"
                if method == "long-poll":
                    return await _long_poll(port, user)
                if method == "poll 100 ms":
                    return await _poll(port, user)
                if method == "SSE":
                    return await _sse(port, user)
                return await _webhook(port, user, receiver, report_s * 4 + 10)

            outcomes = await asyncio.gather(*(one(i) for i in range(jobs)), return_exceptions=True)
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    result.note = f"n/a ({type(outcome).__name__}: {outcome})"[:120]
                    continue
                job_id, known_at, requests = outcome
                finished = await client.hget(f"{prefix}:reports:{job_id}", "finishedOn")
                result.jobs += 1
                result.requests += requests
                if finished:
                    result.delays_ms.samples.append(known_at * 1000 - int(finished))
            results.append(result)
    finally:
        await receiver.close()
        await client.aclose()
    return results
