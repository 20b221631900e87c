"""The ledger of processed updates: what makes a redelivered update harmless."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from storage.db import Conn, to_iso, utcnow


async def is_processed(db: Conn, update_id: int) -> bool:
    """Whether this update's effects have committed already."""
    return (
        await db.fetchval("SELECT 1 FROM processed_updates WHERE update_id = ?", (update_id,))
        is not None
    )


async def claim(db: Conn, update_id: int) -> bool:
    """Record an update as handled, in the transaction that carries its effects; False if
    it was recorded already (Telegram sent it again). record() corrects the outcome."""
    created = await db.insert(
        "INSERT INTO processed_updates (update_id, outcome, processed_at) VALUES (?, ?, ?)"
        " ON CONFLICT (update_id) DO NOTHING",
        (update_id, "handled", utcnow()),
    )
    return created is not None


async def record(db: Conn, update_id: int, outcome: str) -> None:
    """Record an update as processed, in the transaction that carries its effects."""
    await db.execute(
        "INSERT OR REPLACE INTO processed_updates (update_id, outcome, processed_at)"
        " VALUES (?, ?, ?)",
        (update_id, outcome, utcnow()),
    )


async def prune(db: Conn, older_than: timedelta = timedelta(hours=48)) -> int:
    """Forget updates older than Telegram could ever redeliver (it keeps them 24 h)."""
    cutoff = to_iso(datetime.now(UTC) - older_than)
    return await db.execute_count("DELETE FROM processed_updates WHERE processed_at < ?", (cutoff,))
