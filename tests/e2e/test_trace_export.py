"""`errand api` and `errand worker` processes export one trace over OTLP/HTTP when asked.

The OTEL_* variables of a real deployment point both processes at a small OTLP/HTTP
collector in the test (a thread that decodes the protobuf requests): the API's and
the worker's spans of one notification arrive there, under one trace id.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from errand.server.embedded import EmbeddedValkey, free_port
from support.processes import errand_env, processes, wait_ready
from support.waiting import wait_sync


@dataclass(frozen=True)
class ExportedSpan:
    service: str
    name: str
    trace_id: str


class Collector(ThreadingHTTPServer):
    """Records the spans of every OTLP/HTTP trace export it receives."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _CollectorHandler)
        self.spans: list[ExportedSpan] = []
        self.lock = threading.Lock()

    def record(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    found = ExportedSpan(attributes["service.name"], span.name, span.trace_id.hex())
                    with self.lock:
                        self.spans.append(found)


class _CollectorHandler(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.server.record(body)
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_api_and_worker_processes_export_one_trace(
    tmp_path: Path, valkey: EmbeddedValkey, collector: Collector
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = errand_env(redis_url=valkey.url, queue_prefix="{trace-export}")
    env.update(
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{collector.server_address[1]}",
        OTEL_SERVICE_NAME="errand-e2e",
        OTEL_BSP_SCHEDULE_DELAY="100",  # export within 0.1 s instead of 5 s
    )
    with processes(tmp_path) as procs:
        api = procs.api(port, env, "--workers", "2")
        procs.worker(env, "--queues", "notifications")
        wait_ready(base, api)
        with httpx.Client(base_url=base, timeout=30) as http:
            reply = http.post("/notifications", json={"type": "welcome", "userId": "u-otlp"})
            assert reply.status_code == 202, reply.text

        def names() -> set[str]:
            with collector.lock:
                return {s.name for s in collector.spans}

        wanted = {"POST /notifications", "enqueue notifications", "notifications attempt 1"}
        wait_sync(names, lambda got: wanted <= got, timeout_s=30, what="the exported spans")
    with collector.lock:
        spans = [s for s in collector.spans if s.name in wanted | {"simulated send"}]
    assert {s.service for s in spans} == {"errand-e2e"}
    assert len({s.trace_id for s in spans}) == 1, spans
