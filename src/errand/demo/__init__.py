"""`errand demo`: an end-to-end tour of a live errand, narrated as a timeline, checked step by step.

It starts its own errand (`errand up` in a subprocess, a temporary data directory,
fast settings) unless given `--url`, runs a signed-webhook receiver on 127.0.0.1,
and walks through reports, webhooks, priorities, retries and the dead-letter queue
(`steps.py`). The exit code is 0 only when every step behaved as documented;
whatever the demo started is stopped on the way out.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator

import httpx
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from errand.demo.harness import (
    STEP_TIMEOUT_S,
    Demo,
    StepFailed,
    Target,
    Timeline,
    own_errand,
    serve_receiver,
)
from errand.demo.steps import STEPS

# --- the run --------------------------------------------------------------------------------


async def run_steps(demo: Demo) -> list[tuple[str, bool, str]]:
    results = []
    for number, (title, step) in enumerate(STEPS, 1):
        demo.timeline.rule(f"{number}. {title}")
        try:
            async with asyncio.timeout(STEP_TIMEOUT_S * 2):
                outcome = await step(demo)
        except Exception as err:  # a step that breaks is a failed step; the others still run
            reason = str(err) if isinstance(err, StepFailed) else f"{type(err).__name__}: {err}"
            demo.timeline.say(f"✗ {reason}", "bold red")
            results.append((title, False, reason))
        else:
            demo.timeline.ok(outcome)
            results.append((title, True, outcome))
    return results


@contextlib.asynccontextmanager
async def errand_target(
    timeline: Timeline,
    url: str | None,
    admin_token: str | None,
    webhook_secret: str | None,
    api_key: str | None = None,
) -> AsyncIterator[Target]:
    if url is None:
        async with own_errand(timeline) as target:
            yield target
        return
    if not admin_token or not webhook_secret:
        raise StepFailed(
            "with --url, give --admin-token and --webhook-secret "
            "(or ERRAND_ADMIN_TOKEN and ERRAND_WEBHOOK_SECRET)"
        )
    timeline.say(f"using the errand at {url} (it must allow private webhook URLs)")
    yield Target(url.rstrip("/"), admin_token, webhook_secret, owned=False, api_key=api_key)


async def run_demo(
    url: str | None,
    admin_token: str | None,
    webhook_secret: str | None,
    console: Console | None = None,
    api_key: str | None = None,
) -> int:
    """The whole demo; returns the exit code (0 only when every step behaved)."""
    timeline = Timeline(console or Console(highlight=False))
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:  # SIGTERM stops the demo like Ctrl-C: cancel once, clean up
        loop.add_signal_handler(signal.SIGTERM, lambda: task.cancelling() or task.cancel())
    try:
        async with (
            errand_target(timeline, url, admin_token, webhook_secret, api_key) as target,
            serve_receiver(target.webhook_secret) as receiver,
            httpx.AsyncClient(
                base_url=target.url, timeout=STEP_TIMEOUT_S, headers=_client_headers(target)
            ) as http,
        ):
            timeline.say(f"webhook receiver on {receiver.base_url}")
            results = await run_steps(Demo(target, http, receiver, timeline))
    except (StepFailed, httpx.HTTPError, OSError) as err:
        timeline.say(f"✗ {err}", "bold red")
        return 1
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
    return _summary(timeline.console, results)


def _client_headers(target: Target) -> dict[str, str]:
    """The demo acts as one client (admin calls name the admin token instead)."""
    return {"Authorization": f"Bearer {target.api_key}"} if target.api_key else {}


def _summary(console: Console, results: list[tuple[str, bool, str]]) -> int:
    table = Table(title="errand demo", show_lines=False)
    table.add_column("step")
    table.add_column("result")
    for title, passed, detail in results:
        table.add_row(
            escape(title), f"[green]✓ {escape(detail)}" if passed else f"[red]✗ {escape(detail)}"
        )
    console.print(table)
    failed = sum(1 for _, passed, _ in results if not passed)
    if failed:
        console.print(f"[bold red]{failed} of {len(results)} steps did not behave as expected")
        return 1
    console.print(f"[bold green]all {len(results)} steps behaved as expected")
    return 0


def main(
    url: str | None,
    admin_token: str | None,
    webhook_secret: str | None,
    api_key: str | None = None,
) -> int:
    """Entry point of `errand demo`. Ctrl-C or SIGTERM stops it (and what it started)."""
    try:
        return asyncio.run(run_demo(url, admin_token, webhook_secret, api_key=api_key))
    except (KeyboardInterrupt, asyncio.CancelledError):
        Console().print("[bold red]demo interrupted")
        return 130
