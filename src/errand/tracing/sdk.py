"""The OpenTelemetry SDK set-up, imported only when the OTEL_* variables ask for traces.

errand builds the TracerProvider (service name from OTEL_SERVICE_NAME, default
`errand`) with one BatchSpanProcessor per exporter named; the SDK and the exporters
read their other standard variables themselves (OTEL_EXPORTER_OTLP_HEADERS, the
sampler, OTEL_RESOURCE_ATTRIBUTES, OTEL_BSP_*).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from errand import __version__
from errand.settings import Settings
from errand.tracing import TracingUnavailable, exporters

OTLP_MODULES = {
    "http/protobuf": "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "grpc": "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
}
OTLP_PACKAGES = {
    "http/protobuf": "opentelemetry-exporter-otlp-proto-http",
    "grpc": "opentelemetry-exporter-otlp-proto-grpc",
}


def check(settings: Settings) -> None:
    """Raise TracingUnavailable unless every exporter asked for can be loaded."""
    for name in exporters(settings):
        if name == "otlp":
            _otlp_module(settings)


def provider_from(settings: Settings) -> TracerProvider:
    """A TracerProvider exporting through every exporter the variables name."""
    resource = Resource.create(
        {"service.name": settings.otel_service_name or "errand", "service.version": __version__}
    )
    provider = TracerProvider(resource=resource)
    for name in exporters(settings):
        provider.add_span_processor(BatchSpanProcessor(_exporter(name, settings)))
    return provider


def _exporter(name: str, settings: Settings) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    exporter: SpanExporter = _otlp_module(settings).OTLPSpanExporter()
    return exporter


def _otlp_module(settings: Settings) -> ModuleType:
    protocol = (
        settings.otel_exporter_otlp_traces_protocol
        or settings.otel_exporter_otlp_protocol
        or "http/protobuf"
    )
    if protocol not in OTLP_MODULES:
        raise TracingUnavailable(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: errand exports traces over "
            + " or ".join(OTLP_MODULES)
        )
    try:
        return importlib.import_module(OTLP_MODULES[protocol])
    except ImportError as err:
        raise TracingUnavailable(
            f"OTLP over {protocol} needs {OTLP_PACKAGES[protocol]}: pip install it"
            + (" (or errand[otel])" if protocol == "http/protobuf" else "")
        ) from err
