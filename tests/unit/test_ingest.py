"""The poller stores a batch of updates in one transaction, each update in a savepoint."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiogram import Bot, Dispatcher, Router
from aiogram.types import Chat, Message, Update, User

from bot.ingest import Poller
from storage.db import Conn, Database
from storage.migrations import migrate


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    path = tmp_path / "desk.db"
    migrate(path)
    database = await Database.open(path)
    try:
        yield database
    finally:
        await database.close()


def a_message(update_id: int, text: str) -> dict[str, Any]:
    """A private message, as getUpdates hands it out (JSON)."""
    user = User(id=42, is_bot=False, first_name="Alice")
    message = Message(
        message_id=update_id,
        date=datetime(2026, 1, 1, tzinfo=UTC),
        chat=Chat(id=42, type="private"),
        from_user=user,
        text=text,
    )
    return Update(update_id=update_id, message=message).model_dump(mode="json", exclude_none=True)


def a_dispatcher() -> Dispatcher:
    """Handlers that store what they see, and have a bug for the text "boom"."""
    router = Router()

    @router.message()
    async def remember(message: Message, db: Conn) -> None:
        await db.execute(
            "INSERT INTO kv (key, value) VALUES (?, ?)", (f"seen:{message.message_id}", "yes")
        )
        if message.text == "boom":
            raise RuntimeError("a bug in a handler")

    dispatcher = Dispatcher()
    dispatcher.include_router(router)
    return dispatcher


async def test_a_failing_update_is_rolled_back_alone_quarantined_and_its_neighbours_commit(
    db: Database,
) -> None:
    bot = Bot("123456:test-token")
    try:
        poller = Poller(bot, a_dispatcher(), db)
        done = await poller.process_batch(
            [a_message(1, "one"), a_message(2, "boom"), a_message(3, "three")]
        )
    finally:
        await bot.session.close()

    assert done == [1, 2, 3]
    async with db.reader() as conn:
        seen = {row[0] for row in await conn.fetchall("SELECT key FROM kv")}
        ledger = dict(await conn.fetchall("SELECT update_id, outcome FROM processed_updates"))
        kept = await conn.fetchall("SELECT update_id, stage, error, raw FROM quarantined_updates")
    assert seen == {"seen:1", "seen:3"}  # the failing update's write was rolled back
    assert ledger == {1: "handled", 2: "quarantined", 3: "handled"}
    [(update_id, stage, error, raw)] = kept
    assert (update_id, stage) == (2, "handler")
    assert "a bug in a handler" in error
    assert '"text": "boom"' in raw  # kept whole, to be replayed


async def test_a_batch_that_cannot_commit_leaves_nothing_behind_and_is_not_confirmed(
    db: Database,
) -> None:
    router = Router()

    @router.message()
    async def orphan(message: Message, db: Conn) -> None:
        await db.execute("INSERT INTO kv (key, value) VALUES (?, 'yes')", (message.text,))
        if message.text == "orphan":
            # Checked only at COMMIT: the whole batch's commit fails.
            await db.execute("PRAGMA defer_foreign_keys = ON")
            await db.execute(
                "INSERT INTO outbox (idempotency_key, purpose, method, params, chat_id,"
                " ticket_id, not_before, created_at, updated_at)"
                " VALUES ('k', 'notice', 'sendMessage', '{}', 1, 999, '', '', '')"
            )

    dispatcher = Dispatcher()
    dispatcher.include_router(router)
    bot = Bot("123456:test-token")
    poller = Poller(bot, dispatcher, db)
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        await poller.process_batch([a_message(1, "fine"), a_message(2, "orphan")])

    assert poller.processed == 0
    async with db.reader() as conn:
        assert await conn.fetchval("SELECT COUNT(*) FROM processed_updates") == 0
        assert await conn.fetchval("SELECT COUNT(*) FROM kv") == 0

    # What the poller does with it: one update at a time, the culprit quarantined alone.
    done = await poller.store_batch([a_message(1, "fine"), a_message(2, "orphan")])
    assert done == [1, 2]
    async with db.reader() as conn:
        ledger = dict(await conn.fetchall("SELECT update_id, outcome FROM processed_updates"))
        stored = {row[0] for row in await conn.fetchall("SELECT key FROM kv")}
        assert await conn.fetchval("SELECT COUNT(*) FROM outbox") == 0
    assert ledger == {1: "handled", 2: "quarantined"}
    assert "fine" in stored
    assert "orphan" not in stored
