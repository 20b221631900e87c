"""The playground's JSON endpoints, without a browser: what the page does, done by hand.

The playground runs the real desk against the embedded Telegram, as `topicdesk playground`
does; these stories drive it the way its page does, through `/api/...`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, NamedTuple

import aiohttp
import pytest

from bot.playground.app import Playground
from bot.playground.server import start_site
from bot.sandbox import AGENTS, CUSTOMERS, Sandbox

ALICE, BRUNO = CUSTOMERS[0].user_id, CUSTOMERS[1].user_id
DANA = AGENTS[0].user_id
State = dict[str, Any]


@asynccontextmanager
async def running_playground() -> AsyncIterator[tuple[Sandbox, str]]:
    """The sandbox (the embedded Telegram and the desk) and the playground's URL."""
    async with Sandbox(scale=10) as sandbox:
        runner, url = await start_site(Playground(sandbox))
        try:
            yield sandbox, url
        finally:
            await runner.cleanup()


class Running(NamedTuple):
    sandbox: Sandbox
    client: aiohttp.ClientSession
    url: str


@pytest.fixture
async def playground() -> AsyncIterator[Running]:
    async with running_playground() as (sandbox, url), aiohttp.ClientSession(url) as client:
        yield Running(sandbox, client, url)


async def post(client: aiohttp.ClientSession, path: str, body: object) -> tuple[int, State]:
    async with client.post(path, json=body) as response:
        return response.status, await response.json()


async def state_of(client: aiohttp.ClientSession, customer: int = ALICE) -> State:
    async with client.get("/api/state", params={"customer": str(customer)}) as response:
        assert response.status == 200, await response.text()
        return dict(await response.json())


async def wait_for(
    client: aiohttp.ClientSession,
    found: Callable[[State], Any],
    *,
    customer: int = ALICE,
    what: str,
    timeout: float = 15.0,
) -> Any:
    """Poll the state as the page does until `found` returns something; return it."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        state = await state_of(client, customer)
        result = found(state)
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}; the state was {state}")
        await asyncio.sleep(0.1)


def button_in(messages: list[State], label: str) -> tuple[int, str] | None:
    """(message id, callback data) of the latest button whose label says `label`."""
    for message in reversed(messages):
        for row in message["buttons"]:
            for button in row:
                if label in button["text"]:
                    return message["id"], button["data"]
    return None


def said(messages: list[State], fragment: str) -> State | None:
    return next((m for m in messages if fragment in m["text"]), None)


def topic_of(state: State, customer: int) -> State | None:
    return next(
        (t for t in state["topics"] if t["ticket"] and t["ticket"]["customer"] == customer), None
    )


async def fill_the_form(client: aiohttp.ClientSession, customer: int, category: str) -> State:
    """The customer answers the default form through the page's actions; the new topic."""
    assert await post(client, "/api/customer/send", {"customer": customer, "text": "Hello"}) == (
        200,
        {"ok": True, "message_id": 1},
    )
    message_id, data = await wait_for(
        client,
        lambda s: button_in(s["chat"], category),
        customer=customer,
        what="the category buttons",
    )
    status, _ = await post(
        client,
        "/api/customer/press",
        {"customer": customer, "message_id": message_id, "data": data},
    )
    assert status == 200
    await wait_for(
        client,
        lambda s: said(s["chat"], "describe the problem"),
        customer=customer,
        what="the description question",
    )
    text = "The app closes right after the splash screen."
    status, _ = await post(client, "/api/customer/send", {"customer": customer, "text": text})
    assert status == 200
    return dict(
        await wait_for(
            client,
            lambda s: (t := topic_of(s, customer)) and t["card"] and t,
            customer=customer,
            what="the ticket's topic and its card",
        )
    )


