"""The `listing` section: batch ingest through POST /notifications/batch and GET /jobs
pages over one client's 100,000 jobs (no worker runs: every job stays waiting).

Ingest: `jobs` notifications in batches of 1,000 over `connections` keep-alive
connections; notifications/s by the wall clock, API and Valkey CPU per notification,
Redis bytes per notification (job hash + index entries) and the index's own share.
Pages: GET /jobs p50/p99 (first pages, cursor pages deep into the list, a `userId`
filter that matches 1 job in 1,000, limit=100, and a status filter).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import harness
import redis as redis_sync
from rawhttp import RawHttp

BATCH = 1000
USERS = 1000


@dataclass
class ListingResult:
    jobs: int = 0
    ingest_rate: float = 0.0
    api_us_per_job: float = 0.0
    valkey_us_per_job: float = 0.0
    bytes_per_job: float = 0.0
    index_bytes_per_job: float = 0.0
    pages: dict[str, list[float]] = field(default_factory=dict)  # name -> [p50, p99] ms
    refused: int = 0


async def _ingest(port: int, jobs: int, connections: int) -> int:
    """POST the batches; the number of items that were not accepted."""
    refused = 0
    failed: list[str] = []
    batches = iter(range(0, jobs, BATCH))

    async def client() -> None:
        nonlocal refused
        http = RawHttp(port)
        try:
            for start in batches:
                items = [
                    {"type": "welcome", "userId": f"user-{i % USERS}"}
                    for i in range(start, min(start + BATCH, jobs))
                ]
                reply = await http.request("POST", "/notifications/batch", {"items": items})
                if reply.status != 200:
                    failed.append(f"{reply.status} {reply.body[:200]!r}")
                    refused += len(items)
                    continue
                results = reply.json()["items"]  # type: ignore[index]
                refused += sum(1 for r in results if r["status"] != 202)
        finally:
            await http.close()

    await asyncio.gather(*(client() for _ in range(connections)))
    if failed:
        print(f"listing: {len(failed)} batches failed, e.g. {failed[0]}", flush=True)
    return refused


async def _timed_pages(port: int, query: dict[str, str], pages: int, follow: bool) -> list[float]:
    """Milliseconds per GET /jobs; `follow` walks the cursors, else repeats the first page."""
    http = RawHttp(port)
    times: list[float] = []
    cursor = None
    try:
        for _ in range(pages):
            params = {**query, **({"cursor": cursor} if cursor else {})}
            started = time.perf_counter()
            reply = await http.request("GET", "/jobs?" + urlencode(params))
            times.append((time.perf_counter() - started) * 1000)
            if reply.status != 200:
                raise RuntimeError(f"GET /jobs answered {reply.status}")
            cursor = reply.json()["nextCursor"] if follow else None  # type: ignore[index]
    finally:
        await http.close()
    return times


def _p50_p99(times: list[float]) -> list[float]:
    ordered = sorted(times)
    return [statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]]


def _index_bytes(client: Any, prefix: str) -> int:
    """The listing index's keys: under the prefix with one partition, else in the
    client's slot, `{<tag>:c:<client>}` (keys.py `client_prefix`)."""
    total = 0
    client_slots = prefix[:-1] + ":c:*}" if prefix.endswith("}") else prefix
    for pattern in {f"{prefix}:x:list:*", f"{client_slots}:x:list:*"}:
        for key in client.scan_iter(match=pattern, count=1000):
            total += int(client.memory_usage(key, samples=0) or 0)
    return total


def listing(
    valkey: Any, api: harness.Service, prefix: str, jobs: int, connections: int
) -> ListingResult:
    """Fill one client's listing through the batch route, then time its pages."""
    client = redis_sync.Redis.from_url(valkey.url)
    result = ListingResult(jobs=jobs)
    memory0 = int(client.info("memory")["used_memory"])
    api0, valkey0 = api.cpu(), harness.cpu_seconds(valkey.process.pid)
    started = time.perf_counter()
    result.refused = asyncio.run(_ingest(api.port, jobs, connections))
    elapsed = time.perf_counter() - started
    result.ingest_rate = jobs / elapsed
    result.api_us_per_job = (api.cpu() - api0) / jobs * 1e6
    result.valkey_us_per_job = (harness.cpu_seconds(valkey.process.pid) - valkey0) / jobs * 1e6
    result.bytes_per_job = (int(client.info("memory")["used_memory"]) - memory0) / jobs
    result.index_bytes_per_job = _index_bytes(client, prefix) / jobs
    cases = {
        "first page, limit 20": ({}, False),
        "cursor pages, limit 20": ({}, True),
        "userId filter (1 in 1,000)": ({"userId": "user-7"}, True),
        "limit 100": ({"limit": "100"}, True),
        "status=waiting,active": ({"status": "waiting,active"}, True),
    }
    for name, (query, follow) in cases.items():
        asyncio.run(_timed_pages(api.port, query, 5, follow))  # warm-up
        result.pages[name] = _p50_p99(asyncio.run(_timed_pages(api.port, query, 200, follow)))
    return result


def listing_lines(result: ListingResult) -> list[str]:
    lines = [
        f"batch ingest: {result.jobs:,} notifications in batches of {BATCH:,}: "
        f"{result.ingest_rate:,.0f} notifications/s ({result.api_us_per_job:.0f} µs API + "
        f"{result.valkey_us_per_job:.0f} µs Valkey CPU each, {result.refused} refused)",
        f"  Redis: {result.bytes_per_job:,.0f} B per waiting notification, of which the "
        f"listing index {result.index_bytes_per_job:,.0f} B",
        f"GET /jobs over {result.jobs:,} jobs of one client        p50 ms    p99 ms",
    ]
    for name, (p50, p99) in result.pages.items():
        lines.append(f"  {name:40}{p50:>8.1f}{p99:>10.1f}")
    return [*lines, ""]
