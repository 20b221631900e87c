"""Upgrading the schema: every migration in turn, once, and never a database from the future."""

from __future__ import annotations

import re
import shutil
import sqlite3
import stat
from contextlib import closing
from pathlib import Path

import pytest

from storage.migrations import MigrationError, discover, migrate, migrations_dir

REPO_MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def ledger(path: Path) -> list[tuple[int, str]]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(
            "SELECT version, name FROM schema_migrations ORDER BY version"
        ).fetchall()


def tables(path: Path) -> set[str]:
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {name for (name,) in rows}


def copy_of_the_real_migrations(folder: Path, up_to: int | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for migration_file in sorted(REPO_MIGRATIONS.glob("*.sql"))[:up_to]:
        shutil.copy(migration_file, folder / migration_file.name)
    return folder


def test_the_migrations_folder_of_the_checkout_is_found() -> None:
    assert migrations_dir() == REPO_MIGRATIONS
    assert (migrations_dir() / "0001_initial.sql").is_file()


def test_the_shipped_migrations_are_numbered_from_one_without_gaps() -> None:
    known = discover()

    assert known[0].version == 1
    assert known[0].name == "initial"
    assert [m.version for m in known] == list(range(1, len(known) + 1))
    assert all(m.sql.strip() for m in known)


def test_every_migration_applies_in_turn_to_an_empty_database(tmp_path: Path) -> None:
    database = tmp_path / "desk.db"
    known = discover()

    for upto in range(1, len(known) + 1):
        folder = copy_of_the_real_migrations(tmp_path / f"upto_{upto:04d}", up_to=upto)
        applied = migrate(database, folder)
        assert [m.version for m in applied] == [upto]

    assert ledger(database) == [(m.version, m.name) for m in known]


def test_a_new_database_gets_the_whole_schema_in_a_private_file(tmp_path: Path) -> None:
    database = tmp_path / "desk.db"

    applied = migrate(database)

    assert [m.version for m in applied] == [m.version for m in discover()]
    assert stat.S_IMODE(database.stat().st_mode) == 0o600
    assert {
        "schema_migrations",
        "customers",
        "tickets",
        "ticket_events",
        "messages",
        "outbox",
        "processed_updates",
        "fsm_state",
        "kv",
    } <= tables(database)


def test_migrating_an_up_to_date_database_applies_nothing(tmp_path: Path) -> None:
    database = tmp_path / "desk.db"
    migrate(database)
    before = ledger(database)

    assert migrate(database) == []
    assert ledger(database) == before


def test_a_database_from_a_newer_topicdesk_is_refused(tmp_path: Path) -> None:
    database = tmp_path / "desk.db"
    migrate(database)
    newest = discover()[-1].version
    with closing(sqlite3.connect(database)) as conn, conn:
        conn.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
            (newest + 98, "from_the_future", "2030-01-01T00:00:00+00:00"),
        )

    expected = f"schema version {newest + 98}, newer than this TopicDesk knows ({newest})"
    with pytest.raises(MigrationError, match=re.escape(expected)):
        migrate(database)


def test_a_failing_migration_rolls_back_and_leaves_no_ledger_row(tmp_path: Path) -> None:
    folder = copy_of_the_real_migrations(tmp_path / "migrations")
    good = discover(folder)
    broken = f"{len(good) + 1:04d}_broken.sql"
    (folder / broken).write_text(
        "CREATE TABLE half_done (id INTEGER PRIMARY KEY);\nINSERT INTO no_such_table VALUES (1);\n",
        encoding="utf-8",
    )
    database = tmp_path / "desk.db"

    with pytest.raises(MigrationError, match=r"broken failed: no such table: no_such_table"):
        migrate(database, folder)

    assert ledger(database) == [(m.version, m.name) for m in good]
    assert "half_done" not in tables(database)


@pytest.mark.parametrize(
    "bad_name", ["1_initial.sql", "0002-second.sql", "0002_Second.sql", "00002_second.sql"]
)
def test_a_badly_named_migration_file_is_an_error(tmp_path: Path, bad_name: str) -> None:
    folder = copy_of_the_real_migrations(tmp_path / "migrations")
    (folder / bad_name).write_text("SELECT 1;", encoding="utf-8")

    with pytest.raises(MigrationError, match=re.escape(bad_name)):
        discover(folder)


