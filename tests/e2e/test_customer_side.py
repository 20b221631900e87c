"""The customer's side of a ticket's life: /status, /close, /new, coming back after a
closing, rating the work, and the clock on it."""

from __future__ import annotations

import time
from typing import Any

import pytest

from bot.fake_telegram import GROUP_ID, FakeTelegram
from bot.services.cards import topic_link
from storage import ratings
from storage.db import Database
from storage.ratings import Rating
from storage.tickets import Ticket, get_ticket
from tests.conftest import RunningDesk, desk_with
from tests.e2e.test_card_buttons import card_of, has_card
from tests.e2e.test_conversation import (
    AGENT,
    ALICE,
    bot_texts,
    buttons,
    open_ticket,
    wait_for_bot_text,
)
from tests.e2e.test_health import free_port, get, metric_samples

BRUNO = 1002
PROMPT = "How did we do with ticket #"


@pytest.fixture
def desk_env(desk_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The shared environment, unhurried: this fake enforces no rate limits, and the
    daemon's own pacing (a message a second per customer) would only make these slow."""
    extra = {
        "TOPICDESK_DELIVERY__GROUP_PER_WINDOW": "1000",
        "TOPICDESK_DELIVERY__PRIVATE_PER_SECOND": "100",
        "TOPICDESK_DELIVERY__PRIVATE_BURST": "100",
    }
    for name, value in extra.items():
        monkeypatch.setenv(name, value)
    return {**desk_env, **extra}


async def press(
    telegram: FakeTelegram, user_id: int, chat_id: int, message_id: int, data: str
) -> str:
    """Press a button and return the bot's answer to the press."""
    query = telegram.press_button(user_id, chat_id, message_id, data)
    await telegram.wait_until(
        lambda: query["id"] in telegram.callback_answers, what=f"the answer to {data}"
    )
    return str(telegram.callback_answers[query["id"]].get("text", ""))


async def press_on_card(telegram: FakeTelegram, thread: int, label: str) -> str:
    """An agent presses one of the card's buttons (once the card is there)."""
    await telegram.wait_until(lambda: card_of_or_none(telegram, thread), what="the card")
    card = card_of(telegram, thread)
    return await press(telegram, AGENT, GROUP_ID, card["message_id"], buttons(card)[label])


async def wait_for_card(telegram: FakeTelegram, thread: int, fragment: str) -> str:
    await telegram.wait_until(
        lambda: fragment in (card_of_or_none(telegram, thread) or {}).get("text", ""),
        what=f"{fragment!r} on the card",
    )
    return str(card_of(telegram, thread)["text"])


def count(telegram: FakeTelegram, chat_id: int, fragment: str, thread: int | None = None) -> int:
    return sum(fragment in text for text in bot_texts(telegram, chat_id, thread))


async def stored(desk: RunningDesk, ticket_id: int) -> tuple[Ticket | None, Rating | None]:
    """The ticket and its rating as the database has them."""
    database = await Database.open(desk.settings.storage.path)
    try:
        async with database.reader() as db:
            return await get_ticket(db, ticket_id), await ratings.get(db, ticket_id)
    finally:
        await database.close()


def people(telegram: FakeTelegram) -> None:
    telegram.add_user(ALICE, "Alice", "Smith")
    telegram.add_user(BRUNO, "Bruno", "Costa")
    telegram.add_user(AGENT, "Bob", "Agent")


def topic_closed(telegram: FakeTelegram, thread: int) -> bool:
    return any(
        call.params.get("message_thread_id") == thread
        for call in telegram.calls_to("closeForumTopic")
    )


async def test_status_lists_the_askers_own_tickets_and_where_each_stands(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    people(telegram)
    telegram.send_private(BRUNO, "/status")
    await wait_for_bot_text(telegram, BRUNO, "You have no tickets yet")

    alice_topic = await open_ticket(telegram, ALICE)
    await open_ticket(telegram, BRUNO)
    await press_on_card(telegram, alice_topic, "✅ Resolve")
    await wait_for_bot_text(telegram, ALICE, "marked as resolved")

    telegram.send_private(ALICE, "/status")
    alices = await wait_for_bot_text(telegram, ALICE, "Your tickets:")
    telegram.send_private(BRUNO, "/status")
    brunos = await wait_for_bot_text(telegram, BRUNO, "Your tickets:")

    assert "#1 · Billing · resolved on " in alices["text"]
    assert "#2" not in alices["text"]
    assert "#2 · Billing · open since " in brunos["text"]
    assert "#1" not in brunos["text"]
    # Asking is not talking: nothing reached the agents, nothing was reopened.
    assert count(telegram, GROUP_ID, "/status", alice_topic) == 0
    assert "resolved" in card_of(telegram, alice_topic)["text"]


async def test_a_customer_closes_their_ticket_and_card_topic_and_agents_follow(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    people(telegram)
    thread = await open_ticket(telegram, ALICE)

    telegram.send_private(ALICE, "/close")
    await wait_for_bot_text(telegram, ALICE, "Your ticket #1 is closed")
    await wait_for_bot_text(telegram, ALICE, PROMPT)
    await telegram.wait_until(lambda: topic_closed(telegram, thread), what="the topic closed")
    card = await wait_for_card(telegram, thread, "🔒 closed")
    assert buttons({"reply_markup": card_of(telegram, thread)["reply_markup"]}) == {
        "↩️ Reopen": "t:1:reopen"
    }
    assert "Closed: " in card
    assert count(telegram, GROUP_ID, "The customer closed this ticket (/close)", thread) == 1

    telegram.send_private(ALICE, "/close")
    await wait_for_bot_text(telegram, ALICE, "You have no open ticket to close")
    assert count(telegram, ALICE, "is closed") == 1
    assert len(telegram.calls_to("closeForumTopic")) == 1
    ticket, _ = await stored(desk, 1)
    assert ticket is not None
    assert ticket.status == "closed"


async def test_new_closes_the_current_ticket_and_the_new_one_follows_it(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    people(telegram)
    first = await open_ticket(telegram, ALICE)

    telegram.send_private(ALICE, "/new")
    await wait_for_bot_text(telegram, ALICE, "Your ticket #1 is closed. Let's open a new one.")
    second = await open_ticket_after_new(telegram, ALICE, 2)
    await telegram.wait_until(lambda: topic_closed(telegram, first), what="#1's topic closed")
    await telegram.wait_until(lambda: has_card(telegram, second), what="#2's card")

    link = topic_link(GROUP_ID, first)
    assert f'Follows ticket <a href="{link}">#1</a>' in card_html(telegram, second)
    # Starting over is not finishing: no rating asked for #1, told once that it closed.
    assert count(telegram, ALICE, PROMPT) == 0
    assert count(telegram, ALICE, "is closed") == 1
    telegram.send_private(ALICE, "And one more thing")
    await wait_for_bot_text(telegram, GROUP_ID, "And one more thing", thread_id=second)
    assert count(telegram, GROUP_ID, "(/new)", first) == 1


def card_html(telegram: FakeTelegram, thread: int) -> str:
    """The card's text with its links put back as HTML (entity offsets count UTF-16 units)."""
    card = card_of(telegram, thread)
    text: bytes = card["text"].encode("utf-16-le")
    for entity in sorted(card.get("entities", []), key=lambda e: -e["offset"]):
        if entity["type"] == "text_link":
            start, end = 2 * entity["offset"], 2 * (entity["offset"] + entity["length"])
            before = '<a href="{}">'.format(entity["url"]).encode("utf-16-le")
            text = text[:start] + before + text[start:end] + "</a>".encode("utf-16-le") + text[end:]
    return text.decode("utf-16-le")


async def open_ticket_after_new(telegram: FakeTelegram, user_id: int, number: int) -> int:
    """After /new (or a closing): answer the form again; return the new ticket's topic."""
    asked = [m for m in telegram.bot_messages(user_id) if "question about" in (m.get("text") or "")]
    await telegram.wait_until(
        lambda: (
            len([t for t in bot_texts(telegram, user_id) if "question about" in t]) > len(asked)
        ),
        what="the form asking again",
    )
    question = [
        m for m in telegram.bot_messages(user_id) if "question about" in (m.get("text") or "")
    ][-1]
    telegram.press_button(user_id, user_id, question["message_id"], buttons(question)["Billing"])
    telegram.send_private(user_id, "The same charge appeared again today.")
    await wait_for_bot_text(telegram, user_id, f"Your ticket #{number} is open")
    await telegram.wait_until(
        lambda: any(t.name.startswith(f"#{number} ·") for t in telegram.topics[GROUP_ID].values()),
        what=f"ticket #{number}'s topic",
    )
    thread = next(
        thread
        for thread, topic in telegram.topics[GROUP_ID].items()
        if topic.name.startswith(f"#{number} ·")
    )
    await telegram.wait_until(lambda: card_of_or_none(telegram, thread), what="the new card")
    return thread


def card_of_or_none(telegram: FakeTelegram, thread: int) -> dict[str, Any] | None:
    return card_of(telegram, thread) if has_card(telegram, thread) else None


@pytest.mark.usefixtures("desk_env")
async def test_new_keeps_the_current_ticket_when_configured_so(
    telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with desk_with(telegram, monkeypatch, TICKETS__NEW_CLOSES_CURRENT="false"):
        people(telegram)
        first = await open_ticket(telegram, ALICE)
        telegram.send_private(ALICE, "/new")
        await wait_for_bot_text(telegram, ALICE, "Your ticket #1 stays open")
        second = await open_ticket_after_new(telegram, ALICE, 2)

        telegram.send_private(ALICE, "This is about the second one")
        await wait_for_bot_text(telegram, GROUP_ID, "second one", thread_id=second)
        telegram.send_private(ALICE, "/status")
        status = await wait_for_bot_text(telegram, ALICE, "Your tickets:")

    # The form's answers went to the form, not to the first ticket; both are open.
    assert count(telegram, GROUP_ID, "same charge appeared", first) == 0
    assert count(telegram, GROUP_ID, "second one", first) == 0
    assert telegram.calls_to("closeForumTopic") == []
    assert "#1 · Billing · open since" in status["text"]
    assert "#2 · Billing · open since" in status["text"]
    assert "Follows ticket" not in card_of(telegram, second)["text"]


async def test_a_message_after_a_closing_starts_a_new_ticket_that_links_the_old_topic(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    people(telegram)
    first = await open_ticket(telegram, ALICE)
    await press_on_card(telegram, first, "🔒 Close")
    await wait_for_bot_text(telegram, ALICE, "Your ticket #1 is closed")

    telegram.send_private(ALICE, "Hello again, it happened again")
    second = await open_ticket_after_new(telegram, ALICE, 2)

    link = topic_link(GROUP_ID, first)
    assert f'Follows ticket <a href="{link}">#1</a>' in card_html(telegram, second)
    await wait_for_bot_text(telegram, GROUP_ID, "it happened again", thread_id=second)
    assert count(telegram, GROUP_ID, "it happened again", first) == 0


@pytest.mark.usefixtures("desk_env")
async def test_with_after_closed_reopen_the_message_reopens_the_last_ticket(
    telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with desk_with(telegram, monkeypatch, TICKETS__AFTER_CLOSED="reopen") as desk:
        people(telegram)
        thread = await open_ticket(telegram, ALICE)
        await press_on_card(telegram, thread, "🔒 Close")
        await telegram.wait_until(lambda: telegram.topics[GROUP_ID][thread].closed, what="closed")

        telegram.send_private(ALICE, "It broke again")
        await wait_for_bot_text(telegram, ALICE, "Your ticket #1 is open again")
        await wait_for_bot_text(telegram, GROUP_ID, "It broke again", thread_id=thread)
        await wait_for_card(telegram, thread, "🟢 open")
        ticket, _ = await stored(desk, 1)

    assert not telegram.topics[GROUP_ID][thread].closed
    # Reopened first, then the words: no copy into the closed topic refused on the way.
    assert len(telegram.calls_to("reopenForumTopic")) == 1
    assert all(call.status == 200 for call in telegram.calls_to("copyMessage"))
    assert len(telegram.topics[GROUP_ID]) == 1  # no new ticket, no form
    assert count(telegram, ALICE, "question about") == 1
    assert ticket is not None
    assert (ticket.status, ticket.closed_at, ticket.resolved_at) == ("open", None, None)


async def test_the_customer_rates_the_resolved_ticket_comments_and_agents_see_it(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    people(telegram)
    thread = await open_ticket(telegram, ALICE)
    assert await press_on_card(telegram, thread, "✅ Resolve") == "Resolved."

    prompt = await wait_for_bot_text(telegram, ALICE, PROMPT)
    scores = buttons(prompt)
    assert list(scores) == ["1 ⭐", "2 ⭐", "3 ⭐", "4 ⭐", "5 ⭐"]
    assert all(len(data.encode()) <= 64 for data in scores.values())
    assert await press(telegram, ALICE, ALICE, prompt["message_id"], scores["4 ⭐"]) == ""
    await wait_for_bot_text(telegram, ALICE, "You rated ticket #1 4/5")
    assert buttons(telegram.message(ALICE, prompt["message_id"]))["• 4 ⭐"] == "rate:1:4"

    await wait_for_bot_text(telegram, ALICE, "Would you like to tell us more?")
    telegram.send_private(ALICE, "Quick & friendly, thanks <3")
    await wait_for_bot_text(telegram, ALICE, "Thank you for your feedback!")
    card = await wait_for_card(telegram, thread, "Rating: ⭐⭐⭐⭐ 4/5 · “Quick & friendly")
    assert "✅ resolved" in card
    await wait_for_bot_text(telegram, GROUP_ID, "rated this ticket 4/5", thread_id=thread)
    await wait_for_bot_text(telegram, GROUP_ID, "Quick & friendly, thanks <3", thread_id=thread)
    # The comment stayed feedback: the resolved ticket was not reopened by it.
    assert count(telegram, GROUP_ID, "Quick & friendly", thread) == 2  # the card, the note
    assert "🟢 open" not in card_of(telegram, thread)["text"]

    # A second rating replaces the first (its comment with it); the same score twice
    # changes nothing twice.
    await press(telegram, ALICE, ALICE, prompt["message_id"], scores["2 ⭐"])
    await wait_for_card(telegram, thread, "Rating: ⭐⭐ 2/5")
    await press(telegram, ALICE, ALICE, prompt["message_id"], scores["2 ⭐"])
    await telegram.wait_until(
        lambda: count(telegram, ALICE, "tell us more") == 2, what="a comment asked again"
    )
    comment_prompts = [
        m for m in telegram.bot_messages(ALICE) if "tell us more" in (m.get("text") or "")
    ]
    skip = buttons(comment_prompts[-1])["Skip"]
    await press(telegram, ALICE, ALICE, comment_prompts[-1]["message_id"], skip)
    await telegram.wait_until(
        lambda: "Thank you" in telegram.message(ALICE, comment_prompts[-1]["message_id"])["text"],
        what="the comment prompt thanking",
    )
    _, rating = await stored(desk, 1)
    assert rating is not None
    assert (rating.score, rating.comment) == (2, None)

    # Closing after the resolution does not ask again.
    await press_on_card(telegram, thread, "🔒 Close")
    await wait_for_card(telegram, thread, "🔒 closed")
    assert "Rating: ⭐⭐ 2/5" in card_of(telegram, thread)["text"]
    await wait_for_bot_text(telegram, ALICE, "Your ticket #1 is closed")
    telegram.send_private(ALICE, "/status")  # answered after anything queued before it
    await wait_for_bot_text(telegram, ALICE, "Your tickets:")
    rating_prompts = [m for m in telegram.bot_messages(ALICE) if "5 ⭐" in str(buttons(m))]
    assert len(rating_prompts) == 1


async def test_a_forged_rating_changes_nothing(telegram: FakeTelegram, desk: RunningDesk) -> None:
    people(telegram)
    alice_topic = await open_ticket(telegram, ALICE)
    await open_ticket(telegram, BRUNO)
    brunos_message = telegram.bot_messages(BRUNO)[-1]["message_id"]
    alices_message = telegram.bot_messages(ALICE)[-1]["message_id"]

    # Alice's ticket is open: not yet to be rated, not even by her.
    assert await press(telegram, ALICE, ALICE, alices_message, "rate:1:5") != ""
    await press_on_card(telegram, alice_topic, "✅ Resolve")
    await wait_for_bot_text(telegram, ALICE, PROMPT)

    refused = {
        # Bruno, from his own chat, rating Alice's ticket.
        "another customer's": await press(telegram, BRUNO, BRUNO, brunos_message, "rate:1:1"),
        "a score of 9": await press(telegram, ALICE, ALICE, alices_message, "rate:1:9"),
        "a score of 0": await press(telegram, ALICE, ALICE, alices_message, "rate:1:0"),
        "no such ticket": await press(telegram, ALICE, ALICE, alices_message, "rate:99:5"),
    }

    assert set(refused.values()) == {"This rating cannot be taken."}, refused
    _, rating = await stored(desk, 1)
    assert rating is None
    assert "Rating:" not in card_of(telegram, alice_topic)["text"]
    assert count(telegram, BRUNO, "You rated") == 0
    assert count(telegram, ALICE, "You rated") == 0


async def test_after_rating_a_closed_ticket_new_words_are_not_swallowed_as_a_comment(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    people(telegram)
    thread = await open_ticket(telegram, ALICE)
    await press_on_card(telegram, thread, "🔒 Close")
    prompt = await wait_for_bot_text(telegram, ALICE, PROMPT)
    await press(telegram, ALICE, ALICE, prompt["message_id"], buttons(prompt)["5 ⭐"])
    await wait_for_bot_text(telegram, ALICE, "Would you like to tell us more?")

    # A photo is not a comment: it starts a new ticket, and travels with it.
    telegram.send_private(ALICE, "the new error", kind="photo")
    second = await open_ticket_after_new(telegram, ALICE, 2)

    await telegram.wait_until(
        lambda: any("photo" in m for m in telegram.chat_messages(GROUP_ID, second)),
        what="the photo in the new topic",
    )
    _, rating = await stored(desk, 1)
    assert rating is not None
    assert (rating.score, rating.comment) == (5, None)
    assert "Rating: ⭐⭐⭐⭐⭐ 5/5" in card_of(telegram, thread)["text"]


async def test_a_customer_writing_on_a_pending_or_resolved_ticket_opens_it_again(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    people(telegram)
    thread = await open_ticket(telegram, ALICE)
    telegram.send_group(AGENT, "Could you send the invoice number?", thread_id=thread)
    await wait_for_bot_text(telegram, ALICE, "invoice number")
    await wait_for_card(telegram, thread, "⏳ pending")

    telegram.send_private(ALICE, "It is 2024-118")
    await wait_for_card(telegram, thread, "🟢 open")
    await press_on_card(telegram, thread, "✅ Resolve")
    await wait_for_card(telegram, thread, "✅ resolved")
    telegram.send_private(ALICE, "Still charged twice, sorry")
    await wait_for_bot_text(telegram, GROUP_ID, "Still charged twice", thread_id=thread)
    await wait_for_card(telegram, thread, "🟢 open")

    ticket, _ = await stored(desk, 1)
    assert ticket is not None
    assert (ticket.status, ticket.resolved_at) == ("open", None)
    assert ticket.first_response_at is not None


@pytest.mark.usefixtures("desk_env")
async def test_resolution_time_is_recorded_shown_and_observed_once(
    telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    two_hours_ago = int(time.time()) - 7200
    listen = f"127.0.0.1:{free_port()}"
    async with desk_with(telegram, monkeypatch, HEALTH__LISTEN=listen) as desk:
        people(telegram)
        thread = await open_ticket(telegram, ALICE, date=two_hours_ago)
        telegram.send_group(AGENT, "Fixed it.", thread_id=thread)
        await wait_for_bot_text(telegram, ALICE, "Fixed it.")
        await press_on_card(telegram, thread, "✅ Resolve")
        card = await wait_for_card(telegram, thread, "Resolved: ")
        resolved, _ = await stored(desk, 1)
        _, _, page = await get(desk.settings, "/metrics")
        after_resolve = metric_samples(page)

        await press_on_card(telegram, thread, "🔒 Close")
        closed_card = await wait_for_card(telegram, thread, "Closed: ")
        closed, _ = await stored(desk, 1)
        _, _, page = await get(desk.settings, "/metrics")
        after_close = metric_samples(page)

    assert "First answer: " in card
    assert "(after 2 h" in card.split("First answer: ")[1].split("\n")[0]
    assert "(after 2 h" in card.split("Resolved: ")[1].split("\n")[0]
    assert resolved is not None
    assert closed is not None
    assert resolved.resolved_at is not None
    # Closing keeps the time of the resolution, and does not count a second one.
    assert closed.resolved_at == resolved.resolved_at
    assert "Resolved: " in closed_card
    assert after_resolve[("topicdesk_resolution_seconds_count", ())] == 1
    assert 7190 <= after_resolve[("topicdesk_resolution_seconds_sum", ())] <= 7300
    assert after_resolve[("topicdesk_resolution_seconds_bucket", (("le", "3600.0"),))] == 0
    assert after_resolve[("topicdesk_resolution_seconds_bucket", (("le", "14400.0"),))] == 1
    assert after_close[("topicdesk_resolution_seconds_count", ())] == 1
