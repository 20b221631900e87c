"""The playground in a real browser: a customer fills the form in the page, an agent
answers in the new topic, and the answer appears in the customer's pane.

Driven with Playwright's Python package against Debian's own Chromium (no browser
download). Where either is missing the test is skipped, saying which and how to get it.
The test leaves a screenshot: at $TOPICDESK_SCREENSHOT when set (how the README's
docs/playground.png is refreshed), else in the test's temporary folder.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

import pytest

from bot.sandbox import CUSTOMERS
from tests.e2e.test_conversation import open_ticket
from tests.e2e.test_playground_api import running_playground

CHROMIUM = Path("/usr/bin/chromium")
# Headless, and nothing that reaches out to Google's services (which fail here).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1200, "height": 700}
# Generous: the first launch of Chromium on a cold machine takes a few seconds.
STEP_MS = 20_000


def chromium() -> Path:
    """Debian's Chromium, or a skip that says how to install it."""
    found = CHROMIUM if CHROMIUM.exists() else None
    if found is None and (which := shutil.which("chromium")):
        found = Path(which)
    if found is None:
        pytest.skip(
            f"no Chromium at {CHROMIUM}: the browser test needs Debian's package "
            "(apt-get install chromium)"
        )
    return found


async def test_a_customer_fills_the_form_and_an_agent_answers_in_the_page(
    tmp_path: Path,
) -> None:
    playwright_api = pytest.importorskip(
        "playwright.async_api",
        reason="the browser test needs Playwright's Python package (pip install '.[test]')",
    )
    executable = chromium()
    bruno = CUSTOMERS[1].user_id
    shot = Path(os.environ.get("TOPICDESK_SCREENSHOT") or tmp_path / "playground.png")
    started = time.monotonic()
    async with running_playground() as (sandbox, url), playwright_api.async_playwright() as pw:
        # The desk is already busy with another customer's ticket.
        await open_ticket(sandbox.telegram, bruno, "Hi! My invoice looks wrong")
        browser = await pw.chromium.launch(executable_path=str(executable), args=CHROMIUM_FLAGS)
        try:
            page = await browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(STEP_MS)
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            await page.goto(url)
            customer = page.locator("#customer-messages")
            topic = page.locator("#topic-messages")
            expect = playwright_api.expect

            # Alice (the first customer, chosen already) writes and answers the form.
            await expect(page.locator("#customers .person.selected")).to_contain_text("Alice")
            await page.locator("#customer-text").fill("Hi! The app crashes when I open it")
            await page.locator("#customer-text").press("Enter")
            await customer.get_by_role("button", name="Technical problem").click()
            await expect(customer).to_contain_text("describe the problem")
            await page.locator("#customer-text").fill(
                "Since this morning's update it closes right after the splash screen."
            )
            await page.locator("#customer-form .send").click()
            await expect(customer).to_contain_text("Your ticket #2 is open")

            # Eli takes it, in the new topic.
            await page.locator("#topic-list .topic-item", has_text="Alice Martin").click()
            await expect(page.locator("#topic-title")).to_have_text(
                "#2 · Alice Martin · Technical problem"
            )
            await expect(page.locator("#card-bar")).to_contain_text("Ticket #2")
            await expect(topic).to_contain_text("The app crashes when I open it")
            await page.locator("#agents .person", has_text="Eli").click()
            answer = "Hi Alice, Eli here: a fix is on its way. Reinstalling helps meanwhile."
            await page.locator("#agent-text").fill(answer)
            await page.locator("#agent-text").press("Enter")

            # The answer reaches her pane, as a message from the bot.
            await expect(customer.locator(".row:not(.out)").last).to_contain_text(answer)
            await expect(topic.locator(".row.out").last).to_contain_text(answer)
            relayed = page.locator('[data-meter="relayed_to_customers"] .meter-value')
            await expect(relayed).to_have_text("1")
            assert errors == []

            await sandbox.settled()
            await page.locator("#agent-text").blur()
            await page.wait_for_timeout(600)  # the page's next poll
            shot.parent.mkdir(parents=True, exist_ok=True)
            await page.screenshot(path=str(shot))
        finally:
            await browser.close()
    assert (await asyncio.to_thread(shot.read_bytes))[:8] == b"\x89PNG\r\n\x1a\n"
    assert time.monotonic() - started < 120
