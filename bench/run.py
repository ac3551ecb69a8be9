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
           and on Valkey clusters of 1, 2 and 3 masters, per Redis core used (cluster.py)
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness
import redis as redis_sync
from cluster import cluster_lines, cluster_section
from drain import DrainResult, drain
from httpload import ensure_wrk, load
from latency import start_and_longpoll, waiting_strategies
from listing import ListingResult, listing, listing_lines
from rawhttp import RawHttp
from scheduled import scheduled_lines, scheduled_run

from errand.settings import Settings

ROUTES = (
    ("notifications", "POST /notifications"),
    ("reports", "POST /reports"),
    ("jobs", "GET /jobs/{id}"),
)
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
REPORT_S = 0.5
DEFAULT_PARTITIONS = int(Settings.model_fields["partitions"].default)


@dataclass
class Report:
    started: str = ""
    machine: str = ""
    load_before: str = ""
    load_after: str = ""
    tool: str = ""
    api_workers: int = 0
    http: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    api_cpu_us: dict[str, float] = field(default_factory=dict)
    drains: list[dict[str, Any]] = field(default_factory=list)
    latency: dict[str, Any] = field(default_factory=dict)
    waiting: list[dict[str, Any]] = field(default_factory=list)
    rss: dict[str, Any] = field(default_factory=dict)
    scheduled: dict[str, Any] = field(default_factory=dict)
    listing: dict[str, Any] = field(default_factory=dict)
    cluster: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


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
    parser.add_argument("--seconds", type=float, default=10.0, help="per HTTP route")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--jobs", type=int, default=10_000, help="notifications per drain")
    parser.add_argument(
        "--rounds", type=int, default=2, help="interleaved drains per contender (the best counts)"
    )
    parser.add_argument("--concurrency", type=int, default=32, help="jobs at once per worker")
    parser.add_argument("--api-workers", type=int, default=0, help="0: one per core")
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
    parser.add_argument("--json", type=Path, help="write every number here too")
    return parser.parse_args()


