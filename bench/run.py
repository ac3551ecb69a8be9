"""errand's benchmark suite: `python3 run.py bench [--reference] [options]`.

Everything runs on this machine against loopback only, bounded in time and count,
and stops what it started. One table at the end; `--json PATH` keeps the numbers.
Sections (all by default):

  http     wrk (64 connections, 10 s a route) on POST /notifications, POST /reports,
           GET /jobs/{id} against `errand api` (one process per core)
  drain    10,000 notifications (EMAIL_SEND_MS=0) through one errand worker process,
           both engines, and through a bare python `bullmq` Worker with a no-op
           processor, on the same Valkey; Redis bytes per waiting/completed job
  latency  POST -> worker start and POST -> long-poll answered (idle worker);
           waiting for a report by long-poll, 100 ms polling, SSE and webhook
  scheduled  100,000 notifications with a sendAt, all due at the same second: Redis
           bytes per scheduled notification, time to the first send, drain rate
           (compare with the drain section's fast engine)
  listing  100,000 notifications through POST /notifications/batch (batches of
           1,000), then GET /jobs pages over that one client's jobs
  cluster  (off by default: --only cluster) drain on one Valkey with 1 and 16 partitions
           and on Valkey clusters of 1, 2 and 3 masters, per Redis core used (cluster.py);
           --cluster-engine bullmq drains with bullmq's Worker instead of the fast engine
  --reference adds the Node reference (Express + Node BullMQ) on its own Valkey.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness
import redis as redis_sync
from cluster import cluster_section
from drain import DrainResult, drain
from httpload import ensure_wrk, load
from latency import start_and_longpoll, waiting_strategies
from listing import listing
from rawhttp import DEFAULT_HEADERS, RawHttp
from report import Report
from scheduled import scheduled_run
from tables import REPORT_S, ROUTES, print_tables

from errand.settings import Settings

WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
DEFAULT_PARTITIONS = int(Settings.model_fields["partitions"].default)


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="run.py bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--reference", action="store_true", help="also run the Node reference")
    parser.add_argument(
        "--only", default="http,drain,latency,scheduled,listing", help="sections to run"
    )
    parser.add_argument(
        "--due-jobs", type=int, default=100_000, help="notifications due at once (scheduled)"
    )
    parser.add_argument(
        "--due-partitions",
        type=int,
        default=DEFAULT_PARTITIONS,
        help="partitions the due notifications are spread over, by user (scheduled)",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="per HTTP route")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--jobs", type=int, default=10_000, help="notifications per drain")
    parser.add_argument(
        "--rounds", type=int, default=2, help="interleaved drains per contender (the best counts)"
    )
    parser.add_argument("--concurrency", type=int, default=32, help="jobs at once per worker")
    parser.add_argument("--api-workers", type=int, default=0, help="0: one per core")
    parser.add_argument(
        "--auth",
        choices=["keys", "none"],
        default="keys",
        help="ERRAND_AUTH of the API: keys (a client made for the bench) or none",
    )
    parser.add_argument(
        "--rate-limit",
        type=float,
        default=1_000_000,
        help="the bench client's perSecond and burst: high, so the bucket runs but never "
        "refuses; 0 turns the rate limit off",
    )
    parser.add_argument(
        "--one-partition",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the HTTP section also runs an errand API with ERRAND_PARTITIONS=1",
    )
    parser.add_argument(
        "--engine",
        default=str(Settings.model_fields["worker_engine"].default),
        help="worker engine of the latency section's errand worker",
    )
    parser.add_argument(
        "--listing-jobs", type=int, default=100_000, help="notifications the listing section adds"
    )
    parser.add_argument("--cluster-jobs", type=int, default=20_000, help="per cluster drain")
    parser.add_argument("--cluster-workers", type=int, default=2, help="cluster drain workers")
    parser.add_argument(
        "--cluster-engine",
        choices=("fast", "bullmq"),
        default="fast",
        help="ERRAND_WORKER_ENGINE of the cluster drain workers",
    )
    parser.add_argument("--json", type=Path, help="write every number here too")
    return parser.parse_args()


# --- the errand API -----------------------------------------------------------
def start_errand_api(
    valkey_url: str,
    prefix: str,
    workers: int,
    args: argparse.Namespace,
    partitions: int = DEFAULT_PARTITIONS,
) -> harness.Service:
    port = harness.free_port()
    env = harness.errand_env(
        valkey_url,
        prefix,
        ERRAND_PARTITIONS=str(partitions),
        ERRAND_AUTH=args.auth,
        ERRAND_RATE_LIMIT_PER_SECOND=str(args.rate_limit),
        ERRAND_RATE_LIMIT_BURST=str(int(args.rate_limit)),
        ERRAND_WEBHOOK_ALLOW_PRIVATE="true",
        ERRAND_WEBHOOK_SECRET=WEBHOOK_SECRET,
        ERRAND_ADMIN_TOKEN="bench",
        ERRAND_EMAIL_SEND_MS="0",
        ERRAND_REPORT_SECONDS=str(REPORT_S),
    )
    log = harness.scratch_dir("api") / "api.log"
    proc = harness.spawn(
        [harness.PY, "-m", "errand", "api", "--port", str(port), "--workers", str(workers)],
        env,
        log,
    )
    harness.wait_http(f"http://127.0.0.1:{port}/readyz")
    if args.auth == "keys":
        DEFAULT_HEADERS["Authorization"] = f"Bearer {asyncio.run(bench_api_key(port))}"
    return harness.Service("errand api", proc, port, log)


async def bench_api_key(port: int) -> str:
    """A client for the bench, made through the admin route (limits from the environment)."""
    http = RawHttp(port, extra_headers={"Authorization": "Bearer bench"})
    try:
        reply = await http.request("POST", "/admin/clients", {"name": "bench"})
    finally:
        await http.close()
    made = reply.json()
    assert reply.status == 201 and isinstance(made, dict), reply.content
    return str(made["apiKey"])


async def seed_ids(port: int, count: int) -> list[str]:
    """Job ids for GET /jobs/{id}: notifications created through the API itself."""
    ids: list[str] = []

    async def client(k: int) -> None:
        http = RawHttp(port)
        try:
            for i in range(k, count, 8):
                reply = await http.request(
                    "POST", "/notifications", {"type": "welcome", "userId": f"seed-{i}"}
                )
                made = reply.json()
                if reply.status != 202 or not isinstance(made, dict):
                    raise RuntimeError(f"seeding a job id: {reply.status} {made}")
                ids.append(str(made["jobId"]))
        finally:
            await http.close()

    await asyncio.gather(*(client(k) for k in range(8)))
    return ids


def http_section(
    name: str,
    svc: harness.Service,
    valkey_pid: int,
    wrk: str | None,
    args: argparse.Namespace,
    report: Report,
) -> None:
    scratch = harness.scratch_dir("wrk")
    ids = asyncio.run(seed_ids(svc.port, 1000))
    load(wrk, svc.port, "jobs", 1.0, args.connections, scratch, ids)  # warm-up, not counted
    results = []
    for route, label in ROUTES:
        cpu0, valkey0 = svc.cpu(), harness.cpu_seconds(valkey_pid)
        result = load(
            wrk,
            svc.port,
            route,
            args.seconds,
            args.connections,
            scratch,
            ids if route == "jobs" else None,
        )
        if result.requests:
            report.api_cpu_us[f"{name} {label}"] = (svc.cpu() - cpu0) / result.requests * 1e6
            valkey_s = harness.cpu_seconds(valkey_pid) - valkey0
            report.valkey_cpu_us[f"{name} {label}"] = valkey_s / result.requests * 1e6
        say(
            f"{name} {label}: {result.rps:,.0f} req/s, p50 {result.p50_ms:.1f} ms, "
            f"p99 {result.p99_ms:.1f} ms, {result.errors} errors"
        )
        results.append(asdict(result))
    report.http[name] = results
    report.rss[name] = [round(rss, 1) for _, rss, _ in svc.rss()]


# --- drains -------------------------------------------------------------------
DEFAULT_DRAIN = f"errand worker, fast engine, {DEFAULT_PARTITIONS} partitions (default)"


def reference_drain(reference: tuple[Path, Any], args: argparse.Namespace) -> DrainResult:
    """One drain of the Node reference worker on its own Valkey, at errand's concurrency.
    The reference's queue has a fixed name: its Valkey is emptied first, or a round would
    find the last round's jobs completed and time nothing."""
    directory, ref_valkey = reference
    redis_sync.Redis.from_url(ref_valkey.url).flushall()
    result = asyncio.run(
        drain(
            "reference",
            "Node reference worker",
            ref_valkey.url,
            ref_valkey.process.pid,
            args.jobs,
            args.concurrency,
            directory,
        )
    )
    say(
        f"drain reference: {result.rate:,.0f} jobs/s ({result.worker_us_per_job:.0f} µs "
        f"worker + {result.valkey_us_per_job:.0f} µs Valkey CPU a job)"
    )
    return result


