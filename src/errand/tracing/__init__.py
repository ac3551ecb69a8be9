"""Traces: errand's spans and the W3C trace context its jobs carry, on only when asked for.

Off (the default) nothing here creates a span object: `enabled` is a module flag the
callers check first, and `span()` hands back one shared no-op context. On, either
`configure(settings)` installed the OpenTelemetry SDK because the standard `OTEL_*`
variables ask for traces (the SDK is imported only then, by `tracing/sdk.py`), or a
test called `use(provider)` with its own provider.

A job carries its producer's context in its BullMQ data as `data.trace`
(`{"traceparent": ..., "tracestate": ...}`), so it survives retries, stalls and
restarts, and Node tools reading the job see it too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from types import ModuleType
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, StatusCode, Tracer, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from errand import __version__
from errand.settings import Settings

TRACE_FIELD = "trace"  # the job data field that carries the producer's trace context
MESSAGING_SYSTEM = "bullmq"
OUTCOME = "errand.job.outcome"

enabled = False  # read as `tracing.enabled`, never imported by name: `use` changes it
_tracer: Tracer | None = None
_provider: TracerProvider | None = None
_propagator = TraceContextTextMapPropagator()
_OFF: contextlib.nullcontext[None] = contextlib.nullcontext()


class TracingUnavailable(RuntimeError):
    """The OTEL_* variables ask for traces that this install cannot export."""


def exporters(settings: Settings) -> list[str]:
    """The span exporters the standard variables ask for; empty means tracing is off.

    OTEL_SDK_DISABLED=true wins; OTEL_TRACES_EXPORTER names them (`none`: off); without
    it, an OTLP endpoint variable asks for `otlp`. Nothing set: off (errand does not
    follow the SDK's default of exporting to a local collector nobody asked for).
    """
    if settings.otel_sdk_disabled:
        return []
    names = [n.strip().lower() for n in settings.otel_traces_exporter.split(",") if n.strip()]
    if names:
        return [] if "none" in names else names
    if settings.otel_exporter_otlp_endpoint or settings.otel_exporter_otlp_traces_endpoint:
        return ["otlp"]
    return []


def check(settings: Settings) -> None:
    """Raise TracingUnavailable if traces are asked for and the SDK or exporter is missing."""
    if exporters(settings):
        _sdk().check(settings)


def configure(settings: Settings) -> bool:
    """Install the SDK when the OTEL_* variables ask for traces; True when tracing is on.

    Called once per process (`errand api`'s app factory, `errand worker`); a second
    call keeps the first provider. Raises TracingUnavailable (see `check`).
    """
    if enabled:
        return True
    if not exporters(settings):
        return False
    provider = _sdk().provider_from(settings)
    trace.set_tracer_provider(provider)  # instrumentations of other libraries report there too
    use(provider)
    return True


def use(provider: TracerProvider | None) -> None:
    """Trace through `provider` from now on (tests pass their own); None turns tracing off."""
    global enabled, _tracer, _provider
    _provider = provider
    _tracer = None if provider is None else provider.get_tracer("errand", __version__)
    enabled = provider is not None


def provider() -> TracerProvider | None:
    """The provider errand traces through, or None when tracing is off."""
    return _provider


def span(
    name: str,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, AttributeValue] | None = None,
    context: Context | None = None,
    *,
    record_errors: bool = True,
) -> contextlib.AbstractContextManager[Span | None]:
    """A span made current for a `with` block, or (tracing off) a no-op yielding None.

    An exception leaving the block marks the span failed, unless `record_errors` is
    False (the caller decides with `failed`).
    """
    if _tracer is None:
        return _OFF
    return _tracer.start_as_current_span(
        name,
        context=context,
        kind=kind,
        attributes=attributes,
        record_exception=record_errors,
        set_status_on_exception=record_errors,
    )


def failed(current: Span | None, err: BaseException | str, error_type: str = "") -> None:
    """Mark `current` failed by `err` (an exception's type and message, no traceback)."""
    if current is None:
        return
    if isinstance(err, BaseException):
        error_type = error_type or type(err).__qualname__
        err = f"{type(err).__name__}: {err}"
    current.set_status(StatusCode.ERROR, err)
    current.set_attribute("error.type", error_type or "_OTHER")


def client_span(
    name: str, attributes: Mapping[str, AttributeValue]
) -> contextlib.AbstractContextManager[Span | None]:
    """A client span (an outgoing request); `inject` then carries it in the headers."""
    return span(name, SpanKind.CLIENT, attributes)


@contextlib.contextmanager
def enqueue_span(queue: str, job_id: str, data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The producer span of one job; yields `data` with this span's context in `data.trace`."""
    attributes = _messaging(queue, job_id, "send")
    with span(f"enqueue {queue}", SpanKind.PRODUCER, attributes):
        carrier: dict[str, str] = {}
        _propagator.inject(carrier)
        yield {**data, TRACE_FIELD: carrier}


def attempt_span(
    queue: str, job_id: str, attempt: int, carrier: Any
) -> contextlib.AbstractContextManager[Span | None]:
    """The consumer span of one attempt, a child of the context the job carries."""
    attributes = {**_messaging(queue, job_id, "process"), "errand.job.attempt": attempt}
    name, context = f"{queue} attempt {attempt}", extract(carrier)
    return span(name, SpanKind.CONSUMER, attributes, context, record_errors=False)


def extract(carrier: Any) -> Context | None:
    """The context a job's `data.trace` carries (None when it carries none)."""
    if not isinstance(carrier, dict):
        return None
    return _propagator.extract({str(k): str(v) for k, v in carrier.items()})


def inject(headers: dict[str, str]) -> None:
    """Add `traceparent` (and `tracestate`) of the current span to outgoing headers."""
    if enabled:
        _propagator.inject(headers)


def _sdk() -> ModuleType:
    """errand's SDK set-up; importing it imports the SDK, so only when traces are asked for."""
    try:
        from errand.tracing import sdk
    except ImportError as err:
        raise TracingUnavailable(
            "the OTEL_* variables ask for traces but the OpenTelemetry SDK is not installed: "
            "pip install 'errand[otel]'"
        ) from err
    return sdk


def _messaging(queue: str, job_id: str, operation: str) -> dict[str, AttributeValue]:
    return {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.operation.type": operation,
        "messaging.destination.name": queue,
        "messaging.message.id": job_id,
    }
