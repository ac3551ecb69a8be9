"""PromotionTurns: one promoting fetch at a time, the partition still promoting first."""

from __future__ import annotations

import asyncio

import pytest

from errand.engine.gate import PromotionTurns

P0, P1 = object(), object()


async def _taker(turns: PromotionTurns, owner: object, name: str, order: list[str]) -> None:
    await turns.take(owner)
    order.append(name)


async def test_one_turn_at_a_time_and_the_promoting_partition_keeps_it() -> None:
    turns = PromotionTurns()
    await turns.take(P0)
    order: list[str] = []
    tasks = [
        asyncio.create_task(_taker(turns, owner, name, order))
        for owner, name in ((P1, "p1"), (P0, "p0-b"))
    ]
    await asyncio.sleep(0)
    assert order == []  # the first turn is still running
    turns.give(P0, still_due=True)  # P0 still has due jobs: its own slot goes before P1's
    await asyncio.sleep(0)
    assert order == ["p0-b"]
    turns.give(P0, still_due=False)  # P0 is done: P1 gets the turn
    await asyncio.gather(*tasks)
    assert order == ["p0-b", "p1"]
    turns.give(P1, still_due=False)
    await asyncio.wait_for(turns.take(P0), 1)  # free again: taken at once


async def test_a_waiter_cancelled_when_granted_passes_the_turn_on() -> None:
    turns = PromotionTurns()
    await turns.take(P0)
    order: list[str] = []
    first = asyncio.create_task(_taker(turns, P1, "first", order))
    second = asyncio.create_task(_taker(turns, P1, "second", order))
    await asyncio.sleep(0)
    turns.give(P0, still_due=False)  # granted to `first`, which is cancelled before it runs
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, 1)
    assert order == ["second"]


async def test_a_free_turn_is_taken_at_once_even_while_another_partition_has_due_jobs() -> None:
    turns = PromotionTurns()
    await turns.take(P0)
    turns.give(P0, still_due=True)  # P0 has due jobs left but no slot waiting
    await asyncio.wait_for(turns.take(P1), 1)
