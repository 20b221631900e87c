"""Customers' ratings of their resolved or closed tickets (CSAT): one per ticket."""

from __future__ import annotations

from dataclasses import dataclass

from storage.db import Conn, Row, utcnow


@dataclass(frozen=True, slots=True)
class Rating:
    ticket_id: int
    customer_id: int
    score: int  # 1 (poor) to 5 (excellent)
    comment: str | None
    created_at: str
    updated_at: str


def _rating(row: Row) -> Rating:
    return Rating(
        ticket_id=row["ticket_id"],
        customer_id=row["customer_id"],
        score=row["score"],
        comment=row["comment"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def get(db: Conn, ticket_id: int) -> Rating | None:
    row = await db.fetchone("SELECT * FROM ratings WHERE ticket_id = ?", (ticket_id,))
    return None if row is None else _rating(row)


async def rate(db: Conn, ticket_id: int, customer_id: int, score: int) -> bool:
    """Store a rating; a different score replaces the ticket's rating, comment included.
    False (nothing written) when the ticket has that score already."""
    now = utcnow()
    changed = await db.execute_count(
        """
        INSERT INTO ratings (ticket_id, customer_id, score, comment, created_at, updated_at)
        VALUES (?, ?, ?, NULL, ?, ?)
        ON CONFLICT (ticket_id) DO UPDATE SET
            customer_id = excluded.customer_id, score = excluded.score, comment = NULL,
            created_at = excluded.created_at, updated_at = excluded.updated_at
        WHERE score IS NOT excluded.score
        """,
        (ticket_id, customer_id, score, now, now),
    )
    return changed > 0


async def set_comment(db: Conn, ticket_id: int, comment: str) -> bool:
    """Add the customer's comment to their rating; False if the ticket has no rating."""
    changed = await db.execute_count(
        "UPDATE ratings SET comment = ?, updated_at = ? WHERE ticket_id = ?",
        (comment, utcnow(), ticket_id),
    )
    return changed > 0
