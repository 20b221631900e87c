"""Who works a ticket: taken, assigned and unassigned by hand, given out by the desk as
tickets open, handed on when an agent goes off duty; the queue of unanswered tickets and
an agent's own."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from bot.fake_telegram import GENERAL_TOPIC_ID, GROUP_ID, FakeTelegram
from storage import tickets
from storage.db import Database, utcnow
from tests.conftest import RunningDesk, desk_with
from tests.e2e.test_agent_rights import press
from tests.e2e.test_card_buttons import card_of
from tests.e2e.test_conversation import ALICE, bot_texts, buttons, open_ticket, wait_for_bot_text

pytestmark = pytest.mark.usefixtures("desk_env")

BOB = 900  # an admin of the desk, so an agent from the start
DANA = 901  # a member of the group: an agent once the desk has met her
EVE = 902
LEAVER = 950  # wrote in the group once, has left it since
BRUNO, CARLA, DAVID = 1002, 1003, 1004


@asynccontextmanager
async def a_desk(
    telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch, **changes: str
) -> AsyncIterator[RunningDesk]:
    """The desk with room in the budgets for a busy story (no story here is about pacing),
    and its people."""
    telegram.add_user(ALICE, "Alice", "Smith")
    telegram.add_user(BRUNO, "Bruno", "Costa")
    telegram.add_user(CARLA, "Carla", "Diaz")
    telegram.add_user(DAVID, "David", "Ito")
    telegram.add_user(BOB, "Bob", "Agent", username="bob")
    telegram.add_user(DANA, "Dana", "Lee", username="dana")
    telegram.add_user(EVE, "Eve", "Park", username="eve")
    telegram.add_user(LEAVER, "Lee", "Former", username="lee")
    roomy = {
        "DELIVERY__GROUP_PER_WINDOW": "1000",
        "DELIVERY__PRIVATE_PER_SECOND": "100",
        "DELIVERY__PRIVATE_BURST": "100",
    }
    async with desk_with(telegram, monkeypatch, **roomy, **changes) as running:
        yield running


async def in_topic(telegram: FakeTelegram, thread: int, fragment: str) -> dict[str, Any]:
    return await wait_for_bot_text(telegram, GROUP_ID, fragment, thread_id=thread)


async def in_general(telegram: FakeTelegram, fragment: str) -> dict[str, Any]:
    return await wait_for_bot_text(telegram, GROUP_ID, fragment, thread_id=GENERAL_TOPIC_ID)


def count(telegram: FakeTelegram, thread: int, fragment: str) -> int:
    return sum(fragment in text for text in bot_texts(telegram, GROUP_ID, thread))


def mentions(message: dict[str, Any], user_id: int) -> bool:
    """The message names the user with a link that notifies them."""
    return any(
        entity.get("url") == f"tg://user?id={user_id}"
        or (entity.get("user") or {}).get("id") == user_id
        for entity in message.get("entities", [])
    )


async def card_posted(telegram: FakeTelegram, thread: int) -> None:
    await telegram.wait_until(
        lambda: any("Ticket #" in text for text in bot_texts(telegram, GROUP_ID, thread)),
        what="the card",
    )


def topic_name(telegram: FakeTelegram, thread: int) -> str:
    return telegram.topics[GROUP_ID][thread].name


async def shows(telegram: FakeTelegram, thread: int, assignee: str) -> None:
    """The card and the topic's name show the assignee (or nobody)."""
    await telegram.wait_until(
        lambda: (
            f"Assignee: {assignee}" in card_of(telegram, thread)["text"]
            and (topic_name(telegram, thread).endswith(f"→ {assignee}") == (assignee != "nobody"))
        ),
        what=f"the card and the topic's name showing {assignee}",
    )


async def meet(telegram: FakeTelegram, *agents: int) -> None:
    """Agents say /onduty in General: the desk meets them."""
    for agent in agents:
        name = telegram.users[agent]["first_name"]
        telegram.send_group(agent, "/onduty")
        await in_general(telegram, f"🟢 {name}")


def created_name(telegram: FakeTelegram, number: int) -> str:
    """The name the topic of ticket #number was created with (before any rename)."""
    return next(
        str(call.params["name"])
        for call in telegram.calls_to("createForumTopic")
        if str(call.params["name"]).startswith(f"#{number} ·")
    )


