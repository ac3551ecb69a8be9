"""A bare python `bullmq` Worker with a no-op processor: the yardstick for errand's worker.

    python bench/bare_worker.py REDIS_URL PREFIX CONCURRENCY [QUEUE]

Prints `ready` once the worker runs; stops gracefully on SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import uvloop
from bullmq import Worker


async def noop(job: object, token: str) -> None:
    return None


async def main(url: str, prefix: str, concurrency: int, queue: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    worker = Worker(queue, noop, {"connection": url, "prefix": prefix, "concurrency": concurrency})
    print("ready", flush=True)
    await stop.wait()
    await worker.close()


if __name__ == "__main__":
    url, prefix, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3])
    queue = sys.argv[4] if len(sys.argv) > 4 else "notifications"
    uvloop.run(main(url, prefix, concurrency, queue))
