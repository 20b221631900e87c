"""The card's buttons act on the ticket whose topic they are in, and nothing else."""

from __future__ import annotations

from bot.fake_telegram import GROUP_ID, FakeTelegram
from tests.conftest import RunningDesk
from tests.e2e.test_conversation import AGENT, ALICE, buttons, open_ticket, wait_for_bot_text

BRUNO = 1002


def has_card(telegram: FakeTelegram, thread: int) -> bool:
    return any("Ticket #" in (m.get("text") or "") for m in telegram.bot_messages(GROUP_ID, thread))


def card_of(telegram: FakeTelegram, thread: int) -> dict:
    assert has_card(telegram, thread), f"no card in topic {thread} yet"
    return next(
        m for m in telegram.bot_messages(GROUP_ID, thread) if "Ticket #" in (m.get("text") or "")
    )


async def test_a_button_naming_another_ticket_closes_nothing(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    telegram.add_user(ALICE, "Alice", "Smith")
    telegram.add_user(BRUNO, "Bruno", "Costa")
    telegram.add_user(AGENT, "Bob", "Agent")
    alice_topic = await open_ticket(telegram, ALICE)
    bruno_topic = await open_ticket(telegram, BRUNO)
    alices_card = card_of(telegram, alice_topic)
    assert buttons(alices_card)["🔒 Close"] == "t:1:close"

    # Forged: the button on Alice's card, with data naming Bruno's ticket.
    forged = telegram.press_button(AGENT, GROUP_ID, alices_card["message_id"], "t:2:close")
    await telegram.wait_until(
        lambda: forged["id"] in telegram.callback_answers, what="the forged press answered"
    )
    assert "does not belong" in telegram.callback_answers[forged["id"]].get("text", "")

    # Both tickets are still open: each customer's next words still reach their topic.
    telegram.send_private(BRUNO, "Still there?")
    await wait_for_bot_text(telegram, GROUP_ID, "Still there?", thread_id=bruno_topic)
    telegram.send_private(ALICE, "Me too")
    await wait_for_bot_text(telegram, GROUP_ID, "Me too", thread_id=alice_topic)
    assert telegram.calls_to("closeForumTopic") == []

    # The real button closes its own ticket (as does the button of a card from before 0.2).
    real = telegram.press_button(AGENT, GROUP_ID, alices_card["message_id"], "ticket:1:close")
    await telegram.wait_until(
        lambda: real["id"] in telegram.callback_answers, what="the real press answered"
    )
    await wait_for_bot_text(telegram, ALICE, "closed")
    await telegram.wait_until(
        lambda: telegram.calls_to("closeForumTopic"), what="the topic being closed"
    )
    assert [call.params["message_thread_id"] for call in telegram.calls_to("closeForumTopic")] == [
        alice_topic
    ]