def drain_section(
    valkey: Any, args: argparse.Namespace, report: Report, reference: tuple[Path, Any] | None
) -> None:
    contenders: list[tuple[str, str, dict[str, str]]] = [
        ("bare", "bare bullmq Worker, no-op", {}),
        (
            "errand",
            "errand worker, fast engine, 1 partition",
            {"ERRAND_WORKER_ENGINE": "fast", "ERRAND_PARTITIONS": "1"},
        ),
        (
            "errand",
            DEFAULT_DRAIN,
            {"ERRAND_WORKER_ENGINE": "fast", "ERRAND_PARTITIONS": str(DEFAULT_PARTITIONS)},
        ),
        (
            "errand",
            "errand worker, bullmq engine",
            {"ERRAND_WORKER_ENGINE": "bullmq", "ERRAND_PARTITIONS": "1"},
        ),
    ]
    conc = {"ERRAND_NOTIFY_CONCURRENCY": str(args.concurrency)}
    best: dict[str, DrainResult] = {}
    for round_no in range(args.rounds):  # the reference runs in every round too: same odds
        rates: dict[str, float] = {}
        for kind, name, env in contenders:
            if round_no and "bullmq engine" in name:
                continue  # slow and stable: one round is enough
            # Each drain on an empty Valkey, as the reference's: earlier drains' 10,000s
            # of kept jobs (and the AOF rewrites they bring) would slow later rounds.
            redis_sync.Redis.from_url(valkey.url).flushall()
            result = asyncio.run(
                drain(
                    kind,
                    name,
                    valkey.url,
                    valkey.process.pid,
                    args.jobs,
                    args.concurrency,
                    extra_env={**env, **conc},
                )
            )
            say(
                f"drain {name}: {result.rate:,.0f} jobs/s ({result.worker_us_per_job:.0f} µs "
                f"worker + {result.valkey_us_per_job:.0f} µs Valkey CPU a job), "
                f"load {harness.loadavg()}"
            )
            rates[name] = result.rate
            if name not in best or result.rate > best[name].rate:
                best[name] = result
        if reference is not None:
            result = reference_drain(reference, args)
            best[result.name] = max(best.get(result.name, result), result, key=lambda r: r.rate)
            ours = rates[DEFAULT_DRAIN]
            say(
                f"round {round_no + 1}: fast engine (default) / reference {ours / result.rate:.2f}x"
            )
    report.drains = [
        asdict(r)
        | {
            "rate": r.rate,
            "worker_us_per_job": r.worker_us_per_job,
            "valkey_us_per_job": r.valkey_us_per_job,
        }
        for r in best.values()
    ]


