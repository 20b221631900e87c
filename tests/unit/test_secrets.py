"""One way to word an error for storing or showing: never with the token or URL credentials."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from aiogram.exceptions import ClientDecodeError, TelegramNetworkError
from aiogram.methods import SendMessage

from bot.cli import EXIT_OK, main
from bot.config import load_settings
from bot.delivery.errors import reason
from bot.logs import redactor
from bot.preflight import StartupError, identify, make_bot
from storage import deadletters, outbox
from storage.db import Database
from storage.migrations import migrate
from tests.unit.conftest import TOKEN

SECRET_HALF = TOKEN.split(":", 1)[1]
# Not the configured token: the patterns must hide a token nobody registered.
OTHER_TOKEN = "987654321:AAGxYz0123456789abcdefghijklmnopqrs"
URL = f"https://api.telegram.org/bot{OTHER_TOKEN}/copyMessage"


@pytest.fixture
def no_known_secrets() -> Iterator[None]:
    """The process's registry of secrets, emptied for the test and put back after."""
    saved = redactor.secrets[:]
    redactor.secrets = []
    try:
        yield
    finally:
        redactor.secrets = saved


def network_error(message: str) -> TelegramNetworkError:
    return TelegramNetworkError(method=SendMessage(chat_id=1, text="x"), message=message)


@pytest.mark.usefixtures("no_known_secrets")
def test_a_token_in_an_aiohttp_error_url_is_hidden_even_if_nobody_registered_it() -> None:
    error = network_error(f"TooManyRedirects: 0, message='', url='{URL}'")

    text = reason(error)

    assert OTHER_TOKEN not in text
    assert OTHER_TOKEN.split(":")[1] not in text
    assert (
        text
        == "TooManyRedirects: 0, message='', url='https://api.telegram.org/bot[secret]/copyMessage'"
    )


@pytest.mark.usefixtures("no_known_secrets")
def test_url_credentials_and_a_bare_token_are_hidden_in_any_exception() -> None:
    error = ConnectionError(
        f"proxy http://desk:hunter2@proxy.local:3128 refused; token was {OTHER_TOKEN}"
    )

    text = reason(error)

    assert "hunter2" not in text
    assert OTHER_TOKEN not in text
    assert text == (
        "ConnectionError: proxy http://[secret]@proxy.local:3128 refused; token was [secret]"
    )


@pytest.mark.usefixtures("no_known_secrets")
def test_registered_secrets_are_hidden_wherever_they_appear(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TOPICDESK_TELEGRAM__TOKEN", TOKEN)
    monkeypatch.setenv("TOPICDESK_SUPPORT__GROUP_ID", "-1001234567890")
    monkeypatch.setenv("TOPICDESK_TELEGRAM__API_URL", "http://desk:p%40ss-word-9@proxy.local")

    load_settings()  # reading the settings registers the token and the password
    text = reason(RuntimeError(f"saw {SECRET_HALF} and p@ss-word-9 and p%40ss-word-9"))

    assert text == "RuntimeError: saw [secret] and [secret] and [secret]"
    # The log redactor reads the same one list.
    assert redactor.scrub(f"x {SECRET_HALF} p@ss-word-9") == "x [secret] [secret]"


def test_a_reason_is_one_line_and_not_a_whole_error_page() -> None:
    page = "<html>\n<body>\n" + "<p>502 Bad Gateway</p>\n" * 200 + "</body></html>"
    error = ClientDecodeError("Failed to decode object", ValueError("not JSON"), page)

    text = reason(error)

    assert "\n" not in text
    assert len(text) <= 500
    assert text.startswith("ClientDecodeError: Failed to decode object")


async def _bury_with_raw_text(path: Path) -> None:
    migrate(path)
    database = await Database.open(path)
    try:
        async with database.transaction() as db:
            row = await outbox.enqueue(
                db,
                outbox.Outgoing(
                    key="note-1",
                    purpose=outbox.Purpose.NOTICE,
                    method="sendMessage",
                    params={"text": "Hello"},
                    chat_id=1001,
                ),
            )
            item = await outbox.get_item(db, row or 0)
            assert item is not None
            await deadletters.bury(db, item, f"failed at {URL}\nsecond line", attempts=1)
    finally:
        await database.close()


@pytest.mark.usefixtures("no_known_secrets")
def test_a_dead_letter_never_stores_a_token_whatever_text_it_is_given(tmp_path: Path) -> None:
    path = tmp_path / "desk.db"
    asyncio.run(_bury_with_raw_text(path))

    for file in (path, Path(f"{path}-wal")):
        if file.exists():
            data = file.read_bytes()
            assert OTHER_TOKEN.encode() not in data
            assert OTHER_TOKEN.split(":")[1].encode() not in data


@pytest.mark.usefixtures("operator_shell")
def test_dlq_list_hides_a_token_stored_by_an_older_version(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_bury_with_raw_text(database))
    with closing(sqlite3.connect(database)) as conn, conn:  # as an older TopicDesk stored it
        conn.execute("UPDATE dead_letters SET error = ?", (f"TooManyRedirects: url='{URL}'",))

    assert main(["dlq", "list"]) == EXIT_OK

    listing = capsys.readouterr().out
    assert "TooManyRedirects: url='https://api.telegram.org/bot[secret]/copyMessage'" in listing
    assert OTHER_TOKEN not in listing


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_cannot_reach_the_bot_api_does_not_echo_the_api_url_password(
    monkeypatch: pytest.MonkeyPatch, no_known_secrets: None
) -> None:
    monkeypatch.setenv("TOPICDESK_TELEGRAM__TOKEN", TOKEN)
    monkeypatch.setenv("TOPICDESK_SUPPORT__GROUP_ID", "-1001234567890")
    monkeypatch.setenv("TOPICDESK_TELEGRAM__API_URL", f"http://desk:pw@127.0.0.1:{_closed_port()}")
    settings = load_settings()
    bot = make_bot(settings)
    try:
        with pytest.raises(StartupError) as raised:
            await identify(bot, settings)
    finally:
        await bot.session.close()

    message = str(raised.value)
    assert message.startswith("Cannot reach the Bot API at http://[secret]@127.0.0.1:")
    assert "pw@" not in message
    assert "desk:" not in message
