"""GET /metrics: queue gauges, job counters and histograms, webhooks, emails, HTTP, worker port.

Counters are process-wide (the in-loop worker records into the same registry as the
API), so tests compare before and after; queue gauges are per key prefix, so exact.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from errand.metrics.gauges import QueueGauges
from errand.server.embedded import free_port
from support.processes import errand_env, processes
from support.stack import Stack
from support.waiting import wait_for
from support.webhook_receiver import serve_receiver

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(http: httpx.AsyncClient, url: str = "/metrics") -> Samples:
    reply = await http.get(url)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain")
    return parse(reply.text)


async def settled(stack: Stack, job_id: str, status: str) -> dict[str, Any]:
    async def view() -> dict[str, Any]:
        return (await stack.http.get(f"/jobs/{job_id}")).json()

    return await wait_for(view, lambda v: v["status"] == status, what=f"{job_id} {status}")


async def post(stack: Stack, path: str, body: dict[str, Any]) -> str:
    reply = await stack.http.post(path, json=body)
    assert reply.status_code == 202, reply.text
    return str(reply.json()["jobId"])


@pytest.mark.settings(notify_retries=1)
async def test_jobs_move_the_counters_histograms_and_queue_gauges(stack: Stack) -> None:
    before = await scrape(stack.http)
    report = await post(stack, "/reports", {"userId": "u-m", "reportType": "activity"})
    sent = await post(stack, "/notifications", {"type": "welcome", "userId": "u-m"})
    dead = await post(stack, "/notifications", {"type": "welcome", "userId": "fail-m"})
    await settled(stack, report, "completed")
    await settled(stack, sent, "completed")
    await settled(stack, dead, "failed")
    # The queue gauges are cached for a second: wait until they show the outcome.
    after = await wait_for(
        lambda: scrape(stack.http),
        lambda s: value(s, "errand_jobs", queue="notifications", state="failed") == 1,
        what="gauges caught up",
    )

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("errand_jobs_completed_total", queue="reports") == 1
    assert delta("errand_jobs_completed_total", queue="notifications") == 1
    assert delta("errand_job_attempts_failed_total", queue="notifications") == 2
    assert delta("errand_jobs_retried_total", queue="notifications", trigger="backoff") == 1
    assert delta("errand_jobs_dead_lettered_total", queue="notifications") == 1
    assert delta("errand_emails_sent_total", transport="simulated") == 1
    assert delta("errand_job_processing_seconds_count", queue="reports") == 1
    assert delta("errand_job_processing_seconds_sum", queue="reports") >= 0.3  # report_seconds
    assert delta("errand_job_processing_seconds_count", queue="notifications") == 3
    assert delta("errand_job_wait_seconds_count", queue="notifications") == 2  # first attempts
    assert value(after, "errand_jobs_in_progress", queue="reports") == 0

    # The gauges belong to this test's key prefix alone: exact values.
    assert value(after, "errand_redis_up") == 1
    assert value(after, "errand_jobs", queue="reports", state="completed") == 1
    assert value(after, "errand_jobs", queue="notifications", state="completed") == 1
    assert value(after, "errand_jobs", queue="notifications", state="failed") == 1
    assert value(after, "errand_jobs", queue="notifications", state="waiting") == 0
    assert value(after, "errand_build_info", version="0.1.0") == 1


async def test_waiting_jobs_show_in_the_gauges(stack: Stack) -> None:
    await stack.stop_workers()
    for n in range(3):
        await post(stack, "/reports", {"userId": f"u-w{n}", "reportType": "activity"})
    await post(stack, "/notifications", {"type": "password-reset", "userId": "u-w"})  # prioritized
    samples = await scrape(stack.http)
    assert value(samples, "errand_jobs", queue="reports", state="waiting") == 3
    assert value(samples, "errand_jobs", queue="notifications", state="waiting") == 1
    assert value(samples, "errand_jobs", queue="webhooks", state="waiting") == 0


async def test_http_requests_are_counted_by_route_template_and_status(stack: Stack) -> None:
    before = await scrape(stack.http)
    await stack.http.get("/jobs/rep_" + "0" * 32)  # 404 through a matched route
    await stack.http.get("/jobs/nope")
    await stack.http.get("/no/such/path")
    await stack.http.post(
        "/reports", content=b"{not json", headers={"content-type": "application/json"}
    )
    await stack.http.get("/healthz")
    after = await scrape(stack.http)

    def delta(**labels: str) -> float:
        name = "errand_http_requests_total"
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta(method="GET", route="/jobs/{job_id}", status="404") == 2
    assert delta(method="GET", route="unmatched", status="404") == 1
    assert delta(method="POST", route="/reports", status="400") == 1
    assert delta(method="GET", route="/healthz", status="200") == 1
    assert not any("nope" in str(labels) or "rep_" in str(labels) for _, labels in after), (
        "raw paths must never become label values"
    )
    count = "errand_http_request_duration_seconds_count"
    assert value(after, count, method="GET", route="/healthz") >= 1


@pytest.mark.settings(notify_retries=0)
async def test_a_dlq_retry_is_counted(stack: Stack) -> None:
    job_id = await post(stack, "/notifications", {"type": "welcome", "userId": "fail-r"})
    await settled(stack, job_id, "failed")
    before = await scrape(stack.http)
    reply = await stack.http.post(f"/admin/dlq/{job_id}/retry", headers=stack.admin)
    assert reply.status_code == 202, reply.text
    after = await scrape(stack.http)
    labels = {"queue": "notifications", "trigger": "dlq"}
    assert (
        value(after, "errand_jobs_retried_total", **labels)
        - value(before, "errand_jobs_retried_total", **labels)
        == 1
    )


@contextlib.asynccontextmanager
async def webhook_receiver() -> AsyncIterator[str]:
    """A local endpoint that accepts every POST (the shared test receiver)."""
    async with serve_receiver() as receiver:
        yield receiver.url("/hook")


@pytest.mark.settings(webhook_retries=1)
async def test_webhook_deliveries_are_counted_by_outcome(stack: Stack) -> None:
    before = await scrape(stack.http)
    closed_url = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    async with webhook_receiver() as url:
        ok = await post(
            stack, "/notifications", {"type": "welcome", "userId": "u-hook", "webhookUrl": url}
        )
        bad = await post(
            stack,
            "/notifications",
            {"type": "welcome", "userId": "u-nohook", "webhookUrl": closed_url},
        )

        async def webhook_status(job_id: str) -> str:
            view = (await stack.http.get(f"/notifications/{job_id}")).json()
            return str((view.get("webhook") or {}).get("status"))

        await wait_for(
            lambda: webhook_status(ok), lambda s: s == "delivered", what="webhook delivered"
        )
        await wait_for(
            lambda: webhook_status(bad), lambda s: s == "failed", what="webhook given up"
        )

    async def deltas() -> dict[str, float]:
        after = await scrape(stack.http)
        name = "errand_webhook_deliveries_total"
        return {
            o: value(after, name, outcome=o) - value(before, name, outcome=o)
            for o in ("delivered", "failed", "dead_lettered")
        }

    # The delivery job is counted when BullMQ has recorded its outcome, just after
    # the state the API shows.
    expected = {"delivered": 1, "failed": 1, "dead_lettered": 1}
    await wait_for(deltas, lambda d: d == expected, what="webhook counters")


async def test_queue_counts_are_read_at_most_once_per_ttl() -> None:
    reads = 0

    async def read_counts(queue: Any) -> dict[str, int]:
        nonlocal reads
        reads += 1
        await asyncio.sleep(0.01)
        return {"waiting": 2, "prioritized": 1, "active": 1}

    now = [1000.0]
    gauges = QueueGauges(read_counts, ttl_s=1.0, clock=lambda: now[0])
    bodies = await asyncio.gather(*(gauges.render() for _ in range(20)))
    assert reads == 3  # one read per queue, shared by twenty concurrent scrapes
    samples = parse(bodies[-1].decode())
    assert value(samples, "errand_jobs", queue="reports", state="waiting") == 3
    now[0] += 0.9
    await gauges.render()
    assert reads == 3
    now[0] += 0.2  # the cache is 1.1 s old: the next scrape reads again
    await gauges.render()
    assert reads == 6


async def test_a_scrape_still_answers_when_redis_does_not() -> None:
    async def read_counts(queue: Any) -> dict[str, int]:
        raise ConnectionError("redis is down")

    samples = parse((await QueueGauges(read_counts).render()).decode())
    assert value(samples, "errand_redis_up") == 0
    assert not any(name == "errand_jobs" for name, _ in samples)
    assert value(samples, "errand_build_info", version="0.1.0") == 1


async def test_a_worker_process_serves_its_own_metrics(stack: Stack, tmp_path: Path) -> None:
    await stack.stop_workers()
    port = free_port()
    settings = stack.settings
    env = errand_env(redis_url=settings.redis_url, queue_prefix=settings.queue_prefix)
    with processes(tmp_path) as procs:
        worker = procs.worker(env, "--queues", "reports", "--metrics-port", str(port))
        url = f"http://127.0.0.1:{port}/metrics"
        async with httpx.AsyncClient(timeout=5) as http:

            async def worker_scrape() -> Samples | None:
                assert worker.alive, worker.log()[-3000:]
                with contextlib.suppress(httpx.TransportError):
                    return await scrape(http, url)
                return None

            await wait_for(worker_scrape, what="worker /metrics", timeout_s=30)
            job_id = await post(stack, "/reports", {"userId": "u-wm", "reportType": "activity"})
            await settled(stack, job_id, "completed")
            samples = await wait_for(
                worker_scrape,
                lambda s: (
                    s is not None and value(s, "errand_jobs_completed_total", queue="reports") == 1
                ),
                what="the worker's own completed counter",
            )
        assert samples is not None
        assert value(samples, "errand_job_processing_seconds_count", queue="reports") == 1
        assert value(samples, "process_resident_memory_bytes") > 0
        assert worker.terminate() == 0
