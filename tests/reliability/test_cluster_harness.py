"""The cluster harness itself: replicas attach, a killed master's replica takes over."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.cluster import FAILOVER_NODE_TIMEOUT_MS, ValkeyCluster

pytestmark = pytest.mark.slow


def test_a_replica_takes_over_a_killed_master(tmp_path: Path) -> None:
    cluster = ValkeyCluster(
        tmp_path, masters=3, replicas=1, node_timeout_ms=FAILOVER_NODE_TIMEOUT_MS
    )
    try:
        cluster.start()
        assert len(cluster.masters()) == 3 and len(cluster.nodes) == 6
        victim = cluster.master_of("{p1}:k")
        with cluster.client(victim) as client:
            client.set("{p1}:k", "v")
            assert client.wait(1, 2000) == 1
        cluster.kill(victim)
        seconds = cluster.wait_failover(victim)
        assert seconds < 20
        survivor = cluster.master_of("{p1}:k")
        assert survivor.port != victim.port
        with cluster.client(survivor) as client:
            assert client.get("{p1}:k") == "v"
        assert len(cluster.masters()) == 3
    finally:
        cluster.stop()
