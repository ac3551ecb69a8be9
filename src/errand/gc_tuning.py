"""Garbage-collector settings for long-lived errand processes.

A started API or worker process holds a few hundred thousand long-lived objects
(FastAPI's routes and models, pydantic validators, BullMQ's scripts) that every
full collection walks again, and each request makes enough short-lived container
objects to trigger a young collection every few requests. Freezing what exists
after startup takes it out of every later collection, and a larger young
generation makes collections rarer; together they cut the API's CPU per request
by ~11 % and its p99 under load from ~80 ms to ~17 ms (docs/performance.md).
Memory stays bounded: cycles are still collected, in bigger batches.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000  # CPython's default is 700 (2,000 from 3.13 on)


def tune_after_startup() -> None:
    """Call once the process has built everything it keeps until it exits."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
