"""What the housekeeper (gauges, alerts, reconciliation) and the health check ask of the store."""

from __future__ import annotations

import json
from dataclasses import dataclass

from storage import kv, outbox
from storage.db import Conn, utcnow
from storage.outbox import OutboxItem

LAST_CHECK_KEY = "health:last_check"
FLAGGED = "undelivered_flagged"  # ticket event: an undelivered reply was dealt with


@dataclass(frozen=True, slots=True)
class UndeliveredReply:
    """An agent's message that died on its way to the customer, not yet dealt with."""

    message_id: int
    ticket_id: int
    kind: str
    text: str | None
    outbox_id: int
    letter_id: int | None  # the latest dead letter of its outbox row


async def record_check(db: Conn) -> None:
    """A real write: proves the database takes writes (disk, locks, permissions)."""
    await kv.put(db, LAST_CHECK_KEY, utcnow())


async def count_open_tickets(db: Conn) -> int:
    return int(await db.fetchval("SELECT COUNT(*) FROM tickets WHERE status != 'closed'"))


async def outbox_outcomes(db: Conn, since: str) -> tuple[int, int]:
    """(all, dead) outbox rows written since `since`.

    Rows are numbered in the order written, so the window starts after the newest row
    older than `since`: SQLite walks back from the end and stops there instead of
    scanning the whole outbox (created_at has no index).
    """
    row = await db.fetchone(
        """
        SELECT COUNT(*) AS total, COALESCE(SUM(state = 'dead'), 0) AS dead FROM outbox
        WHERE id > COALESCE(
            (SELECT id FROM outbox WHERE created_at < ? ORDER BY id DESC LIMIT 1), 0)
        """,
        (since,),
    )
    assert row is not None
    return int(row["total"]), int(row["dead"])


async def sending_since(db: Conn, before: str) -> list[OutboxItem]:
    """Rows marked 'sending' whose last change is older than `before`, in order."""
    # `state IN ('pending', 'sending')` is the WHERE of the outbox's partial indexes of
    # unsent rows: with it SQLite reads one of those instead of the whole outbox (it does
    # not infer it from `state = 'sending'`). Sorted here, since ORDER BY id would make
    # SQLite walk the whole table in id order instead.
    rows = await db.fetchall(
        "SELECT id FROM outbox WHERE state IN ('pending', 'sending') AND state = 'sending'"
        " AND updated_at < ?",
        (before,),
    )
    found = [await outbox.get_item(db, item_id) for item_id in sorted(row["id"] for row in rows)]
    return [item for item in found if item is not None]


async def resume(db: Conn, item_id: int) -> bool:
    """Put a row stuck in 'sending' back in its queue; False if it moved on meanwhile."""
    changed = await db.execute_count(
        "UPDATE outbox SET state = 'pending', updated_at = ? WHERE id = ? AND state = 'sending'",
        (utcnow(), item_id),
    )
    return changed > 0


async def undelivered_replies(db: Conn, since: str) -> list[UndeliveredReply]:
    """Agents' messages to customers of open tickets whose outbox row died since `since`,
    not yet flagged. An album is one finding, under its first part."""
    rows = await db.fetchall(
        f"""
        SELECT MIN(m.id) AS message_id, m.ticket_id, m.kind, m.text, o.id AS outbox_id,
               (SELECT MAX(d.id) FROM dead_letters d WHERE d.outbox_id = o.id) AS letter_id
        FROM outbox o
        JOIN messages m ON (
               (o.purpose = 'relay' AND m.id = o.message_id)
            OR (o.purpose = 'album'
                AND m.source_chat_id = json_extract(o.params, '$.from_chat_id')
                AND m.media_group_id = o.album_id))
        JOIN tickets t ON t.id = m.ticket_id AND t.status != 'closed'
        WHERE o.id IN (
                SELECT outbox_id FROM dead_letters
                WHERE created_at >= ? AND purpose IN ('relay', 'album'))
          AND o.state = 'dead'
          AND m.direction = 'to_customer'
          AND m.target_message_id IS NULL
          AND NOT EXISTS (
              SELECT 1 FROM ticket_events e
              WHERE e.ticket_id = m.ticket_id AND e.kind = '{FLAGGED}'
                AND json_extract(e.detail, '$.outbox_id') = o.id)
        GROUP BY o.id
        ORDER BY message_id
        """,
        (since,),
    )
    return [
        UndeliveredReply(
            message_id=row["message_id"],
            ticket_id=row["ticket_id"],
            kind=row["kind"],
            text=row["text"],
            outbox_id=row["outbox_id"],
            letter_id=row["letter_id"],
        )
        for row in rows
    ]


async def flag_undelivered(db: Conn, reply: UndeliveredReply, told_by: str) -> None:
    """Remember that an undelivered reply has been dealt with, and how."""
    await db.execute(
        "INSERT INTO ticket_events (ticket_id, kind, actor_id, detail, created_at)"
        " VALUES (?, ?, NULL, ?, ?)",
        (
            reply.ticket_id,
            FLAGGED,
            json.dumps(
                {"message_id": reply.message_id, "outbox_id": reply.outbox_id, "told_by": told_by}
            ),
            utcnow(),
        ),
    )


async def state_of(db: Conn, key: str) -> str | None:
    """The state of the outbox row with this idempotency key, None if there is none."""
    value = await db.fetchval("SELECT state FROM outbox WHERE idempotency_key = ?", (key,))
    return None if value is None else str(value)


async def open_tickets_with_topic(db: Conn) -> list[int]:
    """Ids of the open tickets that have a forum topic, oldest first."""
    rows = await db.fetchall(
        "SELECT id FROM tickets WHERE status != 'closed' AND thread_id IS NOT NULL ORDER BY id"
    )
    return [int(row["id"]) for row in rows]


async def waiting_in_chat(db: Conn, chat_id: int) -> int:
    """How many rows wait to be sent to one chat."""
    return int(
        await db.fetchval(
            "SELECT COUNT(*) FROM outbox WHERE chat_id = ? AND state IN ('pending', 'sending')",
            (chat_id,),
        )
    )