async def test_a_customer_fills_the_form_and_an_agent_answers_in_the_topic(
    playground: Running,
) -> None:
    sandbox, client, _ = playground
    topic = await fill_the_form(client, ALICE, "Technical problem")

    assert topic["name"] == "#1 · Alice Martin · Technical problem"
    assert (topic["ticket"]["id"], topic["ticket"]["customer"]) == (1, ALICE)
    card = topic["card"]
    assert card["text"].startswith("Ticket #1")
    assert "The app closes right after the splash screen." in card["text"]
    assert button_in([card], "Close") is not None, card["buttons"]
    state = await state_of(client)
    assert next(c for c in state["customers"] if c["id"] == ALICE)["ticket"] == 1
    await wait_for(client, lambda s: said(s["chat"], "Your ticket #1 is open"), what="the receipt")

    # Her first words went to the topic; the agent answers them as a reply.
    thread = topic["thread_id"]
    first_words = await wait_for(
        client,
        lambda s: said(topic_of(s, ALICE)["messages"], "Hello"),
        what="the customer's first words in the topic",
    )
    answer = {"agent": DANA, "topic": thread, "text": "Dana here: which phone is it?"}
    status, sent = await post(client, "/api/agent/send", {**answer, "reply_to": first_words["id"]})
    assert status == 200, sent
    relayed = await wait_for(
        client, lambda s: said(s["chat"], "Dana here: which phone is it?"), what="the answer"
    )
    assert relayed["from"]["bot"]
    assert relayed["reply_to"]["text"] == "Hello"  # threaded onto her own message
    counters = (await state_of(client))["counters"]
    assert counters["relayed_to_agents"] >= 1
    assert counters["relayed_to_customers"] == 1
    assert isinstance(counters["dead_letters"], int)

    # The card's button closes the ticket; its topic then takes no more answers.
    close = button_in([topic_of(await state_of(client), ALICE)["card"]], "Close")
    assert close is not None
    status, pressed = await post(
        client,
        "/api/agent/press",
        {"agent": DANA, "message_id": close[0], "data": close[1]},
    )
    assert status == 200, pressed
    await wait_for(client, lambda s: topic_of(s, ALICE)["closed"], what="the topic closed")
    await wait_for(client, lambda s: said(s["chat"], "closed"), what="the customer told")
    closed = await wait_for(
        client,
        lambda s: button_in([topic_of(s, ALICE)["card"]], "Close") is None and s,
        what="the card updated",
    )
    assert topic_of(closed, ALICE)["ticket"]["status"] == "closed"
    assert "closed" in topic_of(closed, ALICE)["card"]["text"]
    status, refused = await post(client, "/api/agent/send", answer)
    assert status == 400
    assert "is closed" in refused["error"]
    await sandbox.settled()


async def test_an_unchanged_state_is_answered_304_without_a_body(
    playground: Running,
) -> None:
    _, client, _ = playground
    for _attempt in range(5):  # the desk's housekeeping may make a call in between
        async with client.get("/api/state") as first:
            etag = first.headers["ETag"]
        async with client.get("/api/state", headers={"If-None-Match": etag}) as again:
            if again.status == 304:
                assert await again.read() == b""
                break
    else:
        pytest.fail("an unchanged state was never answered 304")
    status, _ = await post(client, "/api/customer/send", {"customer": ALICE, "text": "Hi"})
    assert status == 200
    async with client.get("/api/state", headers={"If-None-Match": etag}) as changed:
        assert changed.status == 200


async def test_a_burst_is_paced_by_the_groups_budget_and_all_of_it_arrives(
    playground: Running,
) -> None:
    sandbox, client, _ = playground
    await fill_the_form(client, BRUNO, "Billing")
    await sandbox.settled()
    before = (await state_of(client, BRUNO))["counters"]["relayed_to_agents"]

    status, burst = await post(client, "/api/customer/burst", {"customer": BRUNO, "count": 24})
    assert (status, burst) == (200, {"ok": True, "sent": 24})
    busiest = 0

    def all_relayed(state: State) -> bool:
        nonlocal busiest
        busiest = max(busiest, state["counters"]["group_sends"])
        return state["counters"]["relayed_to_agents"] == before + 24

    await wait_for(client, all_relayed, customer=BRUNO, what="the burst relayed", timeout=30)
    state = await state_of(client, BRUNO)
    assert busiest == state["counters"]["group_budget"] == 20  # used to the full, never over
    assert state["counters"]["too_many_requests"] == 0
    assert said(topic_of(state, BRUNO)["messages"], "Burst message 24 of 24")


@pytest.mark.parametrize(
    ("path", "body", "error"),
    [
        ("/api/customer/send", {"customer": 999, "text": "hi"}, "unknown customer 999"),
        ("/api/customer/send", {"customer": "1001", "text": "hi"}, '"customer" must be'),
        ("/api/customer/send", {"customer": ALICE}, '"text" must be'),
        ("/api/customer/send", {"customer": ALICE, "text": "   "}, '"text" must be'),
        ("/api/customer/send", {"customer": ALICE, "text": "x" * 4097}, "longer than"),
        ("/api/customer/send", {"customer": ALICE, "text": "hi", "reply_to": 77}, "no message 77"),
        ("/api/customer/press", {"customer": ALICE, "message_id": 5, "data": "x"}, "no message"),
        ("/api/customer/burst", {"customer": ALICE, "count": 0}, '"count" must be'),
        ("/api/customer/burst", {"customer": ALICE, "count": 1000}, '"count" must be'),
        ("/api/agent/send", {"agent": ALICE, "topic": 1, "text": "hi"}, "unknown agent 1001"),
        ("/api/agent/send", {"agent": DANA, "topic": 4242, "text": "hi"}, "unknown topic 4242"),
        ("/api/agent/send", {"agent": DANA, "text": "hi"}, '"topic" must be'),
        ("/api/agent/press", {"agent": DANA, "message_id": 3, "data": "x"}, "no message 3"),
        ("/api/customer/send", ["not", "an", "object"], "must be a JSON object"),
    ],
)
async def test_a_wrong_action_is_refused_with_a_clear_400(
    playground: Running, path: str, body: object, error: str
) -> None:
    sandbox, client, _ = playground
    status, answer = await post(client, path, body)
    assert status == 400
    assert answer["ok"] is False
    assert error in answer["error"]
    assert sandbox.telegram.pending_updates == []
    assert sandbox.telegram.chat_messages(ALICE) == []


