"""What is not a conversation stays out of it: General topic, stray topics, bots, service."""

from __future__ import annotations

from bot.fake_telegram import GROUP_ID, FakeTelegram
from tests.conftest import RunningDesk
from tests.e2e.test_conversation import AGENT, ALICE, open_ticket, wait_for_bot_text

OTHER_BOT = 777


async def test_general_topic_stray_topics_bots_and_service_messages_are_not_relayed(
    telegram: FakeTelegram, desk: RunningDesk
) -> None:
    telegram.add_user(ALICE, "Alice", "Smith")
    telegram.add_user(AGENT, "Bob", "Agent")
    telegram.add_user(OTHER_BOT, "Helper", username="helper_bot")
    thread = await open_ticket(telegram, ALICE)
    stray = telegram.create_topic(GROUP_ID, "Coffee machine")
    delivered = len(telegram.bot_messages(ALICE))
    handled = desk.daemon.poller.processed if desk.daemon and desk.daemon.poller else 0

    telegram.send_group(AGENT, "Morning all, in the General topic")
    telegram.send_group(AGENT, "Who took my mug?", thread_id=stray)
    telegram.send_group(OTHER_BOT, "I am a bot", thread_id=thread, from_bot=True)
    telegram.send_service(GROUP_ID, AGENT, thread_id=thread, service="pinned_message")
    telegram.send_service(GROUP_ID, AGENT, service="new_chat_members")

    # Five updates later the daemon is still polling, and none reached Alice.
    await telegram.wait_until(
        lambda: (
            desk.daemon is not None
            and desk.daemon.poller is not None
            and desk.daemon.poller.processed >= handled + 5
        ),
        what="the five updates to be processed",
    )
    telegram.send_group(AGENT, "And this one is for Alice", thread_id=thread)
    await wait_for_bot_text(telegram, ALICE, "And this one is for Alice")
    texts = [m.get("text") for m in telegram.bot_messages(ALICE)[delivered:]]
    assert texts == ["And this one is for Alice"]
    assert telegram.bot_messages(GROUP_ID, stray) == []