# --- latency --------------------------------------------------------------------
def latency_section(
    valkey: Any, api: harness.Service, prefix: str, args: argparse.Namespace, report: Report
) -> None:
    env = harness.errand_env(
        valkey.url,
        prefix,
        ERRAND_WEBHOOK_ALLOW_PRIVATE="true",
        ERRAND_WEBHOOK_SECRET=WEBHOOK_SECRET,
        ERRAND_EMAIL_SEND_MS="0",
        ERRAND_REPORT_SECONDS=str(REPORT_S),
        ERRAND_WORKER_ENGINE=args.engine,
        ERRAND_WEBHOOK_BACKOFF_MS="100",
    )
    log = harness.scratch_dir("worker") / "worker.log"
    worker = harness.Service(
        "errand worker", harness.spawn([harness.PY, "-m", "errand", "worker"], env, log), log=log
    )
    try:
        client = redis_sync.Redis.from_url(valkey.url)
        deadline = time.monotonic() + 30
        while not client.hlen(f"{prefix}:x:workers") and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        start, answered = asyncio.run(start_and_longpoll(api.port, valkey.url, prefix, 100))
        report.latency = {
            "engine": args.engine,
            "post_to_start_ms": [start.p50, start.p99],
            "post_to_longpoll_ms": [answered.p50, answered.p99],
        }
        say(
            f"latency ({args.engine} engine): POST->start p50 {start.p50:.1f} ms "
            f"p99 {start.p99:.1f} ms; POST->long-poll p50 {answered.p50:.1f} ms "
            f"p99 {answered.p99:.1f} ms"
        )
        waits = asyncio.run(waiting_strategies(api.port, valkey.url, prefix, 8, REPORT_S))
        for w in waits:
            say(
                f"waiting by {w.method}: {w.requests_per_job:.1f} GETs a job, delay p50 "
                f"{w.delays_ms.p50:.1f} ms p99 {w.delays_ms.p99:.1f} ms {w.note}"
            )
        report.waiting = [
            {
                "method": w.method,
                "jobs": w.jobs,
                "requests_per_job": w.requests_per_job,
                "delay_p50_ms": w.delays_ms.p50,
                "delay_p99_ms": w.delays_ms.p99,
                "note": w.note,
            }
            for w in waits
        ]
        report.rss["errand worker (idle, after latency)"] = [
            round(r, 1) for _, r, _ in worker.rss()
        ]
    finally:
        worker.stop()


