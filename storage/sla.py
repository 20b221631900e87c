"""The escalation policy's columns of a ticket (migration 0007): the stage each clock has
fired, and when its next warning or breach is due.

The rules (which event, when) are bot.services.sla's; the scheduler and the reschedule
helper are bot.services.escalation's. Here: reading a ticket's facts, storing a stage and
the next due instant, and finding what is due through the partial index
`tickets_sla_due`.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.db import Conn, Row

# Each clock's stage column; the clock's names are bot.services.sla.Clock's values.
STAGE_COLUMNS = {
    "first_response": "sla_response_stage",
    "resolution": "sla_resolution_stage",
}


@dataclass(frozen=True, slots=True)
class SlaFacts:
    """What the policy needs of a ticket, as stored (ISO 8601 UTC times)."""

    ticket_id: int
    created_at: str  # the receipt: Telegram's date on the customer's first message
    priority: str
    first_response_at: str | None
    resolved_at: str | None
    response_stage: str | None
    resolution_stage: str | None
    due_at: str | None


def _facts(row: Row) -> SlaFacts:
    return SlaFacts(
        ticket_id=row["id"],
        created_at=row["created_at"],
        priority=row["priority"],
        first_response_at=row["first_response_at"],
        resolved_at=row["resolved_at"],
        response_stage=row["sla_response_stage"],
        resolution_stage=row["sla_resolution_stage"],
        due_at=row["sla_due_at"],
    )


async def facts(db: Conn, ticket_id: int) -> SlaFacts | None:
    """A ticket's facts for the policy; None if there is no such ticket."""
    row = await db.fetchone(
        "SELECT id, created_at, priority, first_response_at, resolved_at,"
        " sla_response_stage, sla_resolution_stage, sla_due_at FROM tickets WHERE id = ?",
        (ticket_id,),
    )
    return None if row is None else _facts(row)


async def set_due(db: Conn, ticket_id: int, due_at: str | None) -> bool:
    """Store when the ticket's next event is due (None: nothing more can fire); False
    if it was that already."""
    changed = await db.execute_count(
        "UPDATE tickets SET sla_due_at = ? WHERE id = ? AND sla_due_at IS NOT ?",
        (due_at, ticket_id, due_at),
    )
    return changed > 0


async def recheck(db: Conn, ticket_id: int) -> None:
    """Make the ticket due at once, whatever the clock says (its receipt time, which has
    passed): the scheduler recomputes its schedule at its next pass."""
    await db.execute("UPDATE tickets SET sla_due_at = created_at WHERE id = ?", (ticket_id,))


async def set_stage(db: Conn, ticket_id: int, clock: str, stage: str) -> bool:
    """Store the furthest stage ('warning', 'breach') fired on a clock; False (nothing
    stored) when that stage or a further one was stored already, so nothing fires twice."""
    column = STAGE_COLUMNS[clock]
    earlier = f"{column} IS NULL" if stage == "warning" else f"{column} IS NOT 'breach'"
    changed = await db.execute_count(
        # `column` is one of STAGE_COLUMNS, never a value from outside.
        f"UPDATE tickets SET {column} = ? WHERE id = ? AND {earlier}",
        (stage, ticket_id),
    )
    return changed > 0


async def due(db: Conn, now: str, limit: int) -> list[int]:
    """The tickets with an event due by `now`, the longest due first (tickets_sla_due)."""
    rows = await db.fetchall(
        "SELECT id FROM tickets WHERE sla_due_at IS NOT NULL AND sla_due_at <= ?"
        " ORDER BY sla_due_at LIMIT ?",
        (now, limit),
    )
    return [int(row[0]) for row in rows]


async def with_clocks(db: Conn) -> list[int]:
    """The tickets whose schedule may need recomputing when the daemon starts (the
    config may have changed): the active ones, and any with an event still due."""
    rows = await db.fetchall(
        "SELECT id FROM tickets WHERE status != 'closed'"
        " UNION SELECT id FROM tickets WHERE sla_due_at IS NOT NULL"
    )
    return sorted(int(row[0]) for row in rows)


async def clear_all(db: Conn) -> int:
    """Nothing can fire (the policy is off): forget every due instant; how many."""
    return await db.execute_count(
        "UPDATE tickets SET sla_due_at = NULL WHERE sla_due_at IS NOT NULL"
    )
