"""Customers, tickets and their history."""

from __future__ import annotations

import json
from dataclasses import dataclass

from storage.db import Conn, Row, utcnow


@dataclass(frozen=True, slots=True)
class Customer:
    user_id: int
    full_name: str
    username: str | None
    language_code: str | None
    unreachable: str | None


@dataclass(frozen=True, slots=True)
class Answer:
    question_id: str
    label: str
    value: str


@dataclass(frozen=True, slots=True)
class Ticket:
    id: int
    customer_id: int
    status: str
    subject: str
    answers: tuple[Answer, ...]
    group_chat_id: int
    thread_id: int | None
    card_message_id: int | None
    created_at: str
    closed_at: str | None

    @property
    def is_open(self) -> bool:
        return self.status == "open"


def _customer(row: Row) -> Customer:
    return Customer(
        user_id=row["user_id"],
        full_name=row["full_name"],
        username=row["username"],
        language_code=row["language_code"],
        unreachable=row["unreachable"],
    )


def _ticket(row: Row) -> Ticket:
    return Ticket(
        id=row["id"],
        customer_id=row["customer_id"],
        status=row["status"],
        subject=row["subject"],
        answers=tuple(Answer(*item) for item in json.loads(row["answers"])),
        group_chat_id=row["group_chat_id"],
        thread_id=row["thread_id"],
        card_message_id=row["card_message_id"],
        created_at=row["created_at"],
        closed_at=row["closed_at"],
    )


async def save_customer(
    db: Conn, user_id: int, full_name: str, username: str | None, language_code: str | None
) -> Customer:
    """Insert or refresh a customer's profile as Telegram last showed it."""
    now = utcnow()
    row = await db.fetchone(
        """
        INSERT INTO customers (user_id, full_name, username, language_code, created_at, updated_at)
        VALUES (?, ?, ?, ?, ?, ?)
        ON CONFLICT (user_id) DO UPDATE SET
            full_name = excluded.full_name,
            username = excluded.username,
            language_code = excluded.language_code,
            updated_at = excluded.updated_at
        RETURNING *
        """,
        (user_id, full_name, username, language_code, now, now),
    )
    assert row is not None
    return _customer(row)


async def get_customer(db: Conn, user_id: int) -> Customer | None:
    row = await db.fetchone("SELECT * FROM customers WHERE user_id = ?", (user_id,))
    return None if row is None else _customer(row)


async def set_unreachable(db: Conn, user_id: int, reason: str | None) -> None:
    """Mark (or, with None, clear) a customer we cannot write to."""
    await db.execute(
        "UPDATE customers SET unreachable = ?, updated_at = ? WHERE user_id = ?",
        (reason, utcnow(), user_id),
    )


async def open_ticket(
    db: Conn,
    customer_id: int,
    subject: str,
    answers: list[Answer],
    group_chat_id: int,
    created_at: str,
) -> Ticket:
    """Store a new open ticket; its number is the next in sequence."""
    now = utcnow()
    ticket_id = await db.insert(
        """
        INSERT INTO tickets (customer_id, subject, answers, group_chat_id, created_at, updated_at)
        VALUES (?, ?, ?, ?, ?, ?)
        """,
        (
            customer_id,
            subject,
            json.dumps([[a.question_id, a.label, a.value] for a in answers], ensure_ascii=False),
            group_chat_id,
            created_at,
            now,
        ),
    )
    assert ticket_id is not None
    await add_event(db, ticket_id, "opened", customer_id)
    ticket = await get_ticket(db, ticket_id)
    assert ticket is not None
    return ticket


async def get_ticket(db: Conn, ticket_id: int) -> Ticket | None:
    row = await db.fetchone("SELECT * FROM tickets WHERE id = ?", (ticket_id,))
    return None if row is None else _ticket(row)


async def open_ticket_of(db: Conn, customer_id: int) -> Ticket | None:
    """The customer's open ticket, if they have one."""
    row = await db.fetchone(
        "SELECT * FROM tickets WHERE customer_id = ? AND status = 'open'", (customer_id,)
    )
    return None if row is None else _ticket(row)


async def ticket_by_topic(db: Conn, group_chat_id: int, thread_id: int) -> Ticket | None:
    """The ticket whose forum topic this is."""
    row = await db.fetchone(
        "SELECT * FROM tickets WHERE group_chat_id = ? AND thread_id = ?",
        (group_chat_id, thread_id),
    )
    return None if row is None else _ticket(row)


async def set_topic(db: Conn, ticket_id: int, group_chat_id: int, thread_id: int) -> None:
    await db.execute(
        "UPDATE tickets SET group_chat_id = ?, thread_id = ?, updated_at = ? WHERE id = ?",
        (group_chat_id, thread_id, utcnow(), ticket_id),
    )


async def set_card(db: Conn, ticket_id: int, message_id: int) -> None:
    await db.execute(
        "UPDATE tickets SET card_message_id = ?, updated_at = ? WHERE id = ?",
        (message_id, utcnow(), ticket_id),
    )


async def set_status(db: Conn, ticket_id: int, status: str, actor_id: int | None) -> None:
    """Change a ticket's status and record who did it."""
    now = utcnow()
    await db.execute(
        """
        UPDATE tickets SET status = ?, updated_at = ?,
            closed_at = CASE WHEN ? = 'closed' THEN ? ELSE NULL END
        WHERE id = ?
        """,
        (status, now, status, now, ticket_id),
    )
    await add_event(db, ticket_id, status, actor_id)


async def add_event(
    db: Conn,
    ticket_id: int,
    kind: str,
    actor_id: int | None,
    detail: dict[str, object] | None = None,
) -> None:
    await db.execute(
        "INSERT INTO ticket_events (ticket_id, kind, actor_id, detail, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (ticket_id, kind, actor_id, json.dumps(detail) if detail else None, utcnow()),
    )


async def move_group(db: Conn, old_chat_id: int, new_chat_id: int) -> int:
    """Re-home every ticket of a group that Telegram gave a new id."""
    return await db.execute_count(
        "UPDATE tickets SET group_chat_id = ?, updated_at = ? WHERE group_chat_id = ?",
        (new_chat_id, utcnow(), old_chat_id),
    )


async def clear_topic(db: Conn, ticket_id: int) -> None:
    """Forget a ticket's deleted topic (a new one is being created)."""
    await db.execute(
        "UPDATE tickets SET thread_id = NULL, card_message_id = NULL, updated_at = ? WHERE id = ?",
        (utcnow(), ticket_id),
    )


async def count_messages(db: Conn, ticket_id: int) -> int:
    return int(await db.fetchval("SELECT COUNT(*) FROM messages WHERE ticket_id = ?", (ticket_id,)))
