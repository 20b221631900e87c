"""Hypothesis throws odd and malformed updates at the real poller: the desk never stops,
every update is confirmed, and a customer is still served after each batch."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.fake_telegram import GROUP_ID, FakeTelegram
from tests.conftest import RunningDesk, desk_with
from tests.e2e.test_conversation import ALICE, open_ticket, wait_for_bot_text

INT64 = 2**63 - 1
# Ids as Telegram has them, and at and past the limits.
ids = st.one_of(
    st.integers(1, 2**40), st.sampled_from([0, -1, 2**31, 2**52, INT64, -INT64, -(10**13)])
)
# Text with what breaks naive code: HTML, placeholders, entities, RTL and emoji, long runs.
texts = st.one_of(
    st.text(max_size=300),
    st.sampled_from(
        [
            "<b>bold</b>",
            "{customer_name} {0} {}",
            "&amp;&lt;",
            "\u202ereversed",
            "👩‍💻" * 50,
            "/start",
        ]
    ),
    st.text(alphabet="<>&{}/\\\"'", max_size=40),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def users(draw: st.DrawFn) -> dict[str, Any]:
    user: dict[str, Any] = {
        "id": draw(ids),
        "is_bot": draw(st.booleans()),
        "first_name": draw(texts),
    }
    if draw(st.booleans()):
        user["username"] = draw(st.text(max_size=32))
    if draw(st.booleans()):
        user["language_code"] = draw(st.sampled_from(["en", "es", "xx", ""]))
    return user


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    in_group = draw(st.booleans())
    sender = draw(users())
    chat: dict[str, Any] = (
        {"id": GROUP_ID, "type": "supergroup", "title": "Support", "is_forum": True}
        if in_group
        else {"id": sender["id"], "type": "private", "first_name": sender["first_name"]}
    )
    message: dict[str, Any] = {
        "message_id": draw(st.integers(1, INT64)),
        "date": draw(st.integers(0, 2**33)),
        "chat": chat,
        "from": sender,
    }
    kind = draw(st.sampled_from(["text", "caption", "sticker", "contact", "none"]))
    if kind == "text":
        message["text"] = draw(texts)
    elif kind == "caption":
        message["photo"] = [
            {"file_id": "AgAC", "file_unique_id": "u", "width": 1, "height": 1, "file_size": 1}
        ]
        message["caption"] = draw(texts)
    elif kind == "sticker":
        message["sticker"] = {
            "file_id": "CAAC",
            "file_unique_id": "s",
            "type": "regular",
            "width": 1,
            "height": 1,
            "is_animated": False,
            "is_video": False,
        }
    elif kind == "contact":
        message["contact"] = {"phone_number": draw(texts), "first_name": draw(texts)}
    if in_group and draw(st.booleans()):
        message["message_thread_id"] = draw(ids)  # a topic that does not exist
        message["is_topic_message"] = True
    if draw(st.booleans()):
        message["sender_chat"] = {"id": draw(ids), "type": "channel", "title": draw(texts)}
    return message


@st.composite
def updates(draw: st.DrawFn) -> dict[str, Any]:
    choice = draw(st.sampled_from(["message", "edited", "callback", "unknown", "malformed"]))
    if choice == "message":
        return {"message": draw(messages())}
    if choice == "edited":
        return {"edited_message": draw(messages())}
    if choice == "callback":
        return {
            "callback_query": {
                "id": str(draw(ids)),
                "from": draw(users()),
                "chat_instance": "1",
                "data": draw(st.text(max_size=64)),
                "message": draw(messages()),
            }
        }
    if choice == "unknown":
        return {draw(st.text(min_size=1, max_size=20)): draw(json_values)}
    # Known kinds with the wrong shape.
    return {draw(st.sampled_from(["message", "callback_query", "poll"])): draw(json_values)}


@pytest.fixture
async def unhurried_desk(
    telegram: FakeTelegram, desk_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[RunningDesk]:
    async with desk_with(
        telegram,
        monkeypatch,
        DELIVERY__GROUP_PER_WINDOW="10000",
        DELIVERY__PRIVATE_PER_SECOND="1000",
        DELIVERY__PRIVATE_BURST="1000",
    ) as running:
        yield running


# One daemon for all the examples (it must survive them all): the fixtures are made once.
@pytest.mark.timeout(240)
@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=st.lists(updates(), min_size=1, max_size=8))
async def test_odd_and_malformed_updates_never_stop_the_desk(
    telegram: FakeTelegram, unhurried_desk: RunningDesk, batch: list[dict[str, Any]]
) -> None:
    if ALICE not in telegram.users:
        telegram.add_user(ALICE, "Alice", "Smith")
        THREADS[id(telegram)] = await open_ticket(telegram, ALICE)
    thread = THREADS[id(telegram)]

    sent = [telegram.enqueue_update(u, queued_before_filter=True) for u in batch]
    canary = f"canary {next(CANARIES)}"
    telegram.send_private(ALICE, canary)
    await wait_for_bot_text(telegram, GROUP_ID, canary, thread_id=thread, timeout=20)
    pending = {u["update_id"] for u in telegram.pending_updates}
    assert not pending & set(sent), "an update was never confirmed"
    assert unhurried_desk.task is not None
    assert not unhurried_desk.task.done(), "the daemon stopped"


THREADS: dict[int, int] = {}
CANARIES = itertools.count()
