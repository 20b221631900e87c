"""The outbox: every Bot API call that matters, written with the change that caused it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from storage.db import Conn, Row, to_iso, utcnow

# Lower numbers go first inside one chat's budget.
PRIORITY_CUSTOMER = 0  # the customer's words, topic creation, replies to the customer
PRIORITY_NOTICE = 5  # notes for agents, confirmations
PRIORITY_CARD = 9  # ticket card edits, coalesced


@dataclass(frozen=True, slots=True)
class Outgoing:
    """An outbox row to be written."""

    key: str  # idempotency key: the same change never enqueues twice
    purpose: str  # what success means: topic, card, relay, album, notice, ...
    method: str  # Bot API method
    params: dict[str, Any]
    chat_id: int  # the chat whose budget it spends
    ticket_id: int | None = None
    message_id: int | None = None  # the relay link to complete on success
    priority: int = PRIORITY_CUSTOMER
    delay: float = 0.0  # seconds to hold it back (album parts still arriving)


@dataclass(frozen=True, slots=True)
class OutboxItem:
    id: int
    key: str
    purpose: str
    method: str
    params: dict[str, Any] = field(hash=False)
    chat_id: int
    ticket_id: int | None
    message_id: int | None
    priority: int
    state: str
    attempts: int
    not_before: str
    last_error: str | None


def _item(row: Row) -> OutboxItem:
    return OutboxItem(
        id=row["id"],
        key=row["idempotency_key"],
        purpose=row["purpose"],
        method=row["method"],
        params=json.loads(row["params"]),
        chat_id=row["chat_id"],
        ticket_id=row["ticket_id"],
        message_id=row["message_id"],
        priority=row["priority"],
        state=row["state"],
        attempts=row["attempts"],
        not_before=row["not_before"],
        last_error=row["last_error"],
    )


def _later(seconds: float) -> str:
    return to_iso(datetime.now(UTC) + timedelta(seconds=seconds))


async def enqueue(db: Conn, item: Outgoing) -> int | None:
    """Write an outbox row; None when a row with the same key exists already."""
    now = utcnow()
    return await db.insert(
        """
        INSERT INTO outbox (idempotency_key, purpose, method, params, chat_id, ticket_id,
                            message_id, priority, not_before, created_at, updated_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (idempotency_key) DO NOTHING
        """,
        (
            item.key,
            item.purpose,
            item.method,
            json.dumps(item.params, ensure_ascii=False),
            item.chat_id,
            item.ticket_id,
            item.message_id,
            item.priority,
            _later(item.delay) if item.delay else now,
            now,
            now,
        ),
    )


async def hold_back(db: Conn, key: str, seconds: float) -> None:
    """Push a pending row's first attempt later (an album still growing)."""
    await db.execute(
        "UPDATE outbox SET not_before = ?, updated_at = ? WHERE idempotency_key = ?"
        " AND state = 'pending' AND attempts = 0",
        (_later(seconds), utcnow(), key),
    )


async def heads(db: Conn) -> list[OutboxItem]:
    """The next row of every chat: by priority, then in the order written."""
    rows = await db.fetchall(
        """
        SELECT * FROM (
            SELECT *, ROW_NUMBER() OVER (PARTITION BY chat_id ORDER BY priority, id) AS place
            FROM outbox WHERE state IN ('pending', 'sending')
        ) WHERE place = 1
        ORDER BY priority, id
        """
    )
    return [_item(row) for row in rows]


async def supersede(db: Conn, ticket_id: int, purpose: str) -> int:
    """Drop unsent rows of `purpose` for a ticket that a newer one replaces (card edits)."""
    return await db.execute_count(
        "DELETE FROM outbox WHERE ticket_id = ? AND purpose = ? AND state = 'pending'"
        " AND attempts = 0",
        (ticket_id, purpose),
    )


async def requeue(db: Conn, item_id: int) -> None:
    """Give a dead row a fresh start."""
    await db.execute(
        "UPDATE outbox SET state = 'pending', attempts = 0, not_before = ?, updated_at = ?"
        " WHERE id = ?",
        (utcnow(), utcnow(), item_id),
    )


async def record_attempt(db: Conn, item_id: int, error: str) -> None:
    """Note a failed attempt that will be retried in place."""
    await db.execute(
        "UPDATE outbox SET attempts = attempts + 1, last_error = ?, updated_at = ? WHERE id = ?",
        (error, utcnow(), item_id),
    )


async def move_chat(db: Conn, old_chat_id: int, new_chat_id: int) -> None:
    """Point unsent rows at a group's new id after it was upgraded."""
    await db.execute(
        "UPDATE outbox SET chat_id = ? WHERE chat_id = ? AND state IN ('pending', 'sending')",
        (new_chat_id, old_chat_id),
    )


async def get_item(db: Conn, item_id: int) -> OutboxItem | None:
    row = await db.fetchone("SELECT * FROM outbox WHERE id = ?", (item_id,))
    return None if row is None else _item(row)


async def mark_sending(db: Conn, item_id: int) -> None:
    await db.execute(
        "UPDATE outbox SET state = 'sending', attempts = attempts + 1, updated_at = ? WHERE id = ?",
        (utcnow(), item_id),
    )


async def mark_sent(db: Conn, item_id: int, result: Any) -> None:
    await db.execute(
        "UPDATE outbox SET state = 'sent', result = ?, last_error = NULL, updated_at = ?"
        " WHERE id = ?",
        (json.dumps(result, ensure_ascii=False, default=str), utcnow(), item_id),
    )


async def retry_later(db: Conn, item_id: int, seconds: float, error: str) -> None:
    """Put a row back in its queue, to be tried again after `seconds`."""
    await db.execute(
        "UPDATE outbox SET state = 'pending', not_before = ?, last_error = ?, updated_at = ?"
        " WHERE id = ?",
        (_later(seconds), error, utcnow(), item_id),
    )


async def mark_dead(db: Conn, item_id: int, error: str) -> None:
    await db.execute(
        "UPDATE outbox SET state = 'dead', last_error = ?, updated_at = ? WHERE id = ?",
        (error, utcnow(), item_id),
    )


async def resume_interrupted(db: Conn) -> int:
    """Rows left 'sending' by a stopped process go back to pending; return how many."""
    return await db.execute_count(
        "UPDATE outbox SET state = 'pending', updated_at = ? WHERE state = 'sending'",
        (utcnow(),),
    )


async def depth(db: Conn) -> int:
    """How many rows still wait to be sent."""
    return int(
        await db.fetchval("SELECT COUNT(*) FROM outbox WHERE state IN ('pending', 'sending')")
    )


async def has_unsent(db: Conn, ticket_id: int, purpose: str) -> bool:
    """Whether a ticket still has a row of `purpose` waiting to go out."""
    found = await db.fetchval(
        "SELECT 1 FROM outbox WHERE ticket_id = ? AND purpose = ?"
        " AND state IN ('pending', 'sending') LIMIT 1",
        (ticket_id, purpose),
    )
    return found is not None


async def replace_params(db: Conn, item_id: int, params: dict[str, Any]) -> None:
    """Change what a row will send (e.g. the plain-text fallback of bad markup)."""
    await db.execute(
        "UPDATE outbox SET params = ?, updated_at = ? WHERE id = ?",
        (json.dumps(params, ensure_ascii=False), utcnow(), item_id),
    )
