"""When the standard OTEL_* variables turn errand's traces on, and with which exporters."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from errand import tracing
from errand.settings import Settings


@pytest.mark.parametrize(
    ("env", "exporters"),
    [
        ({}, []),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": " OTLP , console"}, ["otlp", "console"]),
        ({"OTEL_TRACES_EXPORTER": "none"}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, []),
        ({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "TRUE"}, []),
    ],
)
def test_the_variables_decide(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], exporters: list[str]
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert tracing.exporters(Settings()) == exporters


def test_an_unknown_exporter_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with pytest.raises(ValidationError, match="zipkin"):
        Settings()


def test_an_unsupported_otlp_protocol_is_refused() -> None:
    settings = Settings(otel_traces_exporter="otlp", otel_exporter_otlp_protocol="http/json")
    with pytest.raises(tracing.TracingUnavailable, match="http/json"):
        tracing.check(settings)


def test_off_creates_no_span() -> None:
    assert not tracing.enabled
    with tracing.span("anything") as span:
        assert span is None
    headers: dict[str, str] = {}
    tracing.inject(headers)
    assert headers == {}


@pytest.mark.parametrize("command", ["worker", "api", "up"])
def test_a_command_asked_for_traces_it_cannot_export_exits_2(
    monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    from typer.testing import CliRunner

    from errand.cli import app

    monkeypatch.setenv("ERRAND_REDIS_URL", "redis://127.0.0.1:1/0")  # never reached
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
    done = CliRunner().invoke(app, [command])
    assert done.exit_code == 2
    assert "http/json" in done.output
