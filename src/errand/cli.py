"""The `errand` command: thin, it parses arguments, builds Settings and calls the real code."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from errand import __version__
from errand.jobids import QueueName
from errand.settings import Settings

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="errand: asynchronous reports and notifications behind an HTTP API.",
)

HostOpt = Annotated[str, typer.Option("--host", help="Address the API listens on.")]
PortOpt = Annotated[int, typer.Option("--port", help="Port the API listens on.")]


def _settings() -> Settings:
    from pydantic import ValidationError

    from errand.logs import redact

    try:
        return Settings()
    except ValidationError as err:  # its text shows the values given: mask the secret shapes
        typer.echo(f"errand: bad configuration:\n{redact(str(err))}", err=True)
        raise typer.Exit(2) from err


def _tracing(settings: Settings, *, configure: bool = False) -> None:
    """Check (or set up) the traces the OTEL_* variables ask for; exit 2 if they cannot be."""
    from errand import tracing

    try:
        if configure:
            tracing.configure(settings)
        else:
            tracing.check(settings)
    except tracing.TracingUnavailable as err:
        typer.echo(f"errand: {err}", err=True)
        raise typer.Exit(2) from err


def _require_pinned_versions() -> None:
    from errand.pins import PinMismatch, check_pins

    try:
        check_pins()
    except PinMismatch as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(2) from err


def usable_cores() -> int:
    """Cores this process may run on (a container's CPU set, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _parse_queues(value: str) -> list[QueueName]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    try:
        return [QueueName(n) for n in names]
    except ValueError as err:
        allowed = ", ".join(q.value for q in QueueName)
        raise typer.BadParameter(f"queues are {allowed}") from err


@app.command()
def up(
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    api_workers: Annotated[int, typer.Option(help="API processes; 0 means one per core.")] = 0,
    concurrency: Annotated[
        int | None, typer.Option(help="Jobs per queue per worker process.")
    ] = None,
) -> None:
    """Everything in one command: embedded Valkey (unless ERRAND_REDIS_URL), the API and workers.

    Exits 0 after an orderly stop (SIGTERM or Ctrl-C), 1 when it cannot start or a
    part of it could not (the data dir is in use, the port is busy, a part exited
    before it ever worked), 2 on bad configuration.
    """
    from errand.server.preflight import StartupError
    from errand.server.supervisor import Supervisor, UpOptions

    _require_pinned_versions()
    settings = _settings()
    _tracing(settings)  # the API and worker children set traces up themselves
    api_workers = api_workers or usable_cores()
    sup = Supervisor(settings, UpOptions(host, port, api_workers, workers, concurrency))
    signal.signal(signal.SIGTERM, sup.request_stop)
    signal.signal(signal.SIGINT, sup.request_stop)
    code = 0
    try:
        sup.start()
        if sup.wait_ready():
            typer.echo(sup.banner(__version__))
            sys.stdout.flush()
        sup.supervise()
    except StartupError as err:
        typer.echo(f"errand: {err}", err=True)
        code = 1
    finally:
        sup.stop()
        typer.echo("errand: stopped")
    raise typer.Exit(code)


@app.command()
def secrets(
    data_dir: Annotated[
        Path | None,
        typer.Option(help="The data directory (default: ERRAND_DATA_DIR, else ./.errand)."),
    ] = None,
    api_key: Annotated[
        bool,
        typer.Option("--api-key", help="Print only the default client's API key (for scripts)."),
    ] = False,
    admin_token: Annotated[
        bool,
        typer.Option("--admin-token", help="Print only the admin token (for scripts)."),
    ] = False,
) -> None:
    """Print the secrets `errand up` keeps in a data dir: admin token, webhook secret,
    Valkey password and the default client's API key."""
    from errand.secrets_store import FILE_NAME, load

    folder = data_dir if data_dir is not None else _settings().data_dir
    stored = load(folder)
    if stored is None or (api_key and stored.api_key is None):
        typer.echo(
            f"errand: no {FILE_NAME} in {folder.resolve()} yet (or no API key in it); "
            "`errand up` creates it on its first start",
            err=True,
        )
        raise typer.Exit(1)
    if api_key:
        typer.echo(stored.api_key)
        return
    if admin_token:
        typer.echo(stored.admin_token)
        return
    typer.echo(f"admin token      {stored.admin_token}")
    typer.echo(f"webhook secret   {stored.webhook_secret}")
    if stored.redis_password:
        typer.echo(f"valkey password  {stored.redis_password}")
    if stored.api_key is not None:
        typer.echo(f"API key          {stored.api_key}   (client default, {stored.client_id})")
    typer.echo(
        f"(from {folder.resolve() / FILE_NAME}; ERRAND_ADMIN_TOKEN and "
        "ERRAND_WEBHOOK_SECRET, when set, take their place)"
    )


@app.command()
def api(
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8000,
    workers: Annotated[int, typer.Option(help="API processes; 0 means one per core.")] = 0,
) -> None:
    """Run only the HTTP API against ERRAND_REDIS_URL."""
    import uvicorn

    workers = workers or usable_cores()

    _require_pinned_versions()
    settings = _settings()
    if settings.redis_url is None:
        typer.echo("errand api needs ERRAND_REDIS_URL (or use `errand up`)", err=True)
        raise typer.Exit(2)
    _tracing(settings)  # each API process sets its exporter up in app_from_env
    from errand.api.http.http_protocol import ErrandHttpToolsProtocol
    from errand.logs import configure_logging

    configure_logging(settings)
    uvicorn.run(
        "errand.api.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http=ErrandHttpToolsProtocol,  # httptools + a head-size limit + one write per response
        access_log=False,
        log_level=settings.log_level.lower(),
        log_config=None,
        timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
    )


@app.command()
def worker(
    queues: Annotated[str, typer.Option(help="Comma-separated queues to work on.")] = (
        "reports,notifications,webhooks"
    ),
    concurrency: Annotated[int | None, typer.Option(help="Jobs per queue at once.")] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            help="Serve this worker's /metrics on this port (default: ERRAND_WORKER_METRICS_PORT)."
        ),
    ] = None,
    partitions: Annotated[
        str | None,
        typer.Option(
            help="Take jobs only from these partitions, e.g. 0-3,8 (default: "
            "ERRAND_WORKER_PARTITIONS, else all)."
        ),
    ] = None,
) -> None:
    """Run only workers against ERRAND_REDIS_URL."""
    import asyncio

    import uvloop

    from errand.engine.runner import run_worker
    from errand.logs import configure_logging

    _require_pinned_versions()
    settings = _settings()
    if settings.redis_url is None:
        typer.echo("errand worker needs ERRAND_REDIS_URL (or use `errand up`)", err=True)
        raise typer.Exit(2)
    configure_logging(settings)
    _tracing(settings, configure=True)
    if metrics_port is not None:
        settings = settings.model_copy(update={"worker_metrics_port": metrics_port})
    if partitions is not None:
        settings = settings.model_copy(update={"worker_partitions": partitions})
    try:
        settings.worker_partition_list()
    except ValueError as err:
        typer.echo(f"errand worker: {err}", err=True)
        raise typer.Exit(2) from err
    chosen = _parse_queues(queues)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run_worker(settings, chosen, concurrency))


@app.command()
def demo(
    url: Annotated[
        str | None,
        typer.Option(
            help="Demonstrate this running errand instead of starting one (it must allow "
            "private webhook URLs: the demo's receiver listens on 127.0.0.1)."
        ),
    ] = None,
    admin_token: Annotated[
        str | None,
        typer.Option(envvar="ERRAND_ADMIN_TOKEN", help="With --url: that errand's admin token."),
    ] = None,
    webhook_secret: Annotated[
        str | None,
        typer.Option(
            envvar="ERRAND_WEBHOOK_SECRET", help="With --url: that errand's webhook secret."
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(help="With --url: an API key of that errand (none with ERRAND_AUTH=none)."),
    ] = None,
) -> None:
    """A narrated end-to-end tour: reports, signed webhooks, priorities, retries, the DLQ."""
    from errand.demo import main as run_demo

    raise typer.Exit(run_demo(url, admin_token, webhook_secret, api_key))


@app.command()
def version() -> None:
    """Print errand's version."""
    typer.echo(__version__)


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()
