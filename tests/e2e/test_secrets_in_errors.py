"""The bot token and the API URL's password never reach a stored or shown error text.

aiohttp's errors can carry the request URL, which holds the token (`/bot<token>/copyMessage`).
The real daemon talks to the fake Bot API through a small proxy on 127.0.0.1, reached with
credentials in telegram.api_url (`http://desk:<password>@127.0.0.1:port`), which fails one
method on demand: a redirect loop (TooManyRedirects names the URL), a redirect to a closed
port (a connection error) and a request that never answers (a timeout). Each failed reply
becomes a dead letter with a note to the agents. Then the database file's bytes (and its
-wal), every message in every chat of the fake, and the `topicdesk dlq list` table are
searched for the secrets.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from bot.cli import format_letters
from bot.config import Settings, load_settings
from bot.fake_telegram import BOT_TOKEN, GROUP_ID, FakeTelegram
from storage import deadletters
from storage.db import Database
from tests.conftest import RunningDesk
from tests.e2e.test_conversation import AGENT, ALICE, open_ticket

PASSWORD = "proxy-pass-7f3a9c"
NOTE = "⚠ not delivered to the customer: "


class FailingProxy:
    """A Bot API URL in front of the fake: every call passes, except `method` while `fault`."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.fault: str | None = None
        self.method = "copyMessage"
        self.base_url = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._closed_port = _a_closed_port()

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.base_url = f"http://desk:{PASSWORD}@{host}:{port}"
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120))

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self.fault is not None and request.match_info["method"] == self.method:
            if self.fault == "loop":
                raise web.HTTPFound(request.path)  # the same URL again, and again
            if self.fault == "closed":
                raise web.HTTPTemporaryRedirect(
                    f"http://127.0.0.1:{self._closed_port}{request.path}"
                )
            if self.fault == "hang":
                await asyncio.sleep(5)  # telegram.request_timeout is 1 s
        assert self._session is not None
        body = await request.read()
        headers = {"Content-Type": request.headers.get("Content-Type", "application/json")}
        try:
            async with self._session.request(
                request.method, self.upstream + request.path_qs, data=body, headers=headers
            ) as answer:
                return web.Response(
                    status=answer.status,
                    body=await answer.read(),
                    headers={
                        "Content-Type": answer.headers.get("Content-Type", "application/json")
                    },
                )
        except aiohttp.ClientError:  # the fake is stopping
            return web.Response(status=502, text="Bad Gateway")


def _a_closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
async def proxy(telegram: FakeTelegram) -> AsyncIterator[FailingProxy]:
    running = FailingProxy(telegram.base_url)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
def settings(
    desk_env: dict[str, str], proxy: FailingProxy, monkeypatch: pytest.MonkeyPatch
) -> Settings:
    for name, value in {
        "TOPICDESK_TELEGRAM__API_URL": proxy.base_url,
        "TOPICDESK_TELEGRAM__REQUEST_TIMEOUT": "1",
        "TOPICDESK_DELIVERY__MAX_ATTEMPTS": "2",
        "TOPICDESK_DELIVERY__BASE_DELAY": "0.05",
        "TOPICDESK_DELIVERY__MAX_DELAY": "0.2",
        # Failures to one chat must become dead letters, not stop all sending.
        "TOPICDESK_DELIVERY__BREAKER_THRESHOLD": "100",
    }.items():
        monkeypatch.setenv(name, value)
    return load_settings()


SECRETS = {
    "the token": BOT_TOKEN,
    "the token's secret half": BOT_TOKEN.split(":", 1)[1],
    "the api_url's password": PASSWORD,
}


def assert_no_secret(where: str, data: bytes | str) -> None:
    raw = data.encode() if isinstance(data, str) else data
    for name, secret in SECRETS.items():
        assert secret.encode() not in raw, f"{name} is in {where}"


def database_files(path: Path) -> list[Path]:
    return [p for p in (path, Path(f"{path}-wal")) if p.exists()]


async def test_failed_sends_store_and_show_their_reason_without_the_token(
    telegram: FakeTelegram, proxy: FailingProxy, desk: RunningDesk
) -> None:
    telegram.add_user(AGENT, "Bob", "Agent")
    telegram.add_user(ALICE, "Alice", "Smith")
    thread = await open_ticket(telegram, ALICE)

    for number, fault in enumerate(("loop", "closed", "hang"), start=1):
        proxy.fault = fault
        telegram.send_group(AGENT, f"Reply through a {fault}", thread_id=thread)
        await telegram.wait_until(
            lambda n=number: (
                sum(m.get("text", "").startswith(NOTE) for m in telegram.bot_messages(GROUP_ID))
                >= n
            ),
            timeout=30,
            what=f"the note about the reply lost to a {fault}",
        )
        proxy.fault = None

    notes = [
        m["text"]
        for m in telegram.bot_messages(GROUP_ID, thread)
        if m.get("text", "").startswith(NOTE)
    ]
    assert len(notes) == 3
    # The reasons are there, each on one line, with the URL's token replaced.
    assert "TooManyRedirects" in notes[0]
    assert "bot[secret]/copyMessage" in notes[0]
    assert "ClientConnectorError" in notes[1]
    assert "timeout" in notes[2].lower()

    path = desk.settings.storage.path
    for file in database_files(path):  # while it runs: the -wal holds the latest pages
        assert_no_secret(file.name, file.read_bytes())

    database = await Database.open(path)
    try:
        async with database.reader() as db:
            letters = await deadletters.list_letters(db)
            errors = [row[0] for row in await db.fetchall("SELECT last_error FROM outbox")]
    finally:
        await database.close()
    assert len(letters) == 3
    assert "bot[secret]" in letters[0].error
    table = format_letters(letters)  # what `topicdesk dlq list` prints
    assert "TooManyRedirects" in table
    assert_no_secret("topicdesk dlq list", table)
    assert_no_secret("outbox.last_error", json.dumps(errors))

    await desk.stop()
    for file in database_files(path):
        assert_no_secret(file.name, file.read_bytes())
    for chat_id in list(telegram._messages):
        assert_no_secret(f"chat {chat_id}", json.dumps(telegram.chat_messages(chat_id)))
