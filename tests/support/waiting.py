"""Wait on conditions with deadlines, never on fixed sleeps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

POLL_S = 0.02


async def wait_for(
    probe: Callable[[], Awaitable[T]],
    until: Callable[[T], bool] = bool,
    timeout_s: float = 10.0,
    what: str = "condition",
) -> T:
    """Call `probe` until `until(result)` holds; fail with the last result after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    result = await probe()
    while not until(result):
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout_s:g} s waiting for {what}; last: {result!r}"
            )
        await asyncio.sleep(POLL_S)
        result = await probe()
    return result


def wait_sync(
    probe: Callable[[], T],
    until: Callable[[T], bool] = bool,
    timeout_s: float = 10.0,
    what: str = "condition",
) -> T:
    deadline = time.monotonic() + timeout_s
    result = probe()
    while not until(result):
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout_s:g} s waiting for {what}; last: {result!r}"
            )
        time.sleep(POLL_S)
        result = probe()
    return result
