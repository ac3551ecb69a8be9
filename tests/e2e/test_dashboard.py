"""The admin dashboard in a real browser (Playwright + Debian's Chromium).

Signs in with the token, watches the counts move as jobs run, retries and deletes
dead-lettered jobs with clicks, opens a job's detail, and saves screenshots at
1280 px and 375 px to test-artifacts/ (and to docs/img/dashboard.png with
ERRAND_UPDATE_DOCS_SCREENSHOT=1).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from support.stack import Stack
from support.waiting import wait_for

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DOCS_IMAGE = Path(__file__).resolve().parents[2] / "docs" / "img" / "dashboard.png"
STEP_TIMEOUT_MS = 15_000

if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed at /usr/bin/chromium", allow_module_level=True)
playwright_api = pytest.importorskip("playwright.async_api")
expect = playwright_api.expect


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with playwright_api.async_playwright() as pw:
        chromium = await pw.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield chromium
        finally:
            await chromium.close()


async def open_page(browser: Any, stack: Stack, width: int, height: int) -> tuple[Any, list[str]]:
    """A fresh tab on /admin/ui; the list collects console errors and page errors."""
    context = await browser.new_context(viewport={"width": width, "height": height})
    page = await context.new_page()
    page.set_default_timeout(STEP_TIMEOUT_MS)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    await page.goto(f"{stack.base_url}/admin/ui")
    return page, errors


async def sign_in(page: Any, token: str) -> None:
    await page.get_by_test_id("token-input").fill(token)
    await page.get_by_test_id("sign-in").click()


def count(page: Any, queue: str, state: str) -> Any:
    return page.locator(f'[data-queue="{queue}"] [data-count="{state}"]')


async def post(stack: Stack, path: str, body: dict[str, Any]) -> str:
    reply = await stack.http.post(path, json=body)
    assert reply.status_code == 202, reply.text
    return str(reply.json()["jobId"])


async def job_view(stack: Stack, job_id: str) -> dict[str, Any]:
    return dict((await stack.http.get(f"/jobs/{job_id}")).json())


@pytest.mark.settings(notify_retries=0, report_seconds=0.5)
async def test_dashboard_live_counts_dlq_actions_and_job_detail(
    stack: Stack, browser: Any, artifacts_dir: Path
) -> None:
    token = stack.settings.admin_token
    assert token is not None
    page, errors = await open_page(browser, stack, 1280, 900)

    # Sign in: a wrong token is refused with a message, the right one opens the app.
    await sign_in(page, "wrong-token")
    await expect(page.locator("#login-error")).to_contain_text("wrong")
    errors.clear()  # the browser logs the refused call (403) as a console error
    await sign_in(page, token.get_secret_value())
    await expect(page.locator("#app")).to_be_visible()
    await expect(page.get_by_test_id("workers-summary")).to_have_text("1 live worker process")
    await expect(page.get_by_test_id("live-status")).to_contain_text("Live")

    # Live counts: jobs wait while no worker runs, then complete.
    await stack.stop_workers()
    reports = [
        await post(stack, "/reports", {"userId": f"u-dash-{n}", "reportType": "activity"})
        for n in range(3)
    ]
    await expect(count(page, "reports", "waiting")).to_have_text("3")
    await expect(page.locator("#jobs-rows tr")).to_have_count(3)
    await expect(page.locator("#jobs-rows [data-status=waiting]")).to_have_count(3)
    await stack.start_worker()
    await expect(count(page, "reports", "completed")).to_have_text("3")
    await expect(count(page, "reports", "waiting")).to_have_text("0")
    await expect(page.locator("#jobs-rows [data-status=completed]")).to_have_count(3)

    # Dead letters show with their failure reason.
    doomed = [
        await post(stack, "/notifications", {"type": "welcome", "userId": f"fail-dash-{n}"})
        for n in range(2)
    ]
    await expect(page.get_by_test_id("dlq-total")).to_have_text("2")
    retry_row = page.locator(f'#dlq-rows tr[data-job-id="{doomed[0]}"]')
    await expect(retry_row).to_contain_text("554 mailbox unavailable")
    await expect(count(page, "notifications", "deadLettered")).to_have_text("2")

    # Retry with a click: it leaves the DLQ and waits (no worker), then runs again.
    await stack.stop_workers()
    await retry_row.get_by_test_id("retry").click()
    await expect(page.locator("#toast")).to_contain_text("queued again")
    await expect(retry_row).to_have_count(0)
    await expect(page.get_by_test_id("dlq-total")).to_have_text("1")
    assert (await job_view(stack, doomed[0]))["status"] == "waiting"
    await stack.start_worker()
    await expect(retry_row).to_have_count(1)  # it ran again and failed again
    await expect(page.get_by_test_id("dlq-total")).to_have_text("2")
    ran_again = await job_view(stack, doomed[0])
    assert ran_again["attemptsMade"] == 1 and ran_again["deadLettered"] is True

    # Delete takes two clicks (arm, confirm).
    delete_row = page.locator(f'#dlq-rows tr[data-job-id="{doomed[1]}"]')
    await delete_row.get_by_test_id("delete").click()
    await expect(delete_row.get_by_test_id("delete")).to_have_text("Confirm delete")
    await delete_row.get_by_test_id("delete").click()
    await expect(delete_row).to_have_count(0)
    assert (await stack.http.get(f"/jobs/{doomed[1]}")).status_code == 404

    await expect(page.locator("#toast")).to_be_hidden()
    await page.screenshot(path=str(artifacts_dir / "dashboard-1280.png"), full_page=True)
    if os.environ.get("ERRAND_UPDATE_DOCS_SCREENSHOT"):  # refresh the README's picture
        DOCS_IMAGE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(artifacts_dir / "dashboard-1280.png", DOCS_IMAGE)

    # A job's detail: status, attempts, data.
    await page.locator(f'#jobs-rows tr[data-job-id="{reports[0]}"]').click()
    detail = page.get_by_test_id("job-detail")
    await expect(detail).to_be_visible()
    await expect(page.locator("#job-title")).to_have_text(reports[0])
    await expect(detail.locator("[data-status]")).to_have_text("completed")
    await expect(detail.get_by_test_id("job-data")).to_contain_text('"userId": "u-dash-0"')
    await expect(detail).to_contain_text("1 of 2")
    await page.screenshot(path=str(artifacts_dir / "dashboard-1280-detail.png"))
    await page.get_by_role("button", name="Close").click()
    await expect(detail).to_be_hidden()

    # The dead-lettered job's detail shows its error and offers the actions.
    await page.locator(f'#dlq-rows tr[data-job-id="{doomed[0]}"] .job-id').click()
    await expect(detail.get_by_test_id("job-error")).to_contain_text("554")
    await expect(detail.get_by_test_id("retry")).to_be_visible()
    await page.keyboard.press("Escape")

    assert errors == [], errors


@pytest.mark.settings(notify_retries=0)
async def test_dashboard_reads_well_at_phone_width(
    stack: Stack, browser: Any, artifacts_dir: Path
) -> None:
    token = stack.settings.admin_token
    assert token is not None
    report = await post(stack, "/reports", {"userId": "u-phone", "reportType": "activity"})
    failed = await post(stack, "/notifications", {"type": "welcome", "userId": "fail-phone"})
    await wait_for(
        lambda: job_view(stack, failed), lambda v: v["status"] == "failed", what="dead-lettered"
    )
    await wait_for(
        lambda: job_view(stack, report), lambda v: v["status"] == "completed", what="report done"
    )

    page, errors = await open_page(browser, stack, 375, 812)
    await page.screenshot(path=str(artifacts_dir / "dashboard-375-login.png"))
    await sign_in(page, token.get_secret_value())
    await expect(page.get_by_test_id("dlq-total")).to_have_text("1")
    await expect(page.locator(f'#jobs-rows tr[data-job-id="{report}"]')).to_be_visible()

    # Nothing overflows sideways at 375 px: the page is as wide as the screen.
    widths = await page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"horizontal overflow at 375 px: {widths}"
    # Table rows turn into labelled blocks.
    label = await page.locator("#dlq-rows td").first.evaluate(
        "td => getComputedStyle(td, '::before').content"
    )
    assert re.search(r"Job", label), label

    await page.screenshot(path=str(artifacts_dir / "dashboard-375.png"), full_page=True)
    await page.locator(f'#jobs-rows tr[data-job-id="{report}"]').click()
    await expect(page.get_by_test_id("job-detail")).to_be_visible()
    await page.screenshot(path=str(artifacts_dir / "dashboard-375-detail.png"))

    # Signing out forgets the token for this tab.
    await page.keyboard.press("Escape")
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.locator("#login")).to_be_visible()
    assert await page.evaluate("() => sessionStorage.length") == 0
    assert errors == [], errors
