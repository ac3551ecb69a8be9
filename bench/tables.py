"""The benchmark's closing tables: one section per kind of figure, from a `Report`."""

from __future__ import annotations

from cluster import cluster_lines
from listing import ListingResult, listing_lines
from report import Report
from scheduled import scheduled_lines

REPORT_S = 0.5  # the report duration the latency section's waiting strategies use

ROUTES = (
    ("notifications", "POST /notifications"),
    ("reports", "POST /reports"),
    ("jobs", "GET /jobs/{id}"),
)


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
    lines += [
        f"  Valkey CPU per request, {k}: {cpu:,.0f} µs" for k, cpu in report.valkey_cpu_us.items()
    ]
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
