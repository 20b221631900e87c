"""The outbox: every Bot API call that matters, written with the change that caused it.

The contract between the services that write rows and the sender that delivers them:

- `Purpose` says what a row is for, and so what its success changes;
- `method` and `params` are the Bot API request as far as it is known when written;
- the references that are resolved only at send time (because what they point at may
  not exist yet) are typed fields: `in_topic` (the ticket's forum topic), `edits_card`
  (the ticket's card message), `reply_to` (the counterpart of the message replied to in
  `params["from_chat_id"]`), `album` (every part of a media group);
- delivery progress (`parts_done`, `first_result` of a split text) has columns of its own.

Adding a new kind of outgoing work:
1. add a `Purpose` value here, and to the trigger in a new migration;
2. write its rows with `enqueue(Outgoing(...))` from a service, with a key from
   `storage.keys`;
3. say what its success changes in `bot.services.outcomes.DeskOutcomes.delivered`
   (nothing is fine), and what a failure means in `failed`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from storage.db import Conn, Row, to_iso, utcnow
from storage.redact import safe_text


class Purpose(StrEnum):
    """What an outbox row is for; matches the triggers of migration 0006."""

    TOPIC = "topic"  # create the ticket's forum topic
    CARD = "card"  # post the ticket card into its topic
    CARD_EDIT = "card_edit"  # show the card's new state (coalesced)
    RELAY = "relay"  # copy one message to the other side
    ALBUM = "album"  # copy an album to the other side in one call
    NOTICE = "notice"  # a message from the desk itself
    TOPIC_CLOSE = "topic_close"
    TOPIC_REOPEN = "topic_reopen"
    TOPIC_PROBE = "topic_probe"  # reconciliation asks whether the topic still exists
    TOPIC_EDIT = "topic_edit"  # rename the topic to show status and assignee (coalesced)
    CARD_PIN = "card_pin"  # pin the ticket card in its topic
    EDIT = "edit"  # carry an edit of a relayed message to its copy (coalesced)
    REACTION = "reaction"  # set a reaction: mirrored from the other side, or a note's mark


class State(StrEnum):
    """Where a row stands; matches the CHECK constraint of `outbox.state`."""

    PENDING = "pending"
    SENDING = "sending"  # its call is under way
    SENT = "sent"
    DEAD = "dead"  # kept in the dead-letter queue


UNSENT = (State.PENDING, State.SENDING)

# Lower numbers go first inside one ticket's turn.
PRIORITY_RECOVERY = -1  # a new topic or a reopened one, before anything else
PRIORITY_CUSTOMER = 0  # the customer's words, topic creation, replies to the customer
PRIORITY_NOTICE = 5  # notes for agents, confirmations
PRIORITY_CARD = 9  # card edits, closing the topic: coalesced and sent last in a group
PRIORITY_PROBE = 10  # reconciliation's topic probes: after everything else


@dataclass(frozen=True, slots=True)
class Outgoing:
    """An outbox row to be written."""

    key: str  # idempotency key (storage.keys): the same change never enqueues twice
    purpose: Purpose
    method: str  # Bot API method
    params: dict[str, Any]
    chat_id: int  # the chat whose budget it spends
    ticket_id: int | None = None
    message_id: int | None = None  # the relay link to complete on success
    priority: int = PRIORITY_CUSTOMER
    delay: float = 0.0  # seconds to hold it back (album parts still arriving)
    in_topic: bool = False  # sent into the ticket's topic, wherever it is by then
    edits_card: bool = False  # edits the ticket's card message
    reply_to: int | None = None  # replies to this message of params["from_chat_id"]
    album: str | None = None  # copies every part of this media group


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """An outbox row as stored."""

    id: int
    key: str
    purpose: Purpose
    method: str
    params: dict[str, Any] = field(hash=False)
    chat_id: int
    ticket_id: int | None
    message_id: int | None
    priority: int
    state: State
    attempts: int
    not_before: str
    last_error: str | None
    in_topic: bool = False
    edits_card: bool = False
    reply_to: int | None = None
    album: str | None = None
    parts_done: int = 0  # parts of a split text already sent
    first_result: Any = field(default=None, hash=False)  # Telegram's answer to the first part


def _item(row: Row) -> OutboxItem:
    return OutboxItem(
        id=row["id"],
        key=row["idempotency_key"],
        purpose=Purpose(row["purpose"]),
        method=row["method"],
        params=json.loads(row["params"]),
        chat_id=row["chat_id"],
        ticket_id=row["ticket_id"],
        message_id=row["message_id"],
        priority=row["priority"],
        state=State(row["state"]),
        attempts=row["attempts"],
        not_before=row["not_before"],
        last_error=row["last_error"],
        in_topic=bool(row["in_topic"]),
        edits_card=bool(row["edits_card"]),
        reply_to=row["reply_to_message_id"],
        album=row["album_id"],
        parts_done=row["parts_done"],
        first_result=None if row["first_result"] is None else json.loads(row["first_result"]),
    )


def _later(seconds: float) -> str:
    return to_iso(datetime.now(UTC) + timedelta(seconds=seconds))


async def enqueue(db: Conn, item: Outgoing) -> int | None:
    """Write an outbox row; None when a row with the same key exists already."""
    now = utcnow()
    created = await db.insert(
        """
        INSERT INTO outbox (idempotency_key, purpose, method, params, chat_id, ticket_id,
                            message_id, priority, not_before, created_at, updated_at,
                            in_topic, edits_card, reply_to_message_id, album_id)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (idempotency_key) DO NOTHING
        """,
        (
            item.key,
            item.purpose.value,
            item.method,
            json.dumps(item.params, ensure_ascii=False),
            item.chat_id,
            item.ticket_id,
            item.message_id,
            item.priority,
            _later(item.delay) if item.delay else now,
            now,
            now,
            item.in_topic,
            item.edits_card,
            item.reply_to,
            item.album,
        ),
    )
    if created is not None:
        db.outbox_changed(item.chat_id)
    return created


async def hold_back(db: Conn, key: str, seconds: float) -> None:
    """Push a pending row's first attempt later (an album still growing)."""
    await db.execute(
        "UPDATE outbox SET not_before = ?, updated_at = ? WHERE idempotency_key = ?"
        " AND state = 'pending' AND attempts = 0",
        (_later(seconds), utcnow(), key),
    )


