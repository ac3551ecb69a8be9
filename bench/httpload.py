"""HTTP throughput: wrk (Debian's package) with a Lua script per route, or a Python fallback.

Every request of a POST run carries a fresh userId, so reports are never
deduplicated and each POST really enqueues a job; GET /jobs/{id} cycles over ids
of jobs that exist.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from rawhttp import DEFAULT_HEADERS, python_load

THREADS = 2

_WRK_SCRIPT = r"""
local counter = 0
local threads = 0
local ids = {}
local route = "%(route)s"
local auth = "%(auth)s"
local post_headers = {["Content-Type"] = "application/json"}
local get_headers = {}
if auth ~= "" then post_headers["Authorization"] = auth; get_headers["Authorization"] = auth end
tid = 0  -- a global: setup() sets it per thread, so userIds differ across threads too
setup = function(thread) thread:set("tid", threads); threads = threads + 1 end
init = function(args)
  if args[1] then for line in io.lines(args[1]) do ids[#ids + 1] = line end end
end
request = function()
  counter = counter + 1
  if route == "notifications" then
    return wrk.format("POST", "/notifications", post_headers,
      string.format('{"type":"welcome","userId":"wrk-%%d-%%d"}', tid, counter))
  elseif route == "reports" then
    return wrk.format("POST", "/reports", post_headers,
      string.format('{"userId":"wrk-%%d-%%d","reportType":"activity"}', tid, counter))
  else
    return wrk.format("GET", "/jobs/" .. ids[(counter %% #ids) + 1], get_headers)
  end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%%d,"duration_us":%%d,"p50":%%d,"p99":%%d,"errors":%%d,"status":%%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""


@dataclass
class HttpResult:
    route: str
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    errors: int = 0
    requests: int = 0
    tool: str = "wrk"


def ensure_wrk() -> str | None:
    """wrk's path; installs Debian's package when missing and we are root with apt-get."""
    found = shutil.which("wrk")
    if found or shutil.which("apt-get") is None or os.geteuid() != 0:
        return found
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=False)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "wrk"], env=env, capture_output=True, check=False
    )
    return shutil.which("wrk")


def run_wrk(
    wrk: str,
    port: int,
    route: str,
    seconds: float,
    connections: int,
    scratch: Path,
    ids_file: Path | None = None,
) -> HttpResult:
    script = scratch / f"wrk-{route}.lua"
    auth = DEFAULT_HEADERS.get("Authorization", "")
    script.write_text(_WRK_SCRIPT % {"route": route, "auth": auth})
    argv = [
        wrk,
        f"-t{THREADS}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        f"http://127.0.0.1:{port}",
    ]
    if ids_file is not None:
        argv += ["--", str(ids_file)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30).stdout
    match = re.search(r"WRKJSON (\{.*\})", out)
    if not match:
        raise RuntimeError(f"wrk gave no summary:\n{out[-2000:]}")
    import json

    data = json.loads(match.group(1))
    return HttpResult(
        route=route,
        rps=data["requests"] / (data["duration_us"] / 1e6),
        p50_ms=data["p50"] / 1000,
        p99_ms=data["p99"] / 1000,
        errors=data["errors"] + data["status"],
        requests=data["requests"],
    )


def run_python_load(
    port: int, route: str, seconds: float, connections: int, ids: list[str] | None = None
) -> HttpResult:
    def make(n: int) -> tuple[str, str, object | None]:
        if route == "notifications":
            return "POST", "/notifications", {"type": "welcome", "userId": f"py-{n}"}
        if route == "reports":
            return "POST", "/reports", {"userId": f"py-{n}", "reportType": "activity"}
        assert ids
        return "GET", f"/jobs/{ids[n % len(ids)]}", None

    result = asyncio.run(python_load(port, make, connections, seconds))
    lat = sorted(result.latencies_us) or [0.0]
    return HttpResult(
        route=route,
        rps=result.requests / result.seconds if result.seconds else 0.0,
        p50_ms=lat[len(lat) // 2] / 1000,
        p99_ms=lat[min(len(lat) - 1, int(len(lat) * 0.99))] / 1000,
        errors=result.errors,
        requests=result.requests,
        tool="python",
    )


def load(
    wrk: str | None,
    port: int,
    route: str,
    seconds: float,
    connections: int,
    scratch: Path,
    ids: list[str] | None = None,
) -> HttpResult:
    ids_file = None
    if ids:
        ids_file = scratch / f"ids-{port}.txt"
        ids_file.write_text("\n".join(ids) + "\n")
    if wrk:
        return run_wrk(wrk, port, route, seconds, connections, scratch, ids_file)
    return run_python_load(port, route, seconds, connections, ids)
