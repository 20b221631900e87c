"""What the operator reads: one JSON object a line, with context, and never the bot token."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from yarl import URL

from bot.logs import REDACTED, configure_logging, get_logger, redactor, token_secrets

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
SECRET_HALF = TOKEN.split(":", 1)[1]


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """Logging configured as in production, into a buffer; everything put back after."""
    root = logging.getLogger()
    aiogram_events = logging.getLogger("aiogram.event")
    saved = (root.handlers[:], root.level, aiogram_events.level, redactor.secrets[:])
    buffer = io.StringIO()
    configure_logging("DEBUG", fmt="json", stream=buffer, secrets=token_secrets(TOKEN))
    try:
        yield buffer
    finally:
        root.handlers, root.level = saved[0], saved[1]
        aiogram_events.setLevel(saved[2])
        redactor.secrets = saved[3]
        structlog.contextvars.clear_contextvars()
        structlog.reset_defaults()


def lines_of(buffer: io.StringIO) -> list[dict[str, Any]]:
    text = buffer.getvalue()
    return [json.loads(line) for line in text.splitlines()]


def test_the_secrets_of_a_token_are_the_token_and_its_secret_half() -> None:
    assert token_secrets(f" {TOKEN}\n") == [TOKEN, SECRET_HALF]
    assert token_secrets("no-colon-here") == ["no-colon-here"]


def test_the_token_never_reaches_the_log_however_it_is_logged(log_output: io.StringIO) -> None:
    url = f"https://api.telegram.org/bot{TOKEN}/getUpdates"
    log = get_logger("bot.daemon")

    log.info("polling", url=url, attempt=1, nested={"headers": [SECRET_HALF]})
    logging.getLogger("aiogram.dispatcher").warning("Failed to fetch updates from %s", url)
    try:
        raise ConnectionError(f"cannot connect to {url}")
    except ConnectionError as exc:
        log.exception("poll failed", error=exc)
        logging.getLogger("aiohttp.client").exception("request to %s failed", url)
    log.info("bare secret half", value=f"...{SECRET_HALF}...")

    output = log_output.getvalue()
    records = lines_of(log_output)
    assert TOKEN not in output
    assert SECRET_HALF not in output
    assert len(records) == 5
    assert records[0]["url"] == f"https://api.telegram.org/bot{REDACTED}/getUpdates"
    assert records[0]["nested"] == {"headers": [REDACTED]}
    assert records[1]["event"] == f"Failed to fetch updates from {records[0]['url']}"
    assert records[1]["logger"] == "aiogram.dispatcher"
    for record in records[2:4]:
        assert record["level"] == "error"
        assert "Traceback (most recent call last)" in record["exception"]
        assert (
            f"ConnectionError: cannot connect to https://api.telegram.org/bot{REDACTED}"
            in (record["exception"])
        )


def test_a_value_that_is_not_a_string_is_scrubbed_too(log_output: io.StringIO) -> None:
    # aiohttp hands out URLs as yarl.URL objects; the JSON renderer turns them into text
    # after the redactor has looked at the event.
    get_logger("bot.delivery").warning("retrying", url=URL(f"https://api.telegram.org/bot{TOKEN}/"))

    output = log_output.getvalue()
    assert TOKEN not in output
    assert SECRET_HALF not in output


def test_the_update_being_handled_is_named_on_every_line(log_output: io.StringIO) -> None:
    structlog.contextvars.bind_contextvars(update_id=1001, chat_id=111, ticket_id=42)

    get_logger("bot.handlers").info("message relayed", direction="to_agents")
    logging.getLogger("aiogram.dispatcher").info("library line")

    records = lines_of(log_output)
    assert len(records) == 2
    for record in records:
        assert (record["update_id"], record["chat_id"], record["ticket_id"]) == (1001, 111, 42)
        assert record["timestamp"].endswith("Z")
    assert records[0]["event"] == "message relayed"
    assert records[0]["level"] == "info"
    assert records[0]["logger"] == "bot.handlers"
    assert records[0]["direction"] == "to_agents"


def test_aiograms_own_per_update_lines_are_quietened(log_output: io.StringIO) -> None:
    logging.getLogger("aiogram.event").info("Update id=1 is handled")
    logging.getLogger("aiogram.event").warning("Update id=2 is not handled")

    assert [record["event"] for record in lines_of(log_output)] == ["Update id=2 is not handled"]


def test_lines_below_the_configured_level_are_dropped(log_output: io.StringIO) -> None:
    configure_logging("WARNING", fmt="json", stream=log_output)

    get_logger("bot").info("chatty")
    logging.getLogger("aiohttp").debug("chattier")
    get_logger("bot").warning("worth reading")

    assert [record["event"] for record in lines_of(log_output)] == ["worth reading"]