# --- the errand API -----------------------------------------------------------
def start_errand_api(
    valkey_url: str, prefix: str, workers: int, partitions: int = DEFAULT_PARTITIONS
) -> harness.Service:
    port = harness.free_port()
    env = harness.errand_env(
        valkey_url,
        prefix,
        ERRAND_PARTITIONS=str(partitions),
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
    return harness.Service("errand api", proc, port, log)


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
                ids.append(str(reply.json()["jobId"]))  # type: ignore[index]
        finally:
            await http.close()

    await asyncio.gather(*(client(k) for k in range(8)))
    return ids


def http_section(
    name: str, svc: harness.Service, wrk: str | None, args: argparse.Namespace, report: Report
) -> None:
    scratch = harness.scratch_dir("wrk")
    ids = asyncio.run(seed_ids(svc.port, 1000))
    load(wrk, svc.port, "jobs", 1.0, args.connections, scratch, ids)  # warm-up, not counted
    results = []
    for route, label in ROUTES:
        cpu0 = svc.cpu()
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
        say(
            f"{name} {label}: {result.rps:,.0f} req/s, p50 {result.p50_ms:.1f} ms, "
            f"p99 {result.p99_ms:.1f} ms, {result.errors} errors"
        )
        results.append(asdict(result))
    report.http[name] = results
    report.rss[name] = [round(rss, 1) for _, rss, _ in svc.rss()]


# --- drains -------------------------------------------------------------------
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
            f"errand worker, fast engine, {DEFAULT_PARTITIONS} partitions (default)",
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
    for round_no in range(args.rounds):
        for kind, name, env in contenders:
            if round_no and "bullmq engine" in name:
                continue  # slow and stable: one round is enough
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
            if name not in best or result.rate > best[name].rate:
                best[name] = result
    if reference is not None:
        directory, ref_valkey = reference
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
        say(f"drain reference: {result.rate:,.0f} jobs/s")
        best[result.name] = result
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
    report.scheduled = scheduled_run(valkey.url, args.due_jobs, say)


# --- listing --------------------------------------------------------------------
def listing_section(valkey: Any, args: argparse.Namespace, report: Report) -> None:
    """Its own API and key prefix, so its 100,000 jobs are the client's only ones."""
    prefix = "{listing}"
    api = start_errand_api(valkey.url, prefix, report.api_workers)
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


# --- output -------------------------------------------------------------------
def fmt(value: float, digits: int = 1) -> str:
    return "n/a" if value != value else f"{value:,.{digits}f}"  # NaN check


def http_lines(report: Report) -> list[str]:
    names = list(report.http)
    head = f"{'HTTP':22}" + "".join(
        f"{n + ' req/s':>22}{'p50 ms':>8}{'p99 ms':>8}{'err':>6}" for n in names
    )
    lines = [head + (f"{'1st/2nd':>12}" if len(names) == 2 else "")]
    for i, (_, label) in enumerate(ROUTES):
        row = f"{label:22}"
        rates = []
        for n in names:
            r = report.http[n][i]
            rates.append(r["rps"])
            row += f"{r['rps']:>22,.0f}{r['p50_ms']:>8.1f}{r['p99_ms']:>8.1f}{r['errors']:>6}"
        if len(rates) == 2 and rates[1]:
            row += f"{rates[0] / rates[1]:>11.2f}x"
        lines.append(row)
    lines += [f"  API CPU per request, {k}: {cpu:,.0f} µs" for k, cpu in report.api_cpu_us.items()]
    return [*lines, ""]


def drain_lines(report: Report) -> list[str]:
    bare = next((d["rate"] for d in report.drains if d["name"].startswith("bare")), 0)
    title = f"drain of {report.drains[0]['jobs']} notifications"
    lines = [
        f"{title:34}{'jobs/s':>9}{'vs bare':>9}{'worker µs/job':>15}"
        f"{'Valkey µs/job':>15}{'RSS MiB':>9}"
    ]
    for d in report.drains:
        ratio = f"{d['rate'] / bare:.2f}x" if bare else "-"
        lines.append(
            f"{d['name']:34}{d['rate']:>9,.0f}{ratio:>9}{d['worker_us_per_job']:>15,.0f}"
            f"{d['valkey_us_per_job']:>15,.0f}{d['worker_rss_mib']:>9.0f}"
            + (f"  {'; '.join(d['notes'])}" if d["notes"] else "")
        )
    errand = next((d for d in report.drains if "fast" in d["name"]), report.drains[0])
    lines.append(
        f"  Redis: {errand['bytes_per_waiting']:,.0f} B per waiting notification "
        f"(job hash {errand['job_hash_bytes']} B), {errand['bytes_per_completed']:,.0f} B "
        f"per completed one (with its sent-ledger key and outbox entry)"
    )
    return [*lines, ""]


def latency_lines(report: Report) -> list[str]:
    lines = []
    if report.latency:
        lat = report.latency
        start, answered = lat["post_to_start_ms"], lat["post_to_longpoll_ms"]
        lines += [
            f"latency, idle worker ({lat['engine']} engine), 100 jobs    p50 ms    p99 ms",
            f"  POST -> worker start                  {fmt(start[0]):>8}  {fmt(start[1]):>8}",
            f"  POST -> long-poll answered            {fmt(answered[0]):>8}  {fmt(answered[1]):>8}",
            "",
        ]
    if report.waiting:
        lines.append(
            f"waiting for a {REPORT_S:g} s report   GETs/job   known after finish p50 ms   p99 ms"
        )
        for w in report.waiting:
            lines.append(
                f"  {w['method']:18}{fmt(w['requests_per_job']):>10}{fmt(w['delay_p50_ms']):>28}"
                f"{fmt(w['delay_p99_ms']):>9}  {w['note']}"
            )
        lines.append("")
    return lines


def print_tables(report: Report) -> None:
    lines = [
        "",
        f"errand bench  {report.started}  {report.machine}",
        f"load average before {report.load_before}, after {report.load_after}  "
        f"(others share this machine: compare ratios within a run)",
        f"HTTP load: {report.tool}, API processes: {report.api_workers}",
        "",
    ]
    lines += latency_lines(report)
    if report.http:
        lines += http_lines(report)
    if report.drains:
        lines += drain_lines(report)
    if report.scheduled:
        lines += scheduled_lines(report.scheduled, report.drains)
    if report.listing:
        lines += listing_lines(ListingResult(**report.listing))
    if report.cluster:
        lines += cluster_lines(report.cluster)
    for name, rss in report.rss.items():
        lines.append(f"RSS {name}: {', '.join(f'{r:.0f}' for r in rss)} MiB")
    lines += [f"note: {n}" for n in report.notes]
    print("\n".join(lines), flush=True)


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
    api = start_errand_api(valkey.url, prefix, report.api_workers)
    try:
        # Latency first, while the API's queues are empty; the HTTP runs then leave a
        # backlog that no worker drains, and the drains use key prefixes of their own.
        if "latency" in sections:
            latency_section(valkey, api, prefix, args, report)
        if "http" in sections:
            say(f"HTTP: errand ({DEFAULT_PARTITIONS} partitions, the default)")
            http_section("errand", api, wrk, args, report)
            one = start_errand_api(valkey.url, "{bench1}", report.api_workers, partitions=1)
            say("HTTP: errand, 1 partition")
            try:
                http_section("errand 1 partition", one, wrk, args, report)
            finally:
                one.stop()
            if ref_dir and ref_valkey:
                ref_api = __import__("reference").start_api(
                    ref_dir, ref_valkey.url, report.api_workers
                )
                say("HTTP: reference")
                try:
                    http_section("reference", ref_api, wrk, args, report)
                finally:
                    ref_api.stop()
                redis_sync.Redis.from_url(ref_valkey.url).flushall()  # before its drain
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
