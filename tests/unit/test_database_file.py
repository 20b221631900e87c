"""The database file: private modes, and noticing it removed or replaced while running."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import structlog

from storage.db import Database
from storage.migrations import migrate


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def wal_and_shm(path: Path) -> list[Path]:
    return [Path(f"{path}-wal"), Path(f"{path}-shm")]


async def test_an_existing_world_readable_database_and_its_wal_become_owner_only(
    tmp_path: Path,
) -> None:
    path = tmp_path / "desk.db"
    migrate(path)
    # An old install, a restore with cp, a umask of 022: the file is 0644, and the -wal and
    # -shm files SQLite creates take the database file's mode.
    os.chmod(path, 0o644)
    assert not any(companion.exists() for companion in wal_and_shm(path))

    with structlog.testing.capture_logs() as logs:
        database = await Database.open(path)
    try:
        assert mode(path) == 0o600
        for companion in wal_and_shm(path):
            assert companion.exists()
            assert mode(companion) == 0o600, companion
    finally:
        await database.close()
    assert any(
        "now owner-only" in entry["event"] and entry["path"] == str(path) and entry["was"] == "0644"
        for entry in logs
    ), logs


async def test_an_existing_wal_and_shm_are_tightened_too(tmp_path: Path) -> None:
    path = tmp_path / "desk.db"
    migrate(path)
    holder = sqlite3.connect(path)  # keeps the -wal and -shm in place
    try:
        holder.execute("SELECT COUNT(*) FROM tickets").fetchone()
        for file in (path, *wal_and_shm(path)):
            os.chmod(file, 0o664)
        database = await Database.open(path)
        await database.close()
        assert [mode(file) for file in (path, *wal_and_shm(path))] == [0o600] * 3
    finally:
        holder.close()


async def test_file_is_gone_tells_a_removed_or_replaced_database(tmp_path: Path) -> None:
    path = tmp_path / "desk.db"
    migrate(path)
    database = await Database.open(path)
    try:
        assert database.file_is_gone() is None

        other = tmp_path / "other.db"
        migrate(other)
        saved = tmp_path / "saved.db"
        os.replace(path, saved)
        os.replace(other, path)  # same name, another file
        replaced = database.file_is_gone()
        assert replaced is not None
        assert str(path) in replaced
        assert "replaced" in replaced

        path.unlink()
        removed = database.file_is_gone()
        assert removed is not None
        assert str(path) in removed
        assert "removed" in removed

        os.replace(saved, path)  # the very file it opened, back in place
        assert database.file_is_gone() is None
    finally:
        await database.close()
