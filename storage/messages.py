"""Relay links: each customer or agent message and the copy we delivered of it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from storage.db import Conn, Row, utcnow

Direction = Literal["to_agents", "to_customer"]


@dataclass(frozen=True, slots=True)
class RelayedMessage:
    id: int
    ticket_id: int
    direction: Direction
    source_chat_id: int
    source_message_id: int
    target_chat_id: int | None
    target_message_id: int | None
    sender_id: int | None
    kind: str
    text: str | None
    media_group_id: str | None
    sent_at: str


def _message(row: Row) -> RelayedMessage:
    return RelayedMessage(
        id=row["id"],
        ticket_id=row["ticket_id"],
        direction=row["direction"],
        source_chat_id=row["source_chat_id"],
        source_message_id=row["source_message_id"],
        target_chat_id=row["target_chat_id"],
        target_message_id=row["target_message_id"],
        sender_id=row["sender_id"],
        kind=row["kind"],
        text=row["text"],
        media_group_id=row["media_group_id"],
        sent_at=row["sent_at"],
    )


async def add_message(
    db: Conn,
    *,
    ticket_id: int,
    direction: Direction,
    source_chat_id: int,
    source_message_id: int,
    sender_id: int | None,
    kind: str,
    text: str | None,
    media_group_id: str | None,
    sent_at: str,
) -> int | None:
    """Record a message to relay; None if this message was recorded already."""
    return await db.insert(
        """
        INSERT INTO messages (ticket_id, direction, source_chat_id, source_message_id,
                              sender_id, kind, text, media_group_id, sent_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (source_chat_id, source_message_id) DO NOTHING
        """,
        (
            ticket_id,
            direction,
            source_chat_id,
            source_message_id,
            sender_id,
            kind,
            text,
            media_group_id,
            sent_at,
        ),
    )


async def get_message(db: Conn, message_id: int) -> RelayedMessage | None:
    row = await db.fetchone("SELECT * FROM messages WHERE id = ?", (message_id,))
    return None if row is None else _message(row)


async def mark_delivered(db: Conn, message_id: int, chat_id: int, target_message_id: int) -> None:
    """Store the id Telegram gave our copy of the message."""
    await db.execute(
        """
        UPDATE messages SET target_chat_id = ?, target_message_id = ?, delivered_at = ?
        WHERE id = ?
        """,
        (chat_id, target_message_id, utcnow(), message_id),
    )


async def album_parts(db: Conn, source_chat_id: int, media_group_id: str) -> list[RelayedMessage]:
    """The parts of an album received so far, in message order."""
    rows = await db.fetchall(
        """
        SELECT * FROM messages WHERE source_chat_id = ? AND media_group_id = ?
        ORDER BY source_message_id
        """,
        (source_chat_id, media_group_id),
    )
    return [_message(row) for row in rows]


async def counterpart(db: Conn, chat_id: int, message_id: int) -> tuple[int, int] | None:
    """The message on the other side of the relay for `message_id` in `chat_id`.

    It is the copy we made of an original, or the original we made a copy of.
    """
    row = await db.fetchone(
        """
        SELECT target_chat_id AS chat, target_message_id AS msg FROM messages
        WHERE source_chat_id = ? AND source_message_id = ? AND target_message_id IS NOT NULL
        UNION ALL
        SELECT source_chat_id, source_message_id FROM messages
        WHERE target_chat_id = ? AND target_message_id = ?
        LIMIT 1
        """,
        (chat_id, message_id, chat_id, message_id),
    )
    return None if row is None else (row["chat"], row["msg"])


async def has_reply_to_customer(db: Conn, ticket_id: int) -> bool:
    """Whether an agent's message to the customer has been recorded for this ticket."""
    found = await db.fetchval(
        "SELECT 1 FROM messages WHERE ticket_id = ? AND direction = 'to_customer' LIMIT 1",
        (ticket_id,),
    )
    return found is not None


async def by_source(db: Conn, chat_id: int, message_id: int) -> RelayedMessage | None:
    """The relay link of an original message (a customer's or an agent's), if it was relayed."""
    row = await db.fetchone(
        "SELECT * FROM messages WHERE source_chat_id = ? AND source_message_id = ?",
        (chat_id, message_id),
    )
    return None if row is None else _message(row)


async def by_target(db: Conn, chat_id: int, message_id: int) -> RelayedMessage | None:
    """The relay link whose delivered copy is `message_id` in `chat_id`, if it is one."""
    row = await db.fetchone(
        "SELECT * FROM messages WHERE target_chat_id = ? AND target_message_id = ? LIMIT 1",
        (chat_id, message_id),
    )
    return None if row is None else _message(row)


async def set_text(db: Conn, message_id: int, text: str | None) -> None:
    """Keep the latest text (or caption) of a relayed message after its sender edited it."""
    await db.execute("UPDATE messages SET text = ? WHERE id = ?", (text, message_id))


async def unsent_copy(db: Conn, link: RelayedMessage) -> tuple[str, int] | None:
    """The state and attempts of the outbox row that is to copy this message (its relay, or
    its album's), while it is unsent; None once it went out or was given up."""
    row = await db.fetchone(
        """
        SELECT state, attempts FROM outbox
        WHERE ticket_id = ? AND state IN ('pending', 'sending')
          AND ((purpose = 'relay' AND message_id = ?) OR (purpose = 'album' AND album_id = ?))
        LIMIT 1
        """,
        (link.ticket_id, link.id, link.media_group_id),
    )
    return None if row is None else (str(row["state"]), int(row["attempts"]))


async def supersede(db: Conn, link: RelayedMessage, purpose: str) -> int:
    """Drop the unsent rows of `purpose` (an edit, a reaction) for one relayed message that
    a newer one replaces; a row already under way is left to finish."""
    return await db.execute_count(
        # The state IN (...) term lets SQLite use the partial index on unsent rows.
        "DELETE FROM outbox WHERE ticket_id = ? AND purpose = ? AND message_id = ?"
        " AND state IN ('pending', 'sending') AND state = 'pending' AND attempts = 0",
        (link.ticket_id, purpose, link.id),
    )