async def unsent_chats(db: Conn) -> list[int]:
    """Every chat with rows still to send."""
    rows = await db.fetchall(
        "SELECT DISTINCT chat_id FROM outbox WHERE state IN ('pending', 'sending')"
    )
    return [int(row[0]) for row in rows]


async def heads(db: Conn, chat_ids: list[int] | None = None) -> list[OutboxItem]:
    """The next row of each chat (of `chat_ids`, or of all): by priority, then as written."""
    where = "state IN ('pending', 'sending')"
    params: tuple[int, ...] = ()
    if chat_ids is not None:
        where += f" AND chat_id IN ({', '.join('?' * len(chat_ids))})"
        params = tuple(chat_ids)
    rows = await db.fetchall(
        f"""
        SELECT * FROM (
            SELECT *, ROW_NUMBER() OVER (PARTITION BY chat_id ORDER BY priority, id) AS place
            FROM outbox WHERE {where}
        ) WHERE place = 1
        ORDER BY priority, id
        """,
        params,
    )
    return [_item(row) for row in rows]


async def lane_head(
    db: Conn, chat_id: int, after: int | None, *, urgent: bool
) -> OutboxItem | None:
    """The next row of the first ticket after ticket `after` in a group (None: from the
    start, where rows of no ticket stand), among urgent rows (below PRIORITY_CARD) or
    the others. A ticket's rows come by priority, then as written."""
    band = "priority < ?" if urgent else "priority >= ?"
    if after is None:
        row = await db.fetchone(
            f"SELECT * FROM outbox WHERE chat_id = ? AND state IN ('pending', 'sending')"
            f" AND ticket_id IS NULL AND {band} ORDER BY priority, id LIMIT 1",
            (chat_id, PRIORITY_CARD),
        )
        if row is not None:
            return _item(row)
        after = -1
    row = await db.fetchone(
        f"SELECT * FROM outbox WHERE chat_id = ? AND state IN ('pending', 'sending')"
        f" AND ticket_id > ? AND {band} ORDER BY ticket_id, priority, id LIMIT 1",
        (chat_id, after, PRIORITY_CARD),
    )
    return None if row is None else _item(row)


