"""The dead-letter queue: what could not be delivered, kept for an admin."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from storage import outbox
from storage.db import Conn, Row, utcnow
from storage.outbox import OutboxItem
from storage.redact import safe_text


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    outbox_id: int
    purpose: str
    method: str
    params: dict[str, Any]
    chat_id: int
    ticket_id: int | None
    error: str
    attempts: int
    created_at: str
    resolution: str | None


def _letter(row: Row) -> DeadLetter:
    # Scrubbed on the way out too: a letter stored by an older version may hold a token.
    return DeadLetter(
        id=row["id"],
        outbox_id=row["outbox_id"],
        purpose=row["purpose"],
        method=row["method"],
        params=json.loads(row["params"]),
        chat_id=row["chat_id"],
        ticket_id=row["ticket_id"],
        error=safe_text(row["error"]),
        attempts=row["attempts"],
        created_at=row["created_at"],
        resolution=row["resolution"],
    )


async def bury(db: Conn, item: OutboxItem, error: str, attempts: int) -> int:
    """Mark an outbox row dead and keep it, with why, in the dead-letter queue.

    `error` is stored as `safe_text()` makes it, whatever the caller passed: no token, no
    URL credentials, one line.
    """
    error = safe_text(error)
    await outbox.mark_dead(db, item.id, error)
    letter = await db.insert(
        """
        INSERT INTO dead_letters (outbox_id, purpose, method, params, chat_id, ticket_id,
                                  error, attempts, created_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
        """,
        (
            item.id,
            item.purpose,
            item.method,
            json.dumps(item.params, ensure_ascii=False),
            item.chat_id,
            item.ticket_id,
            error,
            attempts,
            utcnow(),
        ),
    )
    assert letter is not None
    return letter


async def list_letters(db: Conn, *, include_resolved: bool = False) -> list[DeadLetter]:
    where = "" if include_resolved else "WHERE resolution IS NULL"
    rows = await db.fetchall(f"SELECT * FROM dead_letters {where} ORDER BY id")
    return [_letter(row) for row in rows]


async def get_letter(db: Conn, letter_id: int) -> DeadLetter | None:
    row = await db.fetchone("SELECT * FROM dead_letters WHERE id = ?", (letter_id,))
    return None if row is None else _letter(row)


async def count_open(db: Conn) -> int:
    return int(await db.fetchval("SELECT COUNT(*) FROM dead_letters WHERE resolution IS NULL"))


async def resolve(db: Conn, letter: DeadLetter, resolution: str) -> None:
    """Retry (requeue its outbox row) or drop a dead letter; either way it leaves the list."""
    if resolution == "retried":
        await outbox.requeue(db, letter.outbox_id)
    await db.execute(
        "UPDATE dead_letters SET resolution = ?, resolved_at = ? WHERE id = ?",
        (resolution, utcnow(), letter.id),
    )
