"""Quarantined updates: what could not be parsed or handled, kept raw, replayable."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from storage.db import Conn, Row, utcnow

Stage = Literal["parse", "kind", "handler"]


@dataclass(frozen=True, slots=True)
class Quarantined:
    update_id: int
    raw: dict[str, Any]
    stage: Stage
    error: str
    error_kind: str
    created_at: str
    replay_requested: str | None
    replayed_at: str | None
    replay_outcome: str | None


def _row(row: Row) -> Quarantined:
    return Quarantined(
        update_id=row["update_id"],
        raw=json.loads(row["raw"]),
        stage=row["stage"],
        error=row["error"],
        error_kind=row["error_kind"],
        created_at=row["created_at"],
        replay_requested=row["replay_requested"],
        replayed_at=row["replayed_at"],
        replay_outcome=row["replay_outcome"],
    )


async def put(
    db: Conn, update_id: int, raw: dict[str, Any], stage: Stage, error: str, error_kind: str
) -> None:
    """Keep an update that could not be handled (again: the latest error wins)."""
    await db.execute(
        """
        INSERT INTO quarantined_updates (update_id, raw, stage, error, error_kind, created_at)
        VALUES (?, ?, ?, ?, ?, ?)
        ON CONFLICT (update_id) DO UPDATE SET stage = excluded.stage, error = excluded.error,
            error_kind = excluded.error_kind
        """,
        (update_id, json.dumps(raw, ensure_ascii=False), stage, error, error_kind, utcnow()),
    )


async def list_all(db: Conn) -> list[Quarantined]:
    rows = await db.fetchall("SELECT * FROM quarantined_updates ORDER BY update_id")
    return [_row(row) for row in rows]


async def request_replay(db: Conn, update_ids: list[int] | None) -> int:
    """Ask the daemon to feed these updates (None: every one not yet handled) through the
    handlers again; return how many were asked for."""
    sql = "UPDATE quarantined_updates SET replay_requested = ?, replayed_at = NULL"
    if update_ids is None:
        return await db.execute_count(
            sql + " WHERE replay_outcome IS NULL OR replay_outcome = 'quarantined'", (utcnow(),)
        )
    marks = ", ".join("?" * len(update_ids))
    return await db.execute_count(sql + f" WHERE update_id IN ({marks})", (utcnow(), *update_ids))


async def due_replays(db: Conn, limit: int = 100) -> list[Quarantined]:
    rows = await db.fetchall(
        "SELECT * FROM quarantined_updates WHERE replay_requested IS NOT NULL"
        " ORDER BY update_id LIMIT ?",
        (limit,),
    )
    return [_row(row) for row in rows]


async def replayed(db: Conn, update_id: int, outcome: str) -> None:
    """Record how a replay went; the request is done either way."""
    await db.execute(
        "UPDATE quarantined_updates SET replay_requested = NULL, replayed_at = ?,"
        " replay_outcome = ? WHERE update_id = ?",
        (utcnow(), outcome, update_id),
    )


async def count_unresolved(db: Conn) -> int:
    return int(
        await db.fetchval(
            "SELECT COUNT(*) FROM quarantined_updates"
            " WHERE replay_outcome IS NULL OR replay_outcome = 'quarantined'"
        )
    )
