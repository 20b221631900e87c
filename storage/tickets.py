"""Customers, tickets and their history."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum

from storage.db import Conn, Row, utcnow


class Status(StrEnum):
    """Where a ticket stands; matches the CHECK of `tickets.status` (migration 0006)."""

    OPEN = "open"  # the desk owes the customer an answer
    PENDING = "pending"  # waiting on the customer: an agent's reply reached them
    RESOLVED = "resolved"  # solved; the customer may still write (and so reopen it)
    CLOSED = "closed"  # done: the topic is closed, a new message starts a new ticket


class Priority(StrEnum):
    """A ticket's priority; matches the CHECK of `tickets.priority`."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


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
    status: Status
    priority: Priority
    assignee_id: int | None
    subject: str
    topic_name: str | None
    answers: tuple[Answer, ...]
    group_chat_id: int
    thread_id: int | None
    card_message_id: int | None
    previous_ticket_id: int | None
    created_at: str  # Telegram's date on the customer's first message
    first_response_at: str | None
    resolved_at: str | None
    closed_at: str | None

    @property
    def is_open(self) -> bool:
        """Active: not closed (open, pending or resolved). The topic is open, messages
        are relayed both ways."""
        return self.status is not Status.CLOSED


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
        status=Status(row["status"]),
        priority=Priority(row["priority"]),
        assignee_id=row["assignee_id"],
        subject=row["subject"],
        topic_name=row["topic_name"],
        answers=tuple(Answer(*item) for item in json.loads(row["answers"])),
        group_chat_id=row["group_chat_id"],
        thread_id=row["thread_id"],
        card_message_id=row["card_message_id"],
        previous_ticket_id=row["previous_ticket_id"],
        created_at=row["created_at"],
        first_response_at=row["first_response_at"],
        resolved_at=row["resolved_at"],
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
    *,
    previous_ticket_id: int | None = None,
) -> Ticket:
    """Store a new open ticket; its number is the next in sequence."""
    now = utcnow()
    ticket_id = await db.insert(
        """
        INSERT INTO tickets (customer_id, subject, answers, group_chat_id, previous_ticket_id,
                             created_at, updated_at)
        VALUES (?, ?, ?, ?, ?, ?, ?)
        """,
        (
            customer_id,
            subject,
            json.dumps([[a.question_id, a.label, a.value] for a in answers], ensure_ascii=False),
            group_chat_id,
            previous_ticket_id,
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
    """The customer's active (not closed) ticket, the newest if they have several."""
    row = await db.fetchone(
        "SELECT * FROM tickets WHERE customer_id = ? AND status != 'closed'"
        " ORDER BY id DESC LIMIT 1",
        (customer_id,),
    )
    return None if row is None else _ticket(row)


async def tickets_of_customer(db: Conn, customer_id: int, limit: int = 10) -> list[Ticket]:
    """The customer's latest tickets, newest first."""
    rows = await db.fetchall(
        "SELECT * FROM tickets WHERE customer_id = ? ORDER BY id DESC LIMIT ?",
        (customer_id, limit),
    )
    return [_ticket(row) for row in rows]


async def last_closed_ticket_of(db: Conn, customer_id: int) -> Ticket | None:
    """The customer's most recently closed ticket, if any."""
    row = await db.fetchone(
        "SELECT * FROM tickets WHERE customer_id = ? AND status = 'closed'"
        " ORDER BY id DESC LIMIT 1",
        (customer_id,),
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


async def set_topic_name(db: Conn, ticket_id: int, name: str) -> bool:
    """Remember the name asked of Telegram for the topic; False if it was that already."""
    changed = await db.execute_count(
        "UPDATE tickets SET topic_name = ? WHERE id = ? AND topic_name IS NOT ?",
        (name, ticket_id, name),
    )
    return changed > 0


async def set_card(db: Conn, ticket_id: int, message_id: int) -> None:
    await db.execute(
        "UPDATE tickets SET card_message_id = ?, updated_at = ? WHERE id = ?",
        (message_id, utcnow(), ticket_id),
    )


async def set_status(db: Conn, ticket_id: int, status: Status, actor_id: int | None) -> int | None:
    """Change a ticket's status and record who did it, from what, to what; return the
    event's id. Leaving `resolved` or `closed` clears the time it was reached. None (and
    nothing recorded) when the ticket already had that status."""
    status = Status(status)
    now = utcnow()
    before = await db.fetchval("SELECT status FROM tickets WHERE id = ?", (ticket_id,))
    if before is None or before == status.value:
        return None
    await db.execute(
        """
        UPDATE tickets SET status = :status, updated_at = :now,
            resolved_at = CASE
                WHEN :status IN ('resolved', 'closed') THEN COALESCE(resolved_at, :now)
                ELSE NULL END,
            closed_at = CASE WHEN :status = 'closed' THEN :now ELSE NULL END
        WHERE id = :id
        """,
        {"status": status.value, "now": now, "id": ticket_id},
    )
    return await add_event(
        db, ticket_id, status.value, actor_id, {"from": before, "to": status.value}
    )


async def set_priority(
    db: Conn, ticket_id: int, priority: Priority, actor_id: int | None
) -> int | None:
    """Change a ticket's priority; the event's id, or None if it had it already."""
    priority = Priority(priority)
    before = await db.fetchval("SELECT priority FROM tickets WHERE id = ?", (ticket_id,))
    if before is None or before == priority.value:
        return None
    await db.execute(
        "UPDATE tickets SET priority = ?, updated_at = ? WHERE id = ?",
        (priority.value, utcnow(), ticket_id),
    )
    return await add_event(
        db, ticket_id, "priority", actor_id, {"from": before, "to": priority.value}
    )


async def set_assignee(
    db: Conn, ticket_id: int, assignee_id: int | None, actor_id: int | None
) -> int | None:
    """Assign a ticket to an agent (None: to nobody); the event's id, or None if nothing
    changed."""
    row = await db.fetchone("SELECT assignee_id FROM tickets WHERE id = ?", (ticket_id,))
    if row is None or row["assignee_id"] == assignee_id:
        return None
    await db.execute(
        "UPDATE tickets SET assignee_id = ?, updated_at = ? WHERE id = ?",
        (assignee_id, utcnow(), ticket_id),
    )
    kind = "assigned" if assignee_id is not None else "unassigned"
    detail = {"from": row["assignee_id"], "to": assignee_id}
    return await add_event(db, ticket_id, kind, actor_id, detail)


async def record_first_response(db: Conn, ticket_id: int, at: str) -> bool:
    """The first agent reply reached the customer at `at`; False if one did before."""
    changed = await db.execute_count(
        "UPDATE tickets SET first_response_at = ? WHERE id = ? AND first_response_at IS NULL",
        (at, ticket_id),
    )
    return changed > 0


async def unanswered(db: Conn, limit: int) -> list[Ticket]:
    """Active tickets nobody has answered yet, the longest waiting first (/queue)."""
    rows = await db.fetchall(
        "SELECT * FROM tickets WHERE status != 'closed' AND first_response_at IS NULL"
        " ORDER BY created_at, id LIMIT ?",
        (limit,),
    )
    return [_ticket(row) for row in rows]


async def count_unanswered(db: Conn) -> int:
    """How many active tickets nobody has answered yet."""
    return int(
        await db.fetchval(
            "SELECT COUNT(*) FROM tickets WHERE status != 'closed' AND first_response_at IS NULL"
        )
    )


async def assigned_to(db: Conn, agent_id: int) -> list[Ticket]:
    """The active tickets assigned to an agent, oldest first (/mine, handing them on)."""
    rows = await db.fetchall(
        "SELECT * FROM tickets WHERE assignee_id = ? AND status != 'closed' ORDER BY id",
        (agent_id,),
    )
    return [_ticket(row) for row in rows]


@dataclass(frozen=True, slots=True)
class Event:
    """One change in a ticket's history."""

    kind: str
    actor_id: int | None
    detail: dict[str, object]
    created_at: str


async def history(db: Conn, ticket_id: int, limit: int = 50) -> list[Event]:
    """A ticket's latest changes, oldest first."""
    rows = await db.fetchall(
        "SELECT * FROM (SELECT * FROM ticket_events WHERE ticket_id = ? ORDER BY id DESC LIMIT ?)"
        " ORDER BY id",
        (ticket_id, limit),
    )
    return [
        Event(
            kind=row["kind"],
            actor_id=row["actor_id"],
            detail=json.loads(row["detail"]) if row["detail"] else {},
            created_at=row["created_at"],
        )
        for row in rows
    ]


async def add_event(
    db: Conn,
    ticket_id: int,
    kind: str,
    actor_id: int | None,
    detail: dict[str, object] | None = None,
) -> int:
    """Record a change in a ticket's history; return its id."""
    event_id = await db.insert(
        "INSERT INTO ticket_events (ticket_id, kind, actor_id, detail, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (ticket_id, kind, actor_id, json.dumps(detail) if detail else None, utcnow()),
    )
    assert event_id is not None
    return event_id


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
