"""Forward-only schema migrations from numbered SQL files.

`migrations/NNNN_name.sql` files are applied in order, each in one transaction with
its row in the `schema_migrations` ledger. A database that records a version this
code does not know is refused: it was written by a newer TopicDesk.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from storage import files

MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TEXT NOT NULL
)
"""


class MigrationError(Exception):
    """The schema cannot be brought up to date; the message says why."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations_dir() -> Path:
    """Where the SQL files are: inside the installed package, or the checkout's folder."""
    packaged = resources.files("storage") / "migrations"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "migrations"


def discover(folder: Path | None = None) -> list[Migration]:
    """All migrations in `folder`, in order; gaps and duplicates are errors."""
    folder = folder or migrations_dir()
    found: list[Migration] = []
    for path in sorted(folder.glob("*.sql")):
        match = MIGRATION_FILE.match(path.name)
        if not match:
            raise MigrationError(f"{path}: name it NNNN_name.sql (four digits, lower case)")
        found.append(Migration(int(match[1]), match[2], path.read_text(encoding="utf-8")))
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise MigrationError(f"{folder}: migration {expected:04d} is missing or duplicated")
    if not found:
        raise MigrationError(f"{folder}: no migrations found; the installation is incomplete")
    return found


def current_version(conn: sqlite3.Connection) -> int:
    """The highest version recorded in the ledger, 0 for a new database."""
    conn.execute(LEDGER)
    row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    return int(row[0] or 0)


def migrate(
    path: Path, folder: Path | None = None, *, new_database: bool = False
) -> list[Migration]:
    """Bring the database at `path` up to date; return the migrations applied.

    The file is checked first (storage.files.prepare): a database whose marker says it
    existed is never re-created empty, unless `new_database`. After the migrations, the
    database's id is checked against (or written to) its marker. A file that cannot be
    used raises storage.files.DatabaseFileError.
    """
    known = discover(folder)
    files.prepare(path, new_database=new_database)
    try:
        conn = sqlite3.connect(path, isolation_level=None)
    except sqlite3.Error as exc:
        raise files.explain(path, exc) from None
    try:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA foreign_keys = ON")
            version = current_version(conn)
        except sqlite3.Error as exc:
            raise files.explain(path, exc) from None
        if version > known[-1].version:
            raise MigrationError(
                f"{path}: the database is at schema version {version}, newer than this "
                f"TopicDesk knows ({known[-1].version}); upgrade TopicDesk or restore a backup"
            )
        applied = []
        for migration in known[version:]:
            _apply(conn, migration, path)
            applied.append(migration)
        try:
            files.claim(conn, path, new_database=new_database)
        except sqlite3.Error as exc:
            raise files.explain(path, exc) from None
        return applied
    finally:
        conn.close()


# A migration that rebuilds a table others refer to (SQLite cannot alter a CHECK) says so
# on a line of its own; it then runs with foreign keys off, and every reference is
# checked before it commits (SQLite's documented way to change a table's definition).
FOREIGN_KEYS_OFF = "-- topicdesk: foreign_keys off"


def _apply(conn: sqlite3.Connection, migration: Migration, path: Path) -> None:
    # executescript runs the whole file; with BEGIN in front and COMMIT only once the
    # references are checked, the file and its ledger row are one transaction. Version
    # and name come from the file name's strict pattern, so formatting them is safe.
    keys_off = FOREIGN_KEYS_OFF in migration.sql.splitlines()
    script = (
        "BEGIN IMMEDIATE;\n"
        f"{migration.sql}\n;\n"
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES "
        f"({migration.version}, '{migration.name}', strftime('%Y-%m-%dT%H:%M:%f+00:00', 'now'));\n"
    )
    try:
        if keys_off:
            conn.execute("PRAGMA foreign_keys = OFF")  # a no-op inside a transaction
        conn.executescript(script)
        # Only a rebuild can break a reference (the other files run with the keys on, and
        # the check reads the whole database: seconds on a large desk).
        broken = conn.execute("PRAGMA foreign_key_check").fetchall() if keys_off else []
        if broken:
            table, rowid, parent = broken[0][:3]
            raise sqlite3.IntegrityError(
                f"{len(broken)} broken reference(s), e.g. {table} row {rowid} to {parent}"
            )
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise MigrationError(
            f"{path}: migration {migration.version:04d}_{migration.name} failed: {exc}"
        ) from None
    finally:
        if keys_off:
            conn.execute("PRAGMA foreign_keys = ON")
