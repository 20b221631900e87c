"""An operator watches TopicDesk: /healthz for the monitor, /metrics for Prometheus.

The daemon runs in-process against the fake Bot API with `health.listen` on a free
loopback port, and is asked over real HTTP.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.config import Settings
from bot.daemon import Daemon
from bot.fake_telegram import GROUP_ID, FakeTelegram
from bot.health import daemon_health, healthz_url
from bot.preflight import StartupError
from tests.conftest import RunningDesk
from tests.e2e.test_conversation import AGENT, ALICE, open_ticket, wait_for_bot_text

MAX_POLL_AGE = 3.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def desk_env(desk_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The shared environment, plus the health endpoint on a free port and short polls."""
    extra = {
        "TOPICDESK_HEALTH__LISTEN": f"127.0.0.1:{free_port()}",
        "TOPICDESK_HEALTH__MAX_POLL_AGE": str(MAX_POLL_AGE),
        "TOPICDESK_TELEGRAM__POLLING_TIMEOUT": "1",
    }
    for name, value in extra.items():
        monkeypatch.setenv(name, value)
    return {**desk_env, **extra}


async def get(settings: Settings, path: str) -> tuple[int, str, str]:
    """GET a page of the running daemon's health endpoint: status, content type, body."""
    url = healthz_url(settings.health).removesuffix("/healthz") + path
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, response.headers["Content-Type"], await response.text()


async def healthz(settings: Settings) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(healthz_url(settings.health)) as response,
    ):
        return response.status, await response.json()


async def wait_for_health(
    settings: Settings, wanted: Callable[[int], bool], timeout: float
) -> tuple[int, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        status, body = await healthz(settings)
        if wanted(status) or time.monotonic() > deadline:
            return status, body
        await asyncio.sleep(0.2)


async def settled(desk: RunningDesk, timeout: float = 10.0) -> None:
    """Wait until the outbox is empty, as the housekeeper's gauge shows it."""
    assert desk.daemon is not None
    housekeeper, metrics = desk.daemon.housekeeper, desk.daemon.metrics
    assert housekeeper is not None
    deadline = time.monotonic() + timeout
    while True:
        await housekeeper.tidy()
        if metrics.registry.get_sample_value("topicdesk_outbox_depth") == 0:
            return
        assert time.monotonic() < deadline, "the outbox did not empty"
        await asyncio.sleep(0.1)


def metric_samples(page: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics page by name and labels; parsing fails on a bad page."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(page)
        for sample in family.samples
    }


async def test_healthz_is_ok_while_polling(desk: RunningDesk) -> None:
    status, body = await wait_for_health(desk.settings, lambda s: s == 200, timeout=5)

    assert status == 200
    assert body["status"] == "ok"
    assert "reasons" not in body
    assert body["checks"]["polling"]["seconds_since_poll"] <= MAX_POLL_AGE
    assert body["checks"]["database"] == {"ok": True}
    assert body["checks"]["sender"]["circuit_breaker"] == "closed"


async def test_healthz_fails_with_the_reason_while_getupdates_fails_then_recovers(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    await wait_for_health(desk.settings, lambda s: s == 200, timeout=5)
    telegram.fail("getUpdates", error_code=502, description="Bad Gateway", times=1000)

    status, body = await wait_for_health(desk.settings, lambda s: s == 503, timeout=15)

    assert status == 503
    assert body["status"] == "failing"
    assert len(body["reasons"]) == 1
    assert body["reasons"][0].startswith("getUpdates last succeeded")
    assert body["checks"]["polling"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True
    [check] = await daemon_health(desk.settings)
    assert not check.ok
    assert "failing: getUpdates last succeeded" in check.detail

    telegram.clear_faults()
    status, body = await wait_for_health(desk.settings, lambda s: s == 200, timeout=30)
    assert (status, body["status"]) == (200, "ok")


async def test_metrics_parse_and_count_what_the_desk_did(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    telegram.add_user(ALICE, "Alice", "Smith")
    telegram.add_user(AGENT, "Bob", "Agent")
    # The customer's first words were received some 1000 s before the answer reaches them.
    thread = await open_ticket(telegram, ALICE, date=int(time.time()) - 1000)
    telegram.send_group(AGENT, "Refund is on its way.", thread_id=thread)
    await wait_for_bot_text(telegram, ALICE, "Refund is on its way.")
    telegram.send_group(AGENT, "Anything else?", thread_id=thread)
    await wait_for_bot_text(telegram, ALICE, "Anything else?")
    await settled(desk)

    status, content_type, page = await get(desk.settings, "/metrics")

    assert status == 200
    assert content_type.startswith("text/plain; version=0.0.4")
    samples = metric_samples(page)
    handled = samples[("topicdesk_updates_processed_total", (("outcome", "handled"),))]
    assert handled >= 5
    assert samples[("topicdesk_outbox_depth", ())] == 0
    assert samples[("topicdesk_open_tickets", ())] == 1
    assert samples[("topicdesk_dead_letters", ())] == 0
    assert samples[("topicdesk_circuit_breaker_open", ())] == 0
    assert samples[("topicdesk_seconds_since_last_poll", ())] <= MAX_POLL_AGE
    assert ("topicdesk_pending_update_count", ()) in samples
    sent = samples[("topicdesk_sends_total", (("method", "copyMessage"), ("result", "sent")))]
    assert sent >= 2
    # Only the first reply counts, timed from the customer's first message (Telegram's
    # date on it) to the reply's delivery.
    assert samples[("topicdesk_first_response_seconds_count", ())] == 1
    assert 990 <= samples[("topicdesk_first_response_seconds_sum", ())] <= 1010
    assert samples[("topicdesk_first_response_seconds_bucket", (("le", "900.0"),))] == 0
    assert samples[("topicdesk_first_response_seconds_bucket", (("le", "1800.0"),))] == 1


async def test_a_deleted_topic_is_found_and_replaced_by_reconciliation(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    telegram.add_user(ALICE, "Alice", "Smith")
    old = await open_ticket(telegram, ALICE)
    await telegram.wait_until(
        lambda: len(telegram.chat_messages(GROUP_ID, old)) >= 3, what="the card and first words"
    )
    await settled(desk)  # probes wait while the group has messages queued
    telegram.delete_topic(GROUP_ID, old)

    await desk.daemon.housekeeper.reconcile()  # type: ignore[union-attr]

    card = await wait_for_bot_text(telegram, GROUP_ID, "replaces one that was deleted")
    new = card["message_thread_id"]
    assert new != old
    assert telegram.topics[GROUP_ID][new].name == "#1 · Alice Smith · Billing"
    telegram.send_private(ALICE, "Still there?")
    await wait_for_bot_text(telegram, GROUP_ID, "Still there?", thread_id=new)
    _, _, page = await get(desk.settings, "/metrics")
    assert (
        metric_samples(page)[
            ("topicdesk_reconciliation_findings_total", (("kind", "topic_missing"),))
        ]
        == 1
    )

    # The new topic is there: probing it again finds nothing.
    probes = len(telegram.calls_to("reopenForumTopic"))
    await settled(desk)
    await desk.daemon.housekeeper.reconcile()  # type: ignore[union-attr]
    await telegram.wait_until(
        lambda: len(telegram.calls_to("reopenForumTopic")) > probes, what="the second probe"
    )
    await settled(desk)
    _, _, page = await get(desk.settings, "/metrics")
    findings = metric_samples(page)
    assert findings[("topicdesk_reconciliation_findings_total", (("kind", "topic_missing"),))] == 1
    assert len(telegram.calls_to("createForumTopic")) == 2  # the first and its replacement


async def test_check_says_when_no_daemon_answers(settings: Settings) -> None:
    [check] = await daemon_health(settings)

    assert check.ok
    assert check.warning
    assert "nothing answers at http://127.0.0.1:" in check.detail


async def test_check_reports_a_healthy_daemon(desk: RunningDesk) -> None:
    await wait_for_health(desk.settings, lambda s: s == 200, timeout=5)

    [check] = await daemon_health(desk.settings)

    assert check.ok
    assert not check.warning
    assert check.detail.startswith(f"{healthz_url(desk.settings.health)}: ok")


async def test_a_health_address_already_in_use_stops_the_start_with_one_sentence(
    telegram: FakeTelegram, settings: Settings
) -> None:
    with socket.socket() as taken:
        taken.bind((settings.health.host, settings.health.port))
        taken.listen()
        with pytest.raises(StartupError, match=r"^health\.listen 127\.0\.0\.1:\d+: cannot listen"):
            await asyncio.wait_for(Daemon(settings).run(handle_signals=False), 15)