async def test_an_agent_takes_a_ticket_assigns_it_by_name_and_by_reply_then_unassigns_it(
    telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Membership asked of Telegram every time, so that Lee's leaving shows at once.
    async with a_desk(telegram, monkeypatch, AGENTS__MEMBERSHIP_TTL="0"):
        thread = await open_ticket(telegram, ALICE)
        await card_posted(telegram, thread)
        card = card_of(telegram, thread)

        assert await press(telegram, BOB, card["message_id"], buttons(card)["🙋 Take"]) == (
            "It is yours now."
        )
        taken = await in_topic(telegram, thread, "Assigned to Bob Agent")
        assert mentions(taken, BOB)
        await shows(telegram, thread, "Bob Agent")

        # Dana is unknown to the desk until she acts.
        telegram.send_group(BOB, "/assign @dana", thread_id=thread)
        await in_topic(telegram, thread, "@dana is not known to the desk")
        await meet(telegram, DANA)

        telegram.send_group(BOB, "/assign @Dana", thread_id=thread)
        announced = await in_topic(telegram, thread, "Assigned to Dana Lee by Bob Agent")
        assert mentions(announced, DANA)
        await shows(telegram, thread, "Dana Lee")

        telegram.send_group(BOB, "/assign @dana", thread_id=thread)
        await in_topic(telegram, thread, "already assigned to Dana Lee")
        assert count(telegram, thread, "Assigned to Dana Lee") == 1

        # By reply: to Bob's own words in the topic (which reached Alice).
        words = telegram.send_group(BOB, "Hello Alice, I'm on it.", thread_id=thread)
        await wait_for_bot_text(telegram, ALICE, "I'm on it")
        telegram.send_group(BOB, "/assign", thread_id=thread, reply_to=words["message_id"])
        again = await in_topic(telegram, thread, "👤 Assigned to Bob Agent.")
        assert mentions(again, BOB)
        await shows(telegram, thread, "Bob Agent")

        # Replying to a message that is not an agent's: Alice's copy (the bot's), a leaver's.
        telegram.send_private(ALICE, "Thanks!")
        copy = await in_topic(telegram, thread, "Thanks!")
        telegram.send_group(BOB, "/assign", thread_id=thread, reply_to=copy["message_id"])
        await in_topic(telegram, thread, "That message is not an agent's.")
        telegram.set_member(GROUP_ID, LEAVER, "member")
        lees = telegram.send_group(LEAVER, "Lee here", thread_id=thread)
        await wait_for_bot_text(telegram, ALICE, "Lee here")
        telegram.set_member(GROUP_ID, LEAVER, "left")
        telegram.send_group(BOB, "/assign", thread_id=thread, reply_to=lees["message_id"])
        await in_topic(telegram, thread, "Lee Former is not one of the desk's agents.")
        telegram.send_group(BOB, "/assign @lee", thread_id=thread)
        await in_topic(telegram, thread, "Lee Former is not one of the desk's agents.")
        telegram.send_group(BOB, "/assign", thread_id=thread)  # naming nobody
        await in_topic(telegram, thread, "Usage: /assign @username")
        assert topic_name(telegram, thread).endswith("→ Bob Agent")

        telegram.send_group(BOB, "/unassign", thread_id=thread)
        await in_topic(telegram, thread, "Nobody is assigned now (Bob Agent).")
        await shows(telegram, thread, "nobody")
        assert "🙋 Take" in buttons(card_of(telegram, thread))
        telegram.send_group(BOB, "/unassign", thread_id=thread)
        await in_topic(telegram, thread, "Nobody is assigned to ticket #1.")

        # A closed ticket is assigned to nobody new.
        telegram.send_group(BOB, "/close", thread_id=thread)
        await wait_for_bot_text(telegram, ALICE, "closed")
        telegram.send_group(BOB, "/assign @dana", thread_id=thread)
        await in_topic(telegram, thread, "Ticket #1 is closed: reopen it first.")
        # /assign outside a ticket's topic says where it works.
        telegram.send_group(BOB, "/assign @dana")
        await in_general(telegram, "Use /assign in a ticket's topic.")

    # Nothing an /assign said ever reached Alice.
    assert not any("assign" in text.lower() for text in bot_texts(telegram, ALICE))
    assert count(telegram, thread, "Assigned to Dana Lee") == 1


async def test_round_robin_gives_new_tickets_in_turn_and_hands_on_an_off_duty_agents_tickets(
    telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with a_desk(
        telegram,
        monkeypatch,
        AGENTS__ASSIGNMENT="round_robin",
        AGENTS__HAND_ON_WHEN_OFF_DUTY="true",
    ):
        await meet(telegram, BOB, DANA, EVE)
        first = await open_ticket(telegram, ALICE)
        second = await open_ticket(telegram, BRUNO)
        third = await open_ticket(telegram, CARLA)

        # Each topic was created with its assignee in its name, and each card showed it.
        assert created_name(telegram, 1).endswith("→ Bob Agent")
        assert created_name(telegram, 2).endswith("→ Dana Lee")
        assert created_name(telegram, 3).endswith("→ Eve Park")
        for thread, name, agent in ((first, "Bob Agent", BOB), (second, "Dana Lee", DANA)):
            await card_posted(telegram, thread)
            assert f"Assignee: {name}" in card_of(telegram, thread)["text"]
            assert mentions(await in_topic(telegram, thread, f"Assigned to {name}"), agent)
        # Posted so, not edited afterwards: no rename, no card edit was needed.
        posted = [str(call.params.get("text")) for call in telegram.calls_to("sendMessage")]
        assert any("Ticket #1</b>" in t and "Assignee: Bob Agent" in t for t in posted)
        assert telegram.calls_to("editForumTopic") == []
        assert telegram.calls_to("editMessageText") == []

        # Dana goes off duty: her ticket goes to whoever waited longest of those on duty.
        telegram.send_group(DANA, "/offduty")
        await in_general(telegram, "⚪ Dana Lee is off duty. Handed on: #2 → Bob Agent.")
        await in_topic(telegram, second, "Assigned to Bob Agent by Dana Lee")
        await shows(telegram, second, "Bob Agent")

        # New tickets skip her: Eve's turn, then Bob's.
        fourth = await open_ticket(telegram, DAVID)
        assert created_name(telegram, 4).endswith("→ Eve Park")
        await in_topic(telegram, fourth, "Assigned to Eve Park")

        # With nobody left on duty, the last one's tickets go to nobody.
        telegram.send_group(BOB, "/offduty", thread_id=first)
        await in_topic(telegram, first, "Handed on: #1 → Eve Park, #2 → Eve Park.")
        telegram.send_group(EVE, "/offduty")
        await in_general(telegram, "Handed on: #1 → nobody, #2 → nobody, #3 → nobody, #4 → nobody")
        for thread in (first, second, third, fourth):
            await shows(telegram, thread, "nobody")

        # Back on duty, Dana gets the next one.
        telegram.send_group(DANA, "/onduty", thread_id=third)
        await in_topic(telegram, third, "🟢 Dana Lee is on duty. New tickets can be assigned")
        telegram.add_user(1005, "Erin", "Fox")
        await open_ticket(telegram, 1005)
        assert created_name(telegram, 5).endswith("→ Dana Lee")


async def test_least_open_gives_a_ticket_to_the_lightest_load_and_keeps_an_off_duty_agents_tickets(
    telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with a_desk(telegram, monkeypatch, AGENTS__ASSIGNMENT="least_open"):
        await meet(telegram, BOB, DANA)
        first = await open_ticket(telegram, ALICE)  # both hold none: Bob, the lower id
        second = await open_ticket(telegram, BRUNO)  # Bob holds one: Dana
        assert created_name(telegram, 1).endswith("→ Bob Agent")
        assert created_name(telegram, 2).endswith("→ Dana Lee")

        telegram.send_group(BOB, "/close", thread_id=first)  # Bob holds none again
        await wait_for_bot_text(telegram, ALICE, "closed")
        third = await open_ticket(telegram, CARLA)
        assert created_name(telegram, 3).endswith("→ Bob Agent")

        # Off duty, Bob keeps his ticket; the next one goes to Dana though she holds one.
        telegram.send_group(BOB, "/offduty")
        await in_general(telegram, "⚪ Bob Agent is off duty. Their 1 active ticket stay")
        await open_ticket(telegram, DAVID)
        assert created_name(telegram, 4).endswith("→ Dana Lee")
        assert topic_name(telegram, third).endswith("→ Bob Agent")
        assert count(telegram, third, "Assigned to") == 1

        # /mine: what each holds, with its status and a link to its topic.
        telegram.send_group(BOB, "/mine")
        mine = await in_general(telegram, "Bob Agent, your active tickets: 1")
        assert "#3 · Carla Diaz" in mine["text"]
        assert "· open" in mine["text"]
        assert any(str(e.get("url", "")).endswith(f"/{third}") for e in mine["entities"])
        telegram.send_group(DANA, "/mine", thread_id=second)
        dana = await in_topic(telegram, second, "Dana Lee, your active tickets: 2")
        assert "#2 · Bruno Costa" in dana["text"]
        assert "#4 · David Ito" in dana["text"]
        assert "#3" not in dana["text"]

        telegram.send_group(DANA, "/offduty")
        await in_general(telegram, "Dana Lee is off duty. Their 2 active tickets stay")
        telegram.add_user(1005, "Erin", "Fox")
        fifth = await open_ticket(telegram, 1005)  # nobody on duty: nobody assigned
        await card_posted(telegram, fifth)
        assert "Assignee: nobody" in card_of(telegram, fifth)["text"]
        assert "→" not in created_name(telegram, 5)


async def test_the_queue_lists_unanswered_tickets_oldest_first_until_one_is_answered(
    telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = int(time.time())
    async with a_desk(telegram, monkeypatch):
        telegram.send_group(BOB, "/queue")
        await in_general(telegram, "No ticket is waiting for a first answer.")

        newer = await open_ticket(telegram, ALICE, date=now - 5 * 60)
        oldest = await open_ticket(telegram, BRUNO, date=now - 3 * 3600 - 10 * 60)
        await open_ticket(telegram, CARLA, date=now - 40 * 60)

        telegram.send_group(BOB, "/queue")
        queue = await in_general(telegram, "Waiting for a first answer: 3")
        lines = queue["text"].splitlines()[1:]
        assert [line.split(" · ", 1)[0] for line in lines] == ["1. #2", "2. #3", "3. #1"]
        assert lines[0].endswith("· 3 h 10 min")
        assert lines[1].endswith("· 40 min")
        assert lines[2].endswith("· 5 min")
        links = [e["url"] for e in queue["entities"] if e["type"] == "text_link"]
        assert [link.rsplit("/", 1)[1] for link in links[:1]] == [str(oldest)]
        assert len(links) == 3

        # Bob answers Bruno: the ticket leaves the queue once his words reached Bruno.
        telegram.send_group(BOB, "Hi Bruno, looking into it.", thread_id=oldest)
        await wait_for_bot_text(telegram, BRUNO, "looking into it")
        telegram.send_group(BOB, "/queue", thread_id=newer)  # asked in a topic: answered there
        again = await in_topic(telegram, newer, "Waiting for a first answer: 2")
        assert "#2 ·" not in again["text"]
        assert [line.split(" · ", 1)[0] for line in again["text"].splitlines()[1:]] == [
            "1. #3",
            "2. #1",
        ]


async def test_the_queue_shows_twenty_and_counts_the_rest(
    telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with a_desk(telegram, monkeypatch) as desk:
        # A busy desk's backlog, written straight into its database (no form, no topics).
        database = await Database.open(desk.settings.storage.path)
        try:
            async with database.transaction() as db:
                for number in range(23):
                    await tickets.save_customer(db, 2000 + number, f"Customer {number}", None, None)
                    await tickets.open_ticket(db, 2000 + number, "Billing", [], GROUP_ID, utcnow())
        finally:
            await database.close()
        telegram.send_group(BOB, "/queue")
        queue = await in_general(telegram, "Waiting for a first answer: 23")
        assert len(queue["text"].splitlines()) == 1 + 20 + 1
        assert queue["text"].endswith("…and 3 more.")


async def test_someone_who_is_not_an_agent_cannot_assign_go_on_duty_or_read_the_queue(
    telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with a_desk(telegram, monkeypatch, AGENTS__ASSIGNMENT="round_robin"):
        telegram.set_member(GROUP_ID, LEAVER, "left")
        thread = await open_ticket(telegram, ALICE)  # nobody on duty yet: nobody assigned
        await card_posted(telegram, thread)

        telegram.send_group(LEAVER, "/assign @lee", thread_id=thread)
        await in_topic(telegram, thread, "only the desk's agents")
        telegram.send_group(LEAVER, "/onduty")
        await in_general(telegram, "Lee Former, only the desk's agents can use these commands.")
        telegram.send_group(LEAVER, "/queue")
        telegram.send_group(LEAVER, "/mine")
        telegram.send_group(LEAVER, "/unassign", thread_id=thread)
        # A bot's commands are not even answered.
        telegram.send_group(EVE, "/onduty", from_bot=True)

        # An agent's command after theirs is answered: theirs were all handled by then.
        telegram.send_group(BOB, "/queue")
        await in_general(telegram, "Waiting for a first answer: 1")

        # Nothing changed: still nobody assigned, and Lee never went on duty, so the next
        # ticket goes to Bob (whom the desk met through his /queue), not to Lee; each
        # refusal was said once.
        assert "Assignee: nobody" in card_of(telegram, thread)["text"]
        assert count(telegram, thread, "Assigned to") == 0
        await open_ticket(telegram, BRUNO)
        assert created_name(telegram, 2).endswith("→ Bob Agent")
        general = bot_texts(telegram, GROUP_ID, GENERAL_TOPIC_ID)
        assert sum("Waiting for a first answer" in text for text in general) == 1
        assert sum("only the desk's agents" in text for text in general) == 1
        assert not any("on duty" in text for text in general)
        assert count(telegram, thread, "only the desk's agents") == 1
    assert not any("assign" in text for text in bot_texts(telegram, ALICE))
