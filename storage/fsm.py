"""aiogram FSM storage in TopicDesk's SQLite database.

A half-filled intake form survives a restart, and because writes join the update's
transaction (see storage.db), the form's state commits with the update that changed it.
This is the one module of `storage` that imports aiogram; offline commands never load it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiogram.fsm.state import State
from aiogram.fsm.storage.base import (
    BaseStorage,
    DefaultKeyBuilder,
    KeyBuilder,
    StateType,
    StorageKey,
)

from storage.db import Database, utcnow


class SQLiteStorage(BaseStorage):
    """FSM state and data as rows of `fsm_state`."""

    def __init__(self, db: Database, key_builder: KeyBuilder | None = None) -> None:
        self._db = db
        self._keys = key_builder or DefaultKeyBuilder(with_destiny=True)

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        value = state.state if isinstance(state, State) else state
        async with self._db.transaction() as db:
            await db.execute(
                """
                INSERT INTO fsm_state (key, state, updated_at) VALUES (?, ?, ?)
                ON CONFLICT (key) DO UPDATE SET state = excluded.state,
                                                updated_at = excluded.updated_at
                """,
                (self._keys.build(key), value, utcnow()),
            )
            await self._forget_if_empty(key)

    async def get_state(self, key: StorageKey) -> str | None:
        async with self._db.reader() as db:
            value = await db.fetchval(
                "SELECT state FROM fsm_state WHERE key = ?", (self._keys.build(key),)
            )
        return None if value is None else str(value)

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        async with self._db.transaction() as db:
            await db.execute(
                """
                INSERT INTO fsm_state (key, data, updated_at) VALUES (?, ?, ?)
                ON CONFLICT (key) DO UPDATE SET data = excluded.data,
                                                updated_at = excluded.updated_at
                """,
                (self._keys.build(key), json.dumps(dict(data), ensure_ascii=False), utcnow()),
            )
            await self._forget_if_empty(key)

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        async with self._db.reader() as db:
            value = await db.fetchval(
                "SELECT data FROM fsm_state WHERE key = ?", (self._keys.build(key),)
            )
        if value is None:
            return {}
        data: dict[str, Any] = json.loads(value)
        return data

    async def _forget_if_empty(self, key: StorageKey) -> None:
        # A finished form leaves no row behind.
        async with self._db.transaction() as db:
            await db.execute(
                "DELETE FROM fsm_state WHERE key = ? AND state IS NULL AND data = '{}'",
                (self._keys.build(key),),
            )

    async def close(self) -> None:
        """The database belongs to the daemon, which closes it."""
