"""Banned customers, and what they sent while banned (kept, never relayed)."""

from __future__ import annotations

from dataclasses import dataclass

from storage.db import Conn, Row, utcnow


@dataclass(frozen=True, slots=True)
class Ban:
    user_id: int
    reason: str | None
    banned_by: int | None
    created_at: str


def _ban(row: Row) -> Ban:
    return Ban(
        user_id=row["user_id"],
        reason=row["reason"],
        banned_by=row["banned_by"],
        created_at=row["created_at"],
    )


async def get(db: Conn, user_id: int) -> Ban | None:
    row = await db.fetchone("SELECT * FROM bans WHERE user_id = ?", (user_id,))
    return None if row is None else _ban(row)


async def ban(db: Conn, user_id: int, reason: str | None, banned_by: int | None) -> Ban | None:
    """Ban a user; None if they already were (the first ban and its reason stand)."""
    row = await db.fetchone(
        "INSERT INTO bans (user_id, reason, banned_by, created_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (user_id) DO NOTHING RETURNING *",
        (user_id, reason, banned_by, utcnow()),
    )
    return None if row is None else _ban(row)


async def unban(db: Conn, user_id: int) -> bool:
    """Lift a ban; False if there was none."""
    return await db.execute_count("DELETE FROM bans WHERE user_id = ?", (user_id,)) > 0


async def keep_message(
    db: Conn, user_id: int, message_id: int, kind: str, text: str | None, sent_at: str
) -> bool:
    """Keep what a banned user sent; False if this message was kept already."""
    changed = await db.execute_count(
        "INSERT INTO banned_messages (user_id, message_id, kind, text, sent_at, stored_at)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (user_id, message_id, kind, text, sent_at, utcnow()),
    )
    return changed > 0


async def kept_messages(db: Conn, user_id: int) -> list[tuple[int, str, str | None]]:
    """(message id, kind, text) of what a user sent while banned, in order."""
    rows = await db.fetchall(
        "SELECT message_id, kind, text FROM banned_messages WHERE user_id = ?"
        " ORDER BY sent_at, message_id",
        (user_id,),
    )
    return [(int(row["message_id"]), str(row["kind"]), row["text"]) for row in rows]
