"""Payload rules and rarer Telegram answers: oversized files, escaping, an upgraded group."""

from __future__ import annotations

import pytest

from bot.config import Settings, load_settings
from bot.fake_telegram import GROUP_ID, FakeTelegram
from bot.services.tickets import render
from storage import kv
from tests.conftest import RunningDesk
from tests.e2e.test_conversation import AGENT, ALICE, open_ticket, wait_for_bot_text
from tests.e2e.test_delivery import live_topics, with_db

UPGRADED = -1009000000009


async def test_a_file_over_the_bot_api_limits_is_refused_at_the_door(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    telegram.add_user(ALICE, "Alice", "Smith")
    telegram.add_user(AGENT, "Bob", "Agent")
    thread = await open_ticket(telegram, ALICE)

    telegram.send_private(ALICE, kind="document", file_size=60_000_000)
    note = await wait_for_bot_text(telegram, ALICE, "This file is too large to pass on")
    assert "(60 MB; the limit is 50 MB)" in note["text"]
    telegram.send_private(ALICE, kind="photo", file_size=12_000_000)
    await wait_for_bot_text(telegram, ALICE, "(12 MB; the limit is 10 MB)")
    telegram.send_group(AGENT, kind="video", file_size=51_000_000, thread_id=thread)
    await wait_for_bot_text(telegram, GROUP_ID, "(51 MB; the limit is 50 MB)", thread_id=thread)

    # Within the limits, files travel as usual.
    telegram.send_private(ALICE, kind="document", file_size=49_000_000)
    await telegram.wait_until(
        lambda: any("document" in m for m in telegram.bot_messages(GROUP_ID, thread)),
        what="the smaller document",
    )
    assert not any("video" in m for m in telegram.bot_messages(ALICE))
    assert sum("document" in m for m in telegram.bot_messages(GROUP_ID, thread)) == 1


@pytest.fixture
def settings(desk_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    # A template with markup of its own, filled with a value that looks like markup.
    monkeypatch.setenv(
        "TOPICDESK_TEXTS__TICKET_CREATED", "<b>Your ticket #{ticket}</b> is open, thank you."
    )
    return load_settings()


async def test_template_values_are_escaped_and_the_template_keeps_its_markup(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    telegram.add_user(ALICE, "<i>Alice</i> & co", "Smith")
    await open_ticket(telegram, ALICE, first_words="Hello <b>there</b>")
    confirmation = next(
        m for m in telegram.bot_messages(ALICE) if "is open, thank you" in (m.get("text") or "")
    )
    assert confirmation["text"].startswith("Your ticket #1 is open")
    assert {"type": "bold", "offset": 0, "length": 14} in confirmation["entities"]
    card = next(
        m for m in telegram.bot_messages(GROUP_ID) if (m.get("text") or "").startswith("Ticket #1")
    )
    assert "<i>Alice</i> & co Smith" in card["text"]  # shown literally, not as markup


async def test_an_upgraded_group_is_followed_to_its_new_id(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    telegram.add_user(ALICE, "Alice", "Smith")
    await open_ticket(telegram, ALICE)
    telegram.add_group(UPGRADED, "Support desk")
    telegram.fail(
        "copyMessage",
        error_code=400,
        description="Bad Request: group chat was upgraded to a supergroup chat",
        migrate_to_chat_id=UPGRADED,
        chat_id=GROUP_ID,
    )

    telegram.send_private(ALICE, "Are you still there?")

    # The old topic does not exist in the new chat: a new one is made there and the
    # message arrives in it.
    await wait_for_bot_text(telegram, UPGRADED, "Are you still there?")
    topics = [t for t in telegram.topics.get(UPGRADED, {}).values() if t.name.startswith("#1 ·")]
    assert len(topics) == 1
    stored = await with_db(desk.settings, lambda db: kv.get(db, f"group_id:{GROUP_ID}"))
    assert stored == str(UPGRADED)
    assert live_topics(telegram, 1)  # the old group's topic is left as it was


def test_render_escapes_values_but_not_the_template() -> None:
    assert render("<b>{name}</b> wrote", name="<i>Eve</i> & co") == (
        "<b>&lt;i&gt;Eve&lt;/i&gt; &amp; co</b> wrote"
    )
