"""Fixtures for crash, chaos, outage and scale tests: an API without in-loop workers, and
worker processes the test starts, kills and restarts by pid."""

from __future__ import annotations

import random
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from errand.server.embedded import EmbeddedValkey, free_port, valkey_binary
from support.processes import Processes, WorkerPool, processes
from support.stack import Stack, run_stack
from support.waiting import wait_for, wait_sync


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    with processes(tmp_path) as started:
        yield started


@pytest.fixture
async def api(make_settings: Any, request: pytest.FixtureRequest) -> AsyncIterator[Stack]:
    """The API over real HTTP on the session's Valkey, with no worker: tests run their own."""
    marker = request.node.get_closest_marker("settings")
    overrides = marker.kwargs if marker else {}
    async with run_stack(make_settings(**overrides), with_worker=False) as stack:
        yield stack


async def outbox_ids(stack: Stack) -> list[str]:
    """Message-IDs in the simulated outbox (one entry per email that went out)."""
    raw = await stack.redis.lrange(stack.keys.outbox(), 0, -1)
    return [orjson.loads(item)["messageId"] for item in raw]


def message_id(job_id: str) -> str:
    return f"<{job_id}@errand.local>"


async def drive_chaos(
    pool: WorkerPool, done: Any, rng: random.Random, timeout_s: float, kill_every_s: float
) -> None:
    """Until `done()`: kill a random worker every ~`kill_every_s`, restart the dead ones.

    A kill that finds no worker taking jobs yet (all restarting) is retried on the next
    tick instead of skipped, so a fast run still gets its kills.
    """
    next_kill = time.monotonic() + kill_every_s * rng.uniform(0.5, 1.5)

    async def tick() -> bool:
        nonlocal next_kill
        pool.revive()
        if time.monotonic() >= next_kill and pool.kill_random(rng) is not None:
            next_kill = time.monotonic() + kill_every_s * rng.uniform(0.5, 1.5)
        return bool(await done())

    await wait_for(tick, timeout_s=timeout_s, what="every job to finish under chaos")


class ValkeyCluster:
    """Three cluster-enabled masters from the embedded binary, joined by `valkey-cli --cluster`."""

    def __init__(self, data_dir: Path, masters: int = 3) -> None:
        self.nodes = [
            EmbeddedValkey(
                data_dir / f"node{n}",
                # The bus port is given: the default (port + 10000) overflows for
                # ephemeral ports.
                extra_args=["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                            "--cluster-node-timeout", "3000", "--cluster-port", str(free_port())],
            )
            for n in range(masters)
        ]

    @property
    def url(self) -> str:
        node = self.nodes[0]
        return f"redis+cluster://{node.host}:{node.port}"

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        cli = valkey_binary().with_name("valkey-cli")
        addresses = [f"{n.host}:{n.port}" for n in self.nodes]
        subprocess.run(
            [str(cli), "--cluster", "create", *addresses, "--cluster-replicas", "0",
             "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )
        for node in self.nodes:
            wait_sync(lambda node=node: self.cluster_state(node, cli),
                      lambda state: state == "ok", timeout_s=30, what="cluster_state:ok")

    @staticmethod
    def cluster_state(node: EmbeddedValkey, cli: Path) -> str:
        out = subprocess.run(
            [str(cli), "-h", node.host, "-p", str(node.port), "cluster", "info"],
            capture_output=True, text=True, timeout=10,
        ).stdout
        for line in out.splitlines():
            if line.startswith("cluster_state:"):
                return line.split(":", 1)[1].strip()
        return ""

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@pytest.fixture(scope="module")
def valkey_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ValkeyCluster]:
    cluster = ValkeyCluster(tmp_path_factory.mktemp("cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
