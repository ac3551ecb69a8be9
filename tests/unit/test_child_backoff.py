"""Restart backoff of `errand up`'s children: doubling from 1 s, capped, reset by a good run."""

from __future__ import annotations

from errand.server.children import BACKOFF_CAP_S, STABLE_AFTER_S, Child


def test_backoff_doubles_up_to_the_cap_while_a_child_keeps_crashing() -> None:
    child = Child("worker-1", ["true"])
    delays = [child.schedule_restart(now=child.started_at + 0.5) for _ in range(8)]
    assert delays == [1, 2, 4, 8, 16, BACKOFF_CAP_S, BACKOFF_CAP_S, BACKOFF_CAP_S]


def test_a_long_good_run_resets_the_backoff() -> None:
    child = Child("worker-1", ["true"])
    for _ in range(5):
        child.schedule_restart(now=child.started_at + 0.5)
    assert child.schedule_restart(now=child.started_at + STABLE_AFTER_S) == 1
    assert child.restart_at == child.started_at + STABLE_AFTER_S + 1
