"""Shared fixtures: one embedded Valkey for the session, an isolated errand stack per test."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from errand.server.embedded import EmbeddedValkey
from support.cluster import ValkeyCluster
from support.stack import Stack, run_stack, test_settings


def image_tests_requested(config: pytest.Config) -> bool:
    """The container image test takes minutes: it runs only when asked for (as run.py's
    `image_test_requested` decides whether to install buildah)."""
    marks = str(config.getoption("markexpr") or "")
    return (
        os.environ.get("ERRAND_TEST_IMAGE") == "1"
        or ("image" in marks and "not image" not in marks)
        or any("test_container_image" in str(arg) for arg in config.args)
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if image_tests_requested(config):
        return
    skip = pytest.mark.skip(
        reason="container image test: select it with -m image, by its file, or ERRAND_TEST_IMAGE=1"
    )
    for item in items:
        if item.get_closest_marker("image"):
            item.add_marker(skip)


def cluster_requested() -> bool:
    """ERRAND_TEST_CLUSTER=1: the session's store is a 3-master Valkey Cluster, so every
    test on the `valkey`/`stack` fixtures runs against a cluster (`redis+cluster://`)."""
    return os.environ.get("ERRAND_TEST_CLUSTER") == "1"


@pytest.fixture(scope="session")
def valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedValkey | ValkeyCluster]:
    """The embedded Valkey binary on a free port (or a cluster of it, see
    `cluster_requested`); every test isolates itself by key prefix."""
    server: EmbeddedValkey | ValkeyCluster
    if cluster_requested():
        server = ValkeyCluster(tmp_path_factory.mktemp("session-cluster"))
    else:
        server = EmbeddedValkey(tmp_path_factory.mktemp("valkey"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def make_settings(valkey: EmbeddedValkey | ValkeyCluster) -> Any:
    def make(**overrides: Any) -> Any:
        return test_settings(valkey.url, **overrides)

    return make


@pytest.fixture
def worker_engine() -> str | None:
    """The `stack` fixture's ERRAND_WORKER_ENGINE (None: the Settings default). A module
    runs on every engine with `pytestmark = BOTH_ENGINES` (support/stack.py)."""
    return None


@pytest.fixture
async def stack(
    make_settings: Any, request: pytest.FixtureRequest, worker_engine: str | None
) -> AsyncIterator[Stack]:
    """API over real HTTP plus one in-loop worker; `@pytest.mark.settings(...)` overrides."""
    marker = request.node.get_closest_marker("settings")
    engine = {"worker_engine": worker_engine} if worker_engine else {}
    overrides = {**engine, **(marker.kwargs if marker else {})}
    async with run_stack(make_settings(**overrides)) as s:
        yield s


@pytest.fixture
def artifacts_dir() -> Path:
    path = Path(__file__).resolve().parent.parent / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path
