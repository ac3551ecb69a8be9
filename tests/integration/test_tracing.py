"""Traces through the real parts: one trace from POST /notifications to the webhook receiver.

The SDK's in-memory exporter collects the spans of an in-process stack (uvicorn and
a worker in the test's loop). A `flaky-` notification fails twice and succeeds on
its third attempt, then its webhook goes to a real receiver on 127.0.0.1: every
span shares the trace id the client sent, each has the right parent, and the
receiver sees that trace id in its `traceparent` header. With tracing off no SDK
is loaded and jobs carry no trace context.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from errand import tracing
from errand.api.app import ErrandAPI
from errand.jobids import QueueName
from support.stack import Stack, run_stack
from support.waiting import wait_for
from support.webhook_receiver import serve_receiver

CLIENT_TRACE_ID = uuid.uuid4().int & ((1 << 128) - 1) or 1
CLIENT_SPAN_ID = 0x00F067AA0BA902B7
CLIENT_TRACEPARENT = f"00-{CLIENT_TRACE_ID:032x}-{CLIENT_SPAN_ID:016x}-01"


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """Tracing on, into memory, for one test (what `configure` does with a real exporter)."""
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    tracing.use(provider)
    try:
        yield spans
    finally:
        tracing.use(None)
        provider.shutdown()


def named(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def one(spans: Sequence[ReadableSpan], name: str) -> ReadableSpan:
    found = named(spans, name)
    assert len(found) == 1, f"{len(found)} spans named {name!r}: {[s.name for s in spans]}"
    return found[0]


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return span.context.span_id


async def finished_delivery(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    """Every span, once the webhook delivery's attempt span has ended completed."""

    async def probe() -> list[ReadableSpan]:
        return list(exporter.get_finished_spans())

    def delivered(spans: list[ReadableSpan]) -> bool:
        return any(
            s.name.startswith("webhooks attempt")
            and (s.attributes or {}).get(tracing.OUTCOME) == "completed"
            for s in spans
        )

    return await wait_for(probe, delivered, 15.0, "the webhook delivery's span")


@pytest.mark.parametrize("engine", ["fast", "bullmq"])
async def test_one_trace_from_the_post_to_the_webhook_receiver(
    exporter: InMemorySpanExporter, make_settings: Any, engine: str
) -> None:
    async with (
        serve_receiver() as receiver,
        run_stack(make_settings(worker_engine=engine)) as stack,
    ):
        assert type(stack.app).__name__ == "TracedErrandAPI"
        body = {"type": "welcome", "userId": "flaky-trace", "webhookUrl": receiver.url("/hook")}
        reply = await stack.http.post(
            "/notifications", json=body, headers={"traceparent": CLIENT_TRACEPARENT}
        )
        assert reply.status_code == 202, reply.text
        [delivery] = await receiver.wait_for("/hook")
        spans = await finished_delivery(exporter)

    assert {s.context.trace_id for s in spans if s.context} == {CLIENT_TRACE_ID}
    server = one(spans, "POST /notifications")
    assert server.kind is SpanKind.SERVER and parent_of(server) == CLIENT_SPAN_ID
    assert (server.attributes or {}).get("http.route") == "/notifications"

    enqueue = one(spans, "enqueue notifications")
    assert enqueue.kind is SpanKind.PRODUCER and parent_of(enqueue) == span_id(server)
    attempts = [one(spans, f"notifications attempt {n}") for n in (1, 2, 3)]
    outcomes = [(a.attributes or {}).get(tracing.OUTCOME) for a in attempts]
    assert outcomes == ["retry", "retry", "completed"]
    for attempt in attempts:
        assert attempt.kind is SpanKind.CONSUMER and parent_of(attempt) == span_id(enqueue)
    assert [a.status.status_code for a in attempts[:2]] == [StatusCode.ERROR] * 2

    sends = named(spans, "simulated send")
    assert sorted(parent_of(s) for s in sends) == sorted(span_id(a) for a in attempts)
    assert [s.status.status_code for s in sends].count(StatusCode.ERROR) == 2

    enqueue_webhook = one(spans, "enqueue webhooks")
    assert parent_of(enqueue_webhook) == span_id(attempts[2])
    deliveries = [s for s in spans if s.name.startswith("webhooks attempt")]
    assert {parent_of(d) for d in deliveries} == {span_id(enqueue_webhook)}
    post = one(spans, "webhook POST")
    assert post.kind is SpanKind.CLIENT
    assert (post.attributes or {}).get("http.response.status_code") == 200
    assert parent_of(post) in {span_id(d) for d in deliveries}

    assert delivery.headers["traceparent"] == f"00-{CLIENT_TRACE_ID:032x}-{span_id(post):016x}-01"


