"""A representative part of the integration flow tests, run against a 3-master Valkey
Cluster: the same test files, with ERRAND_TEST_CLUSTER=1 making the session's store a
cluster (tests/conftest.py). The whole flow suite runs the same way by hand:

    ERRAND_TEST_CLUSTER=1 .venv/bin/pytest tests/integration
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

ROOT = Path(__file__).resolve().parents[2]
FLOWS = [
    "tests/integration/test_reports.py",
    "tests/integration/test_notifications.py",
    "tests/integration/test_ownership.py",
    "tests/integration/test_batch.py",
    # 2,000 long-polls woken at once: one pipelined connection per partition, not one each
    "tests/integration/test_waiting.py::test_two_thousand_long_polls_share_a_handful_of_redis_connections",
]


def test_flow_tests_pass_on_a_cluster(tmp_path: Path) -> None:
    env = {**os.environ, "ERRAND_TEST_CLUSTER": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *FLOWS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=380,
        check=False,
    )
    tail = "\n".join(done.stdout.splitlines()[-30:])
    assert done.returncode == 0, f"flow tests failed on the cluster:\n{tail}\n{done.stderr[-2000:]}"
    assert " passed" in tail and "failed" not in tail, tail
