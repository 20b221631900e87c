"""Internal notes: what agents write on a ticket for each other, never sent to the customer."""

from __future__ import annotations

from dataclasses import dataclass

from storage import kv
from storage.db import Conn, Row, utcnow


@dataclass(frozen=True, slots=True)
class Note:
    id: int
    ticket_id: int
    author_id: int
    chat_id: int
    message_id: int
    text: str
    created_at: str


def _note(row: Row) -> Note:
    return Note(
        id=row["id"],
        ticket_id=row["ticket_id"],
        author_id=row["author_id"],
        chat_id=row["chat_id"],
        message_id=row["message_id"],
        text=row["text"],
        created_at=row["created_at"],
    )


async def add(
    db: Conn, ticket_id: int, author_id: int, chat_id: int, message_id: int, text: str
) -> int | None:
    """Store a note written as message `message_id`; None if that message is one already."""
    return await db.insert(
        """
        INSERT INTO notes (ticket_id, author_id, chat_id, message_id, text, created_at)
        VALUES (?, ?, ?, ?, ?, ?)
        ON CONFLICT (chat_id, message_id) DO NOTHING
        """,
        (ticket_id, author_id, chat_id, message_id, text, utcnow()),
    )


async def of_ticket(db: Conn, ticket_id: int) -> list[Note]:
    """A ticket's notes, oldest first."""
    rows = await db.fetchall("SELECT * FROM notes WHERE ticket_id = ? ORDER BY id", (ticket_id,))
    return [_note(row) for row in rows]


def _album_key(chat_id: int, media_group_id: str) -> str:
    return f"note_album:{chat_id}:{media_group_id}"


async def mark_album(db: Conn, chat_id: int, media_group_id: str) -> None:
    """Remember that an album is a note: its other parts, which carry no caption of
    their own, are notes too."""
    await kv.put(db, _album_key(chat_id, media_group_id), "1")


async def is_note_album(db: Conn, chat_id: int, media_group_id: str) -> bool:
    return await kv.get(db, _album_key(chat_id, media_group_id)) is not None
