"""Canned responses: named Telegram-HTML texts agents send to customers with /canned.

They are seeded from the config (`[canned]`) and managed by admins. Who last touched a
row decides what a later seeding may do with it:

- a name the config has and the table lacks is added (source `config`);
- a row the config added and nobody edited since follows the config's text when it
  changes (the config owns it until an admin takes it over);
- a row an admin added or edited (source `admin`) is never overwritten from the config;
- a row an admin deleted keeps its name with `deleted_at`, so the config never brings
  it back; only `/canned_add` of the same name does;
- a name dropped from the config stays in the table (only an admin deletes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from storage.db import Conn, Row, utcnow

Source = Literal["config", "admin"]


@dataclass(frozen=True, slots=True)
class CannedResponse:
    name: str
    text: str  # Telegram HTML with {customer_name}, {ticket_id}, {agent_name}
    source: Source
    updated_by: int | None
    updated_at: str


@dataclass(frozen=True, slots=True)
class Seeding:
    """What seeding from the config did."""

    added: tuple[str, ...]
    refreshed: tuple[str, ...]  # config rows whose text followed a changed config
    kept: tuple[str, ...]  # names the config has but an admin edited or deleted


def _canned(row: Row) -> CannedResponse:
    return CannedResponse(
        name=row["name"],
        text=row["text"],
        source=row["source"],
        updated_by=row["updated_by"],
        updated_at=row["updated_at"],
    )


async def active(db: Conn) -> list[CannedResponse]:
    """Every canned response not deleted, by name."""
    rows = await db.fetchall(
        "SELECT * FROM canned_responses WHERE deleted_at IS NULL ORDER BY name"
    )
    return [_canned(row) for row in rows]


async def get(db: Conn, name: str) -> CannedResponse | None:
    """The canned response called `name`, unless it was deleted."""
    row = await db.fetchone(
        "SELECT * FROM canned_responses WHERE name = ? AND deleted_at IS NULL", (name,)
    )
    return None if row is None else _canned(row)


async def put(db: Conn, name: str, text: str, admin_id: int | None) -> bool:
    """Add or replace a canned response as an admin (bringing a deleted name back);
    True if the name was new or deleted, False if an existing text was replaced."""
    now = utcnow()
    existed = await get(db, name) is not None
    await db.execute(
        """
        INSERT INTO canned_responses (name, text, source, updated_by, created_at, updated_at)
        VALUES (?, ?, 'admin', ?, ?, ?)
        ON CONFLICT (name) DO UPDATE SET
            text = excluded.text, source = 'admin', updated_by = excluded.updated_by,
            updated_at = excluded.updated_at, deleted_at = NULL
        """,
        (name, text, admin_id, now, now),
    )
    return not existed


async def delete(db: Conn, name: str, admin_id: int | None) -> bool:
    """Delete a canned response (its name stays, so the config does not bring it back);
    False if there was none."""
    now = utcnow()
    changed = await db.execute_count(
        "UPDATE canned_responses SET deleted_at = ?, source = 'admin', updated_by = ?,"
        " updated_at = ? WHERE name = ? AND deleted_at IS NULL",
        (now, admin_id, now, name),
    )
    return changed > 0


async def seed(db: Conn, config: Mapping[str, str]) -> Seeding:
    """Bring the config's canned responses into the table (see the module's rules)."""
    added: list[str] = []
    refreshed: list[str] = []
    kept: list[str] = []
    now = utcnow()
    for name, text in config.items():
        row = await db.fetchone("SELECT * FROM canned_responses WHERE name = ?", (name,))
        if row is None:
            await db.execute(
                "INSERT INTO canned_responses (name, text, source, created_at, updated_at)"
                " VALUES (?, ?, 'config', ?, ?)",
                (name, text, now, now),
            )
            added.append(name)
        elif row["source"] != "config" or row["deleted_at"] is not None:
            kept.append(name)
        elif row["text"] != text:
            await db.execute(
                "UPDATE canned_responses SET text = ?, updated_at = ? WHERE name = ?",
                (text, now, name),
            )
            refreshed.append(name)
    return Seeding(tuple(added), tuple(refreshed), tuple(kept))