async def test_a_button_that_is_not_there_cannot_be_pressed(
    playground: Running,
) -> None:
    sandbox, client, _ = playground
    await post(client, "/api/customer/send", {"customer": ALICE, "text": "Hello"})
    message_id, _ = await wait_for(
        client, lambda s: button_in(s["chat"], "Billing"), what="the category buttons"
    )
    forged = {"customer": ALICE, "message_id": message_id, "data": "ticket:1:close"}
    status, answer = await post(client, "/api/customer/press", forged)
    assert status == 400
    assert "has no button" in answer["error"]
    # Nor a customer's button by an agent, in the group: the message is not there.
    as_agent = {"agent": DANA, "message_id": message_id, "data": "ticket:1:close"}
    assert (await post(client, "/api/agent/press", as_agent))[0] == 400
    async with client.get("/api/state", params={"customer": "nobody"}) as response:
        assert response.status == 400
        assert "unknown customer" in (await response.json())["error"]
    await sandbox.settled()
    assert sandbox.telegram.calls_to("answerCallbackQuery") == []


async def test_only_the_playgrounds_own_page_can_drive_it(
    playground: Running,
) -> None:
    sandbox, client, url = playground
    hello = {"customer": ALICE, "text": "Hello from elsewhere"}
    base = url.rstrip("/")
    host = base.removeprefix("http://")

    # A page on another site, posting JSON (a browser would have asked first, and been
    # refused a CORS preflight; a client that does not ask is turned away all the same).
    async with client.post(
        "/api/customer/send", json=hello, headers={"Origin": "http://evil.example"}
    ) as response:
        assert response.status == 403
        assert "own page" in (await response.json())["error"]
    async with client.post(
        "/api/customer/send", json=hello, headers={"Sec-Fetch-Site": "cross-site"}
    ) as response:
        assert response.status == 403
    # A simple cross-site form post: not JSON, so no preflight, so it is refused here.
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        async with client.post(
            "/api/customer/send",
            data=b'{"customer": 1001, "text": "Hello from elsewhere"}',
            headers={"Content-Type": content_type, "Origin": base},
        ) as response:
            assert response.status == 415, content_type
            assert "JSON body" in (await response.json())["error"]
    # A DNS-rebinding page reaches this port under its own name.
    for method in ("GET", "POST"):
        async with client.request(
            method,
            "/api/state" if method == "GET" else "/api/customer/send",
            json=None if method == "GET" else hello,
            headers={"Host": "evil.example:80"},
        ) as response:
            assert response.status == 403, method

    await asyncio.sleep(0.3)
    assert sandbox.telegram.chat_messages(ALICE) == []
    assert sandbox.telegram.pending_updates == []
    assert sandbox.telegram.calls_to("sendMessage") == []

    # The page itself (same origin, JSON), under either of its names, is heard.
    for name in (host, host.replace("127.0.0.1", "localhost")):
        async with client.post(
            "/api/customer/send",
            json=hello,
            headers={"Origin": f"http://{name}", "Host": name, "Sec-Fetch-Site": "same-origin"},
        ) as response:
            assert response.status == 200
    assert [m["text"] for m in sandbox.telegram.chat_messages(ALICE)][:1] == [hello["text"]]


async def test_the_page_and_its_files_are_served_and_nothing_else(
    playground: Running,
) -> None:
    _, client, _ = playground
    async with client.get("/") as page:
        assert page.status == 200
        assert page.content_type == "text/html"
        assert "/static/app.js" in await page.text()
        assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    for name, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
        async with client.get(f"/static/{name}") as file:
            assert (file.status, file.content_type) == (200, kind)
    for path in ("/static/../view.py", "/static/view.py", "/static/%2e%2e%2fapp.py"):
        async with client.get(path) as missing:
            assert missing.status == 404, path
    async with client.get("/api/customer/send") as wrong_method:
        assert wrong_method.status == 405