async def supersede(db: Conn, ticket_id: int, purpose: Purpose) -> int:
    """Drop unsent rows of `purpose` for a ticket that a newer one replaces (card edits)."""
    return await db.execute_count(
        # The state IN (...) term lets SQLite use the partial index on unsent rows.
        "DELETE FROM outbox WHERE ticket_id = ? AND purpose = ?"
        " AND state IN ('pending', 'sending') AND state = 'pending' AND attempts = 0",
        (ticket_id, purpose.value),
    )


async def requeue(db: Conn, item_id: int) -> None:
    """Give a dead row a fresh start."""
    row = await db.fetchone(
        "UPDATE outbox SET state = 'pending', attempts = 0, not_before = ?, updated_at = ?"
        " WHERE id = ? RETURNING chat_id",
        (utcnow(), utcnow(), item_id),
    )
    if row is not None:
        db.outbox_changed(int(row[0]))


async def record_attempt(db: Conn, item_id: int, error: str) -> None:
    """Note a failed attempt that will be retried in place."""
    await db.execute(
        "UPDATE outbox SET attempts = attempts + 1, last_error = ?, updated_at = ? WHERE id = ?",
        (safe_text(error), utcnow(), item_id),
    )


async def move_chat(db: Conn, old_chat_id: int, new_chat_id: int) -> None:
    """Point unsent rows at a group's new id after it was upgraded."""
    await db.execute(
        "UPDATE outbox SET chat_id = ? WHERE chat_id = ? AND state IN ('pending', 'sending')",
        (new_chat_id, old_chat_id),
    )
    db.outbox_changed(new_chat_id)


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
        (_later(seconds), safe_text(error), utcnow(), item_id),
    )


async def mark_dead(db: Conn, item_id: int, error: str) -> None:
    await db.execute(
        "UPDATE outbox SET state = 'dead', last_error = ?, updated_at = ? WHERE id = ?",
        (safe_text(error), utcnow(), item_id),
    )


async def resume_interrupted(db: Conn) -> int:
    """Rows left 'sending' by a stopped process go back to pending; return how many."""
    return await db.execute_count(
        "UPDATE outbox SET state = 'pending', updated_at = ?"
        " WHERE state IN ('pending', 'sending') AND state = 'sending'",  # the partial index
        (utcnow(),),
    )


async def depth(db: Conn) -> int:
    """How many rows still wait to be sent."""
    return int(
        await db.fetchval("SELECT COUNT(*) FROM outbox WHERE state IN ('pending', 'sending')")
    )


async def has_unsent(db: Conn, ticket_id: int, purpose: Purpose) -> bool:
    """Whether a ticket still has a row of `purpose` waiting to go out."""
    found = await db.fetchval(
        "SELECT 1 FROM outbox WHERE ticket_id = ? AND purpose = ?"
        " AND state IN ('pending', 'sending') LIMIT 1",
        (ticket_id, purpose.value),
    )
    return found is not None


async def record_progress(db: Conn, item_id: int, parts_done: int, first_result: Any) -> None:
    """Remember the parts of a split message already sent, so a retry sends the rest."""
    await db.execute(
        "UPDATE outbox SET parts_done = ?, first_result = ?, updated_at = ? WHERE id = ?",
        (parts_done, json.dumps(first_result, ensure_ascii=False, default=str), utcnow(), item_id),
    )


async def replace_params(db: Conn, item_id: int, params: dict[str, Any]) -> None:
    """Change what a row will send (e.g. the plain-text fallback of bad markup)."""
    await db.execute(
        "UPDATE outbox SET params = ?, updated_at = ? WHERE id = ?",
        (json.dumps(params, ensure_ascii=False), utcnow(), item_id),
    )