# --- scheduled notifications ------------------------------------------------------
def scheduled_section(valkey: Any, args: argparse.Namespace, report: Report) -> None:
    report.scheduled = scheduled_run(
        valkey.url, valkey.process.pid, args.due_jobs, args.due_partitions, say
    )


# --- listing --------------------------------------------------------------------
def listing_section(valkey: Any, args: argparse.Namespace, report: Report) -> None:
    """Its own API and key prefix, so its 100,000 jobs are the client's only ones."""
    prefix = "{listing}"
    api = start_errand_api(valkey.url, prefix, report.api_workers, args)
    try:
        say(f"listing: {args.listing_jobs:,} notifications through POST /notifications/batch")
        result = listing(valkey, api, prefix, args.listing_jobs, connections=4)
    finally:
        api.stop()
    say(
        f"listing: ingest {result.ingest_rate:,.0f} notifications/s; GET /jobs p50 "
        + ", ".join(f"{name} {p50:.1f} ms" for name, (p50, _) in result.pages.items())
    )
    report.listing = asdict(result)


def store_sections(
    valkey: Any,
    args: argparse.Namespace,
    report: Report,
    reference: tuple[Path, Any] | None,
    sections: set[str],
) -> None:
    """The sections that drive workers and stores directly (no HTTP load)."""
    if "drain" in sections:
        drain_section(valkey, args, report, reference)
    if "scheduled" in sections:
        scheduled_section(valkey, args, report)
    if "listing" in sections:
        listing_section(valkey, args, report)
    if "cluster" in sections:
        report.cluster = [asdict(r) for r in cluster_section(args, say)]


def valkey_version(url: str) -> str:
    info = redis_sync.Redis.from_url(url).info("server")
    return f"Valkey {info.get('valkey_version') or info.get('redis_version')}"


def main() -> int:
    args = options()
    sections = set(args.only.split(","))
    report = Report(
        started=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), load_before=harness.loadavg()
    )
    begun = time.monotonic()
    wrk = ensure_wrk() if "http" in sections else None
    if "http" in sections and not wrk:
        report.notes.append(
            "wrk is not installed (and could not be): HTTP numbers come from a "
            "Python load generator in this process, slower than wrk"
        )
    report.tool = (
        subprocess.run([wrk, "--version"], capture_output=True, text=True)
        .stdout.split("[")[0]
        .strip()
        if wrk
        else "python fallback"
    ) + " (2 threads)"
    if "http" not in sections:
        report.tool = "not run"
    report.api_workers = args.api_workers or len(os.sched_getaffinity(0))
    valkey = harness.start_valkey("errand")
    report.machine = (
        f"{os.cpu_count()} cores, {platform.python_implementation()} "
        f"{platform.python_version()}, {valkey_version(valkey.url)}"
    )
    ref_dir = __import__("reference").prepare() if args.reference else None
    ref_valkey = harness.start_valkey("reference") if ref_dir else None
    prefix = "{bench}"
    api = start_errand_api(valkey.url, prefix, report.api_workers, args)
    try:
        # Latency first, while the API's queues are empty; the HTTP runs then leave a
        # backlog that no worker drains, and the drains use key prefixes of their own.
        if "latency" in sections:
            latency_section(valkey, api, prefix, args, report)
        if "http" in sections:
            say(f"HTTP: errand ({DEFAULT_PARTITIONS} partitions, the default)")
            http_section("errand", api, valkey.process.pid, wrk, args, report)
            if args.one_partition:
                one = start_errand_api(valkey.url, "{bench1}", report.api_workers, args, 1)
                say("HTTP: errand, 1 partition")
                try:
                    http_section("errand 1 partition", one, valkey.process.pid, wrk, args, report)
                finally:
                    one.stop()
            if ref_dir and ref_valkey:
                ref_api = __import__("reference").start_api(
                    ref_dir, ref_valkey.url, report.api_workers
                )
                say("HTTP: reference")
                try:
                    http_section("reference", ref_api, ref_valkey.process.pid, wrk, args, report)
                finally:
                    ref_api.stop()
        reference = (ref_dir, ref_valkey) if ref_dir else None
        store_sections(valkey, args, report, reference, sections)
    finally:
        api.stop()
        report.load_after = harness.loadavg()
    say(f"done in {time.monotonic() - begun:.0f} s")
    print_tables(report)
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