async def test_spans_are_named_by_route_on_both_paths_and_start_a_trace(
    exporter: InMemorySpanExporter, stack: Stack
) -> None:
    unknown = "/jobs/ntf_00000000000000000000000000000000"
    for query in ("", "?wait=1"):  # the hot path, then FastAPI (a query string)
        reply = await stack.http.get(unknown + query)
        assert reply.status_code == 404
    spans = await wait_for(
        lambda: _finished(exporter), lambda got: len(named(got, "GET /jobs/{job_id}")) == 2
    )
    for span in named(spans, "GET /jobs/{job_id}"):
        assert parent_of(span) is None
        assert (span.attributes or {}).get("http.route") == "/jobs/{job_id}"


async def test_captured_secret_headers_are_masked(
    monkeypatch: pytest.MonkeyPatch, exporter: InMemorySpanExporter, make_settings: Any
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST", "authorization")
    async with run_stack(make_settings(), with_worker=False) as stack:
        reply = await stack.http.get("/admin/queues", headers=stack.admin)
        assert reply.status_code == 200, reply.text
    spans = await wait_for(
        lambda: _finished(exporter), lambda got: bool(named(got, "GET /admin/queues"))
    )
    captured = (one(spans, "GET /admin/queues").attributes or {})[
        "http.request.header.authorization"
    ]
    assert captured == ("[REDACTED]",)


async def _finished(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return list(exporter.get_finished_spans())


async def test_with_tracing_off_jobs_carry_no_trace_and_requests_work(stack: Stack) -> None:
    assert not tracing.enabled and tracing.provider() is None
    assert type(stack.app) is ErrandAPI
    reply = await stack.http.post(
        "/notifications",
        json={"type": "welcome", "userId": "u-off"},
        headers={"traceparent": CLIENT_TRACEPARENT},
    )
    assert reply.status_code == 202, reply.text
    job_id = reply.json()["jobId"]

    async def status() -> str:
        got = await stack.http.get(f"/jobs/{job_id}")
        return str(got.json()["status"])

    await wait_for(status, lambda s: s == "completed", what="the notification to complete")
    raw = await stack.redis.hget(stack.keys.job(QueueName.NOTIFICATIONS, job_id), "data")
    assert tracing.TRACE_FIELD not in orjson.loads(raw)


OFF_PROBE = """
import sys
from opentelemetry import trace
from errand import tracing
from errand.api.app import create_app, ErrandAPI
from errand.engine import runner
from errand.settings import Settings
settings = Settings()
assert tracing.configure(settings) is False
assert type(create_app(settings)) is ErrandAPI
assert not tracing.enabled, "tracing on"
assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"
# (redis-py imports the SDK's metrics part when it is installed: not errand's doing)
loaded = [m for m in sys.modules if m.startswith(("opentelemetry.sdk.trace", "errand.tracing.",
                                                  "opentelemetry.instrumentation"))]
assert not loaded, loaded
print("off")
"""

ON_PROBE = """
from opentelemetry import trace
from errand import tracing
from errand.settings import Settings
assert tracing.configure(Settings()) is True and tracing.enabled
provider = trace.get_tracer_provider()
print(type(provider).__name__, provider.resource.attributes["service.name"])
"""


def run_probe(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ERRAND_"))}
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_without_otel_variables_no_sdk_is_loaded() -> None:
    done = run_probe(OFF_PROBE)
    assert done.returncode == 0 and done.stdout.strip() == "off", done.stderr


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"OTEL_TRACES_EXPORTER": "console"}, "TracerProvider errand"),
        ({"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "mail"}, "TracerProvider mail"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}, "TracerProvider errand"),
    ],
)
def test_otel_variables_install_the_sdk(env: dict[str, str], expected: str) -> None:
    done = run_probe(ON_PROBE, **env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == expected
