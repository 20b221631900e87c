"""Small facts kept between runs."""

from __future__ import annotations

from storage.db import Conn


async def get(db: Conn, key: str) -> str | None:
    value = await db.fetchval("SELECT value FROM kv WHERE key = ?", (key,))
    return None if value is None else str(value)


async def put(db: Conn, key: str, value: str) -> None:
    await db.execute(
        "INSERT INTO kv (key, value) VALUES (?, ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )
