"""What the desk cannot handle never stops it and never loses a customer's words."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from asyncio.subprocess import PIPE
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.fake_telegram import GROUP_ID, FakeTelegram
from bot.services import tickets as desk_rules
from bot.services.incoming import Incoming
from storage.tickets import Ticket
from tests.conftest import RunningDesk, desk_with
from tests.e2e.test_conversation import ALICE, open_ticket, wait_for_bot_text

ADMIN = 900  # TOPICDESK_SUPPORT__ADMIN_IDS in the desk_env fixture


def quarantined(database: Path) -> list[tuple[int, str, str]]:
    conn = sqlite3.connect(database)
    try:
        return conn.execute(
            "SELECT update_id, stage, error FROM quarantined_updates ORDER BY update_id"
        ).fetchall()
    finally:
        conn.close()


def ledger(database: Path, update_id: int) -> str | None:
    conn = sqlite3.connect(database)
    try:
        row = conn.execute(
            "SELECT outcome FROM processed_updates WHERE update_id = ?", (update_id,)
        ).fetchone()
    finally:
        conn.close()
    return None if row is None else str(row[0])


async def topicdesk(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """The command line, as an admin runs it beside the daemon."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args, env=env, stdout=PIPE, stderr=PIPE
    )
    out, err = await process.communicate()
    return int(process.returncode or 0), out.decode(), err.decode()


async def confirmed(telegram: FakeTelegram, update_id: int) -> None:
    await telegram.wait_until(
        lambda: all(u["update_id"] != update_id for u in telegram.pending_updates),
        what=f"update {update_id} confirmed",
    )


async def test_an_update_of_a_kind_nobody_knows_is_quarantined_and_the_desk_goes_on(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    telegram.add_user(ADMIN, "Desk", "Admin")
    telegram.add_user(ALICE, "Alice", "Smith")
    strange = telegram.enqueue_update(
        {"managed_bot_story": {"id": 7, "note": "a kind from a newer Bot API"}},
        queued_before_filter=True,
    )
    await confirmed(telegram, strange)

    # The desk still serves customers.
    telegram.send_private(ALICE, "Hello")
    await wait_for_bot_text(telegram, ALICE, "What is your question about?")
    assert desk.task is not None
    assert not desk.task.done()
    database = desk.settings.storage.path
    [(update_id, stage, error)] = quarantined(database)
    assert (update_id, stage) == (strange, "kind")
    assert "UpdateTypeLookupError" in error
    assert ledger(database, strange) == "quarantined"
    # The admins are told once per kind of error, not once per update.
    await wait_for_bot_text(telegram, ADMIN, "quarantined an update")
    again = telegram.enqueue_update({"managed_bot_story": {"id": 8}}, queued_before_filter=True)
    await confirmed(telegram, again)
    telegram.send_private(ALICE, "Billing")
    await wait_for_bot_text(telegram, ALICE, "describe the problem")
    reports = [m for m in telegram.bot_messages(ADMIN) if "quarantined" in (m.get("text") or "")]
    assert len(reports) == 1


async def test_an_update_the_models_refuse_does_not_stop_intake(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    telegram.add_user(ALICE, "Alice", "Smith")
    broken = telegram.enqueue_update(
        {"message": {"message_id": 5, "date": 1700000000, "text": "no chat, no sender"}}
    )
    telegram.send_private(ALICE, "Hello")  # in the same getUpdates batch
    await wait_for_bot_text(telegram, ALICE, "What is your question about?")
    await confirmed(telegram, broken)
    [(update_id, stage, _)] = quarantined(desk.settings.storage.path)
    assert (update_id, stage) == (broken, "parse")


async def test_a_handler_bug_quarantines_the_update_the_message_reaches_the_agents_and_replays(
    telegram: FakeTelegram,
    desk: RunningDesk,
    desk_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    telegram.add_user(ALICE, "Alice", "Smith")
    thread = await open_ticket(telegram, ALICE)
    relay = desk_rules.relay

    async def buggy_relay(db, settings, ticket: Ticket, message: Incoming, direction):  # type: ignore[no-untyped-def]
        if message.text == "this one trips a bug":
            raise RuntimeError("a bug in the relay")
        await relay(db, settings, ticket, message, direction)

    monkeypatch.setattr(desk_rules, "relay", buggy_relay)
    telegram.send_private(ALICE, "this one trips a bug")
    telegram.send_private(ALICE, "and this one is fine")

    # Passed to people all the same: copied into the ticket's topic, with a note.
    await wait_for_bot_text(telegram, GROUP_ID, "this one trips a bug", thread_id=thread)
    await wait_for_bot_text(telegram, GROUP_ID, "could not be handled normally", thread_id=thread)
    await wait_for_bot_text(telegram, GROUP_ID, "and this one is fine", thread_id=thread)
    [(update_id, stage, error)] = quarantined(desk.settings.storage.path)
    assert stage == "handler"
    assert "a bug in the relay" in error

    # After the fix, an admin replays it while the daemon runs.
    monkeypatch.setattr(desk_rules, "relay", relay)
    env = {**os.environ, **desk_env}
    code, out, err = await topicdesk(env, "updates", "list")
    assert code == 0, err
    assert f"{update_id}" in out
    assert "a bug in the relay" in out
    code, out, err = await topicdesk(env, "updates", "replay", "--all")
    assert code == 0, err
    assert "1 update(s) will be replayed" in out
    await telegram.wait_until(
        lambda: ledger(desk.settings.storage.path, update_id) == "handled", what="the replay"
    )

    def copies() -> int:
        texts = [m.get("text") for m in telegram.bot_messages(GROUP_ID, thread)]
        return texts.count("this one trips a bug")

    # The copy kept at quarantine, and the replayed relay.
    await telegram.wait_until(lambda: copies() == 2, what="the replayed relay")
    await asyncio.sleep(0.5)
    assert copies() == 2


@pytest.fixture
async def alerting_desk(
    telegram: FakeTelegram, desk_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[RunningDesk]:
    """The daemon telling the admins after 2 s of a database that refuses updates."""
    async with desk_with(telegram, monkeypatch, HEALTH__STORE_ALERT_AFTER="2") as running:
        yield running


async def test_a_database_locked_by_another_process_delays_a_message_but_never_drops_it(
    telegram: FakeTelegram, alerting_desk: RunningDesk
) -> None:
    desk = alerting_desk
    telegram.add_user(ADMIN, "Desk", "Admin")
    telegram.add_user(ALICE, "Alice", "Smith")
    thread = await open_ticket(telegram, ALICE)
    database = desk.settings.storage.path

    # Another process holds the write lock for longer than the busy timeout (5 s).
    other = sqlite3.connect(database, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        telegram.send_private(ALICE, "Are you there?")
        update_id = telegram.pending_updates[-1]["update_id"]
        assert desk.daemon is not None
        metrics = desk.daemon.metrics
        # The poller gives up on the lock after the busy timeout: /healthz says why.
        await telegram.wait_until(
            lambda: metrics.store_problem is not None, timeout=30, what="the store fault"
        )
        assert "locked" in (metrics.store_problem or "")
        await asyncio.sleep(1)
        assert ledger(database, update_id) is None  # neither stored nor marked failed
        assert any(u["update_id"] == update_id for u in telegram.pending_updates)
        # Past health.store_alert_after, the admins are told directly (not via the outbox,
        # which lives in the locked database).
        await wait_for_bot_text(telegram, ADMIN, "cannot write to its database", timeout=30)
    finally:
        other.execute("ROLLBACK")
        other.close()

    await wait_for_bot_text(telegram, GROUP_ID, "Are you there?", thread_id=thread, timeout=30)
    copies = [
        m for m in telegram.bot_messages(GROUP_ID, thread) if m.get("text") == "Are you there?"
    ]
    assert len(copies) == 1
    assert quarantined(database) == []
    assert desk.daemon.metrics.store_problem is None
