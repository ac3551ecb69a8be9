"""One real `errand up` (subprocess, free port, tmp data dir) for every client test."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from errand.server.embedded import free_port
from support.faulty_proxy import FaultyProxy
from support.processes import errand_env, processes, wait_ready

REPORT_SECONDS = 1.0


@dataclass(frozen=True)
class ErrandServer:
    base_url: str
    port: int
    webhook_secret: str

    def paths(self) -> set[str]:
        """The routes the server's OpenAPI describes, `{param}` names blanked."""
        spec = httpx.get(f"{self.base_url}/openapi.json", timeout=10).json()
        return {
            re.sub(r"\{[^}]*\}", "{}", path) + f" {method.upper()}"
            for path, ops in spec["paths"].items()
            for method in ops
        }


@pytest.fixture(scope="package")
def errand_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ErrandServer]:
    tmp = tmp_path_factory.mktemp("client-up")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = errand_env(
        data_dir=tmp / "data", report_seconds=REPORT_SECONDS, email_send_ms=50, auth="none"
    )
    with processes(tmp) as procs:
        up = procs.up(port, env)
        wait_ready(base, up)
        yield ErrandServer(base, port, env["ERRAND_WEBHOOK_SECRET"])


@pytest.fixture
def proxy(errand_server: ErrandServer) -> Iterator[FaultyProxy]:
    """A fresh fault-injecting proxy in front of the server, per test."""
    faulty = FaultyProxy(errand_server.port).start()
    try:
        yield faulty
    finally:
        faulty.stop()
