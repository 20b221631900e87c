"""Agents as the desk has met them: name, duty, and their share of the tickets."""

from __future__ import annotations

from dataclasses import dataclass

from storage.db import Conn, Row, utcnow


@dataclass(frozen=True, slots=True)
class Agent:
    user_id: int
    full_name: str
    username: str | None
    on_duty: bool
    last_assigned_at: str | None

    @property
    def mention(self) -> str:
        """How to name the agent in a message: @username, else the name."""
        return f"@{self.username}" if self.username else self.full_name


def _agent(row: Row) -> Agent:
    return Agent(
        user_id=row["user_id"],
        full_name=row["full_name"],
        username=row["username"],
        on_duty=bool(row["on_duty"]),
        last_assigned_at=row["last_assigned_at"],
    )


async def remember(db: Conn, user_id: int, full_name: str, username: str | None) -> Agent:
    """Insert or refresh an agent's profile as Telegram last showed it (on duty if new)."""
    now = utcnow()
    row = await db.fetchone(
        """
        INSERT INTO agents (user_id, full_name, username, created_at, updated_at)
        VALUES (?, ?, ?, ?, ?)
        ON CONFLICT (user_id) DO UPDATE SET
            full_name = excluded.full_name, username = excluded.username,
            updated_at = excluded.updated_at
        WHERE full_name IS NOT excluded.full_name OR username IS NOT excluded.username
        RETURNING *
        """,
        (user_id, full_name, username, now, now),
    )
    if row is None:  # unchanged: the upsert's WHERE skipped the write
        found = await get(db, user_id)
        assert found is not None
        return found
    return _agent(row)


async def get(db: Conn, user_id: int) -> Agent | None:
    row = await db.fetchone("SELECT * FROM agents WHERE user_id = ?", (user_id,))
    return None if row is None else _agent(row)


async def by_username(db: Conn, username: str) -> Agent | None:
    row = await db.fetchone(
        "SELECT * FROM agents WHERE username = ? COLLATE NOCASE", (username.lstrip("@"),)
    )
    return None if row is None else _agent(row)


async def all_agents(db: Conn) -> list[Agent]:
    rows = await db.fetchall("SELECT * FROM agents ORDER BY full_name COLLATE NOCASE, user_id")
    return [_agent(row) for row in rows]


async def on_duty(db: Conn) -> list[Agent]:
    """The agents on duty now, by user id (the table holds the desk's people, a few rows)."""
    rows = await db.fetchall("SELECT * FROM agents WHERE on_duty = 1 ORDER BY user_id")
    return [_agent(row) for row in rows]


async def set_duty(db: Conn, user_id: int, on_duty: bool) -> bool:
    """Put an agent on or off duty; False if they already were."""
    changed = await db.execute_count(
        "UPDATE agents SET on_duty = ?, updated_at = ? WHERE user_id = ? AND on_duty != ?",
        (int(on_duty), utcnow(), user_id, int(on_duty)),
    )
    return changed > 0


async def mark_assigned(db: Conn, user_id: int) -> None:
    """Note when an agent was last given a ticket (round-robin goes to the longest wait)."""
    await db.execute(
        "UPDATE agents SET last_assigned_at = ? WHERE user_id = ?", (utcnow(), user_id)
    )


async def active_counts(db: Conn) -> dict[int, int]:
    """How many active (not closed) tickets each agent holds."""
    rows = await db.fetchall(
        "SELECT assignee_id, COUNT(*) AS n FROM tickets"
        " WHERE status != 'closed' AND assignee_id IS NOT NULL GROUP BY assignee_id"
    )
    return {int(row["assignee_id"]): int(row["n"]) for row in rows}