def test_a_gap_in_the_numbers_is_an_error(tmp_path: Path) -> None:
    folder = copy_of_the_real_migrations(tmp_path / "migrations")
    after_the_gap = len(discover(folder)) + 2
    (folder / f"{after_the_gap:04d}_later.sql").write_text("SELECT 1;", encoding="utf-8")

    with pytest.raises(MigrationError, match=f"migration {after_the_gap - 1:04d} is missing"):
        discover(folder)


def test_a_duplicated_number_is_an_error(tmp_path: Path) -> None:
    folder = copy_of_the_real_migrations(tmp_path / "migrations")
    (folder / "0001_again.sql").write_text("SELECT 1;", encoding="utf-8")

    with pytest.raises(MigrationError, match="missing or duplicated"):
        discover(folder)


def test_an_empty_migrations_folder_is_an_incomplete_installation(tmp_path: Path) -> None:
    with pytest.raises(MigrationError, match="no migrations found"):
        discover(tmp_path)


def test_the_desk_migration_keeps_every_ticket_its_number_and_its_references(
    tmp_path: Path,
) -> None:
    """0006 rebuilds `tickets` (a CHECK cannot be altered) with foreign keys off: rows,
    references and the numbering survive it, and the new CHECKs hold."""
    database = tmp_path / "desk.db"
    migrate(database, copy_of_the_real_migrations(tmp_path / "v5", up_to=5))
    now = "2026-01-01T10:00:00.000000+00:00"
    with closing(sqlite3.connect(database, isolation_level=None)) as conn:
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(
            "INSERT INTO customers (user_id, full_name, created_at, updated_at)"
            " VALUES (1, 'Alice', ?, ?)",
            (now, now),
        )
        for number, status in ((1, "closed"), (2, "closed"), (3, "open")):
            conn.execute(
                "INSERT INTO tickets (id, customer_id, status, subject, answers, group_chat_id,"
                " created_at, updated_at, closed_at) VALUES (?, 1, ?, 's', '[]', -100, ?, ?, ?)",
                (number, status, now, now, now if status == "closed" else None),
            )
        conn.execute(
            "INSERT INTO messages (ticket_id, direction, source_chat_id, source_message_id,"
            " kind, sent_at, delivered_at) VALUES (3, 'to_customer', -100, 5, 'text', ?, ?)",
            (now, "2026-01-01T10:05:00.000000+00:00"),
        )
        conn.execute("DELETE FROM tickets WHERE id = 2")  # a gap: numbers are never reused
        conn.execute("UPDATE sqlite_sequence SET seq = 7 WHERE name = 'tickets'")

    applied = migrate(database)

    assert applied[0].name == "desk"  # and the later ones after it
    with closing(sqlite3.connect(database, isolation_level=None)) as conn:
        conn.execute("PRAGMA foreign_keys = ON")
        rows = conn.execute(
            "SELECT id, status, priority, first_response_at, resolved_at FROM tickets ORDER BY id"
        ).fetchall()
        assert rows == [
            (1, "closed", "normal", None, now),
            (3, "open", "normal", "2026-01-01T10:05:00.000000+00:00", None),
        ]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert conn.execute("PRAGMA foreign_keys").fetchone() == (1,)
        new_id = conn.execute(
            "INSERT INTO tickets (customer_id, status, subject, answers, group_chat_id,"
            " created_at, updated_at) VALUES (1, 'closed', 's', '[]', -100, ?, ?) RETURNING id",
            (now, now),
        ).fetchone()
        assert new_id == (8,)  # counting on from 7
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("UPDATE tickets SET status = 'archived' WHERE id = 1")
        with pytest.raises(sqlite3.IntegrityError):  # the references are enforced again
            conn.execute(
                "INSERT INTO notes (ticket_id, author_id, chat_id, message_id, text, created_at)"
                " VALUES (99, 1, -100, 1, 'x', ?)",
                (now,),
            )
