"""The `/metrics` endpoint of one worker process (ERRAND_WORKER_METRICS_PORT)."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from prometheus_client import start_http_server

from errand.metrics.registry import metrics

log = logging.getLogger("errand.metrics")


class WorkerMetricsServer:
    """The `/metrics` endpoint of one worker process (prometheus_client's own HTTP thread)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._server: Any = None

    def start(self) -> None:
        """Raises OSError, naming the address, when the port is taken."""
        try:
            self._server, _ = start_http_server(self.port, self.host, registry=metrics().registry)
        except OSError as err:
            raise OSError(f"cannot serve worker metrics on {self.host}:{self.port}: {err}") from err
        log.info("worker metrics on http://%s:%d/metrics", self.host, self._server.server_port)

    def stop(self) -> None:
        if self._server is not None:
            with contextlib.suppress(Exception):
                self._server.shutdown()
                self._server.server_close()
            self._server = None
