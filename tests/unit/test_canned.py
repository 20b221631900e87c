"""Canned responses: what seeding from the config may change, and how a text is filled in;
what counts as an internal note."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.services.canned import close_names, fill, problem_with
from bot.services.notes import note_text
from storage import canned
from storage.db import Database
from storage.migrations import migrate

ADMIN = 900


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    path = tmp_path / "desk.db"
    migrate(path)
    opened = await Database.open(path)
    yield opened
    await opened.close()


async def texts(database: Database) -> dict[str, str]:
    async with database.reader() as db:
        return {r.name: r.text for r in await canned.active(db)}


async def test_the_config_adds_and_refreshes_its_own_but_never_undoes_an_admin(
    database: Database,
) -> None:
    async with database.transaction() as db:
        first = await canned.seed(db, {"hello": "Hi", "bye": "Bye", "faq": "See the FAQ"})
        await canned.put(db, "bye", "Goodbye, {customer_name}", ADMIN)  # an admin's edit
        assert await canned.delete(db, "faq", ADMIN)
        assert not await canned.delete(db, "faq", ADMIN)  # deleted already
    assert first.added == ("hello", "bye", "faq")

    # The config changes every text and drops nothing; only the untouched row follows it.
    async with database.transaction() as db:
        again = await canned.seed(db, {"hello": "Hello!", "bye": "Bye!", "faq": "FAQ!"})
    assert (again.added, again.refreshed, again.kept) == ((), ("hello",), ("bye", "faq"))
    assert await texts(database) == {"hello": "Hello!", "bye": "Goodbye, {customer_name}"}

    # Only an admin brings a deleted name back, and then it is theirs.
    async with database.transaction() as db:
        assert await canned.put(db, "faq", "The FAQ is at example.com", ADMIN)
        assert not await canned.put(db, "faq", "The FAQ moved", ADMIN)
        await canned.seed(db, {"faq": "FAQ!"})
    assert (await texts(database))["faq"] == "The FAQ moved"


def test_only_the_three_variables_are_filled_and_their_values_escaped() -> None:
    text = fill(
        "Hi <b>{customer_name}</b> ({ticket_id}), {agent_name} here. {other} {} {{x}}",
        customer_name="<b>Eve & Co</b>",
        ticket_id=7,
        agent_name="Bob <3",
    )
    assert text == (
        "Hi <b>&lt;b&gt;Eve &amp; Co&lt;/b&gt;</b> (7), Bob &lt;3 here. {other} {} {{x}}"
    )


def test_names_and_texts_are_checked_like_the_configs() -> None:
    assert problem_with("greeting", "Hello <b>{customer_name}</b>") is None
    assert "not a canned response name" in str(problem_with("Hello-World", "x"))
    assert "not a canned response name" in str(problem_with("a" * 33, "x"))
    assert "not valid Telegram HTML" in str(problem_with("greeting", "Hello <b>there"))
    assert "empty" in str(problem_with("greeting", "  "))


def test_close_names_suggest_what_was_meant() -> None:
    names = ["greeting", "guide", "refund_policy", "refund_status"]
    assert close_names("greting", names) == ["greeting"]
    assert close_names("refund", names) == ["refund_policy", "refund_status"]
    assert close_names("zzz", names) == []


def test_what_counts_as_a_note() -> None:
    assert note_text("// the customer is upset", "//") == "the customer is upset"
    assert note_text("//", "//") == ""  # the prefix alone stays inside too
    assert note_text("see http://example.com", "//") is None
    assert note_text(None, "//") is None
    assert note_text("!! internal", "!!") == "internal"
    # A command is a command, even when the prefix is a single slash.
    assert note_text("/close", "/") is None
    assert note_text("/ internal", "/") == "internal"
