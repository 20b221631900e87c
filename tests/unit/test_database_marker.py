"""A database that existed is never silently replaced by a new, empty one.

The first migration gives the database a random id (in its header) and writes it to a
marker file beside it; later starts compare the two.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import stat
from contextlib import closing
from pathlib import Path

import pytest

from storage import files
from storage.backup import backup
from storage.db import Database
from storage.files import DatabaseFileError
from storage.migrations import migrate


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def wal_and_shm(path: Path) -> list[Path]:
    return [Path(f"{path}-wal"), Path(f"{path}-shm")]


def test_the_first_migration_gives_the_database_an_id_and_a_marker(tmp_path: Path) -> None:
    path = tmp_path / "desk.db"
    migrate(path)

    marker = files.marker_path(path)
    assert marker == tmp_path / "desk.db.id"
    with closing(sqlite3.connect(path)) as conn:
        stored = files.stored_id(conn)
    assert stored is not None
    assert marker.read_text().strip() == stored
    assert mode(marker) == 0o600
    assert migrate(path) == []  # the same database: nothing to say


def test_a_missing_database_with_its_marker_is_not_created_again(tmp_path: Path) -> None:
    path = tmp_path / "desk.db"
    migrate(path)
    path.unlink()

    with pytest.raises(DatabaseFileError) as raised:
        migrate(path)
    assert str(path) in str(raised.value)
    assert f"{path}.id" in str(raised.value)
    assert not path.exists()
    with pytest.raises(DatabaseFileError):
        asyncio.run(Database.open(path))
    assert not path.exists()

    migrate(path, new_database=True)
    assert path.exists()
    migrate(path)  # and from now on it is the database


def test_a_database_without_its_marker_gets_the_marker_back(tmp_path: Path) -> None:
    path = tmp_path / "desk.db"
    migrate(path)
    marker = files.marker_path(path)
    first = marker.read_text()
    marker.unlink()

    migrate(path)

    assert marker.read_text() == first


def test_a_restored_backup_is_the_same_database(tmp_path: Path) -> None:
    path = tmp_path / "desk.db"
    migrate(path)
    copy = tmp_path / "nightly.db"
    backup(path, copy)
    for file in (path, *wal_and_shm(path)):
        file.unlink(missing_ok=True)  # the disk died

    shutil.copy(copy, path)  # the README's restore

    migrate(path)  # accepted: the copy has the database's id


def test_a_database_that_is_not_the_one_before_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "desk.db"
    other = tmp_path / "elsewhere" / "desk.db"
    migrate(path)
    migrate(other)
    path.unlink()
    shutil.copy(other, path)

    with pytest.raises(DatabaseFileError, match=r"is not the one .* belongs to"):
        migrate(path)

    migrate(path, new_database=True)  # the operator accepts it
    migrate(path)


@pytest.mark.parametrize("where", ["directory", "under-a-file"])
def test_a_storage_path_that_cannot_be_a_file_is_one_sentence(tmp_path: Path, where: str) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    path = tmp_path if where == "directory" else a_file / "desk.db"

    with pytest.raises(DatabaseFileError) as raised:
        migrate(path)
    with pytest.raises(DatabaseFileError):
        asyncio.run(Database.open(path))

    assert str(path) in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_file_that_is_not_a_database_is_one_sentence(tmp_path: Path) -> None:
    path = tmp_path / "desk.db"
    path.write_bytes(b"this is a text file, not SQLite" * 100)

    with pytest.raises(DatabaseFileError, match="is not a TopicDesk database, or it is damaged"):
        migrate(path)
    with pytest.raises(DatabaseFileError, match="is not a TopicDesk database"):
        asyncio.run(Database.open(path))


def test_check_reads_the_database_file_without_creating_anything(tmp_path: Path) -> None:
    path = tmp_path / "desk.db"
    assert files.inspect(path).warning  # not there yet: `run` creates it
    migrate(path)
    listing = sorted(p.name for p in tmp_path.iterdir())

    report = files.inspect(path)

    assert report.ok
    assert not report.warning
    assert sorted(p.name for p in tmp_path.iterdir()) == listing  # no -wal, no -shm

    other = tmp_path / "elsewhere" / "desk.db"
    migrate(other)
    shutil.copy(other, path)
    report = files.inspect(path)
    assert not report.ok
    assert "is not the one" in report.detail

    path.unlink()
    report = files.inspect(path)
    assert not report.ok
    assert "is missing" in report.detail
