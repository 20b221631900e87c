"""The database file itself: where it may be, who may read it, and that it is the right one.

- Before anything opens storage.path, `prepare()` checks it (not a directory, readable
  and writable, its folder usable), creates it with mode 0600 if it is missing, and
  takes the group's and others' permissions away from an existing file and its `-wal`
  and `-shm`. Every problem is one `DatabaseFileError` sentence naming the path.
- A database that existed must never silently become a new, empty one (a wrong
  storage.path, a lost volume, a file deleted by hand): the first open gives the
  database a random id, kept in its header (`PRAGMA user_version`) and in a marker
  file beside it (`<db>.id`). When the marker is there but the database is not, or holds another id,
  TopicDesk stops and says so; `--new-database` is how an operator starts over (or
  accepts the database found).
- `file_id()` is what `Database.file_is_gone()` compares against, to notice a database
  removed or replaced while TopicDesk runs.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import stat
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.stdlib.get_logger(__name__)

NEW_DATABASE_FLAG = "--new-database"
PRIVATE = 0o600


class DatabaseFileError(Exception):
    """The database file cannot be used; one sentence naming the path and what to do."""


def marker_path(path: Path) -> Path:
    """The marker file beside the database that says a database was here."""
    return path.with_name(f"{path.name}.id")


def companions(path: Path) -> tuple[Path, Path]:
    """SQLite's `-wal` and `-shm` files of the database at `path`."""
    return path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-shm")


def file_id(path: Path) -> tuple[int, int]:
    """The device and inode of the file at `path`."""
    found = os.stat(path)
    return found.st_dev, found.st_ino


def _missing_message(path: Path, marker: Path) -> str:
    return (
        f"the database {path} (storage.path) is missing, but {marker} shows that one was "
        f"there: restore it from your backup, or start over with an empty database with "
        f"`topicdesk run {NEW_DATABASE_FLAG}`"
    )


def _mismatch_message(path: Path, marker: Path, found: str | None, expected: str) -> str:
    what = f"its id is {found}" if found else "it has no id"
    return (
        f"the database {path} (storage.path) is not the one {marker} belongs to ({what}, "
        f"the marker says {expected}): put the right database back, or accept this one "
        f"with `topicdesk run {NEW_DATABASE_FLAG}`"
    )


def _read_only_message(path: Path) -> str:
    return (
        f"the database {path} (storage.path) is read-only for the user TopicDesk runs as: "
        "make it writable by that user (chown, chmod 600)"
    )


def prepare(path: Path, *, new_database: bool = False) -> bool:
    """Make storage.path ready to open; return whether it was created now.

    Raises DatabaseFileError when it cannot be used, or when its marker says a database
    was there that is gone (unless `new_database`).
    """
    marker = marker_path(path)
    try:
        found = os.stat(path)
    except FileNotFoundError:
        found = None
    except OSError as exc:
        raise DatabaseFileError(
            f"storage.path {path} cannot be used ({exc.strerror or exc}): check the path"
        ) from None
    if found is not None:
        if stat.S_ISDIR(found.st_mode):
            raise DatabaseFileError(
                f"storage.path {path} is a directory: name the database file in it, "
                f"such as {path / 'topicdesk.db'}"
            )
        if not stat.S_ISREG(found.st_mode):
            raise DatabaseFileError(
                f"storage.path {path} is not a regular file: name the database file"
            )
        tighten(path)
        if not os.access(path, os.R_OK | os.W_OK):
            raise DatabaseFileError(_read_only_message(path))
        for companion in companions(path):
            # Left by a command run as another user (root, say): SQLite could not use it.
            if companion.exists() and not os.access(companion, os.R_OK | os.W_OK):
                raise DatabaseFileError(
                    f"{companion}, part of the database {path} (storage.path), is read-only "
                    "for the user TopicDesk runs as (was topicdesk run as another user?): "
                    "make it writable by that user (chown, chmod 600)"
                )
        _check_folder(path)
        return False
    if marker.exists() and not new_database:
        raise DatabaseFileError(_missing_message(path, marker))
    _create(path)
    return True


def _check_folder(path: Path) -> None:
    """SQLite creates the -wal and -shm files beside the database: the folder must allow it."""
    if all(companion.exists() for companion in companions(path)):
        return
    folder = path.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DatabaseFileError(
            f"the folder {folder} of the database {path} (storage.path) is not writable: "
            f"SQLite keeps {path.name}-wal and {path.name}-shm beside the database; make "
            "the folder writable for the user TopicDesk runs as"
        )


def _create(path: Path) -> None:
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise DatabaseFileError(
            f"storage.path {path}: cannot create the folder {folder} "
            f"({exc.strerror or exc}): check the path"
        ) from None
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, PRIVATE)
    except FileExistsError:
        return  # another process made it meanwhile
    except OSError as exc:
        raise DatabaseFileError(
            f"storage.path {path}: cannot create the database there "
            f"({exc.strerror or exc}): check the path and its folder's permissions"
        ) from None
    os.close(fd)
    log.debug("database file created", path=str(path))


def tighten(path: Path) -> list[Path]:
    """Take the group's and others' permissions away from the database, -wal and -shm.

    The owner's own bits stay as they are (a read-only file stays read-only). Returns
    the files changed; each change is logged.
    """
    changed = []
    for file in (path, *companions(path)):
        try:
            mode = stat.S_IMODE(os.stat(file).st_mode)
        except FileNotFoundError:
            continue
        if not mode & 0o077:
            continue
        try:
            os.chmod(file, mode & ~0o077)
        except OSError as exc:
            log.warning(
                "the database file is readable by others and its mode cannot be changed",
                path=str(file),
                mode=f"{mode:04o}",
                error=exc.strerror or str(exc),
            )
            continue
        log.warning(
            "the database file was readable by others: its mode is now owner-only",
            path=str(file),
            was=f"{mode:04o}",
            now=f"{mode & ~0o077:04o}",
        )
        changed.append(file)
    return changed


def explain(path: Path, exc: BaseException) -> DatabaseFileError:
    """An SQLite or OS error met while opening the database, as one sentence."""
    text = str(exc)
    lowered = text.lower()
    if "readonly" in lowered or "read-only" in lowered:
        return DatabaseFileError(_read_only_message(path))
    if "not a database" in lowered:
        return DatabaseFileError(
            f"{path} (storage.path) is not a TopicDesk database, or it is damaged "
            f"({text}): check storage.path, or restore the backup"
        )
    if isinstance(exc, OSError):
        text = exc.strerror or text
    return DatabaseFileError(
        f"the database {path} (storage.path) cannot be opened ({text}): check the path, "
        "its permissions and the disk"
    )


def _read_marker(marker: Path) -> str | None:
    try:
        return marker.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "it is not text"
        raise DatabaseFileError(
            f"the marker {marker} beside the database cannot be read ({why}): make it "
            "readable, or delete it if the database beside it is the right one"
        ) from None


def _write_marker(marker: Path, database_id: str) -> None:
    partial = marker.with_name(f".{marker.name}.partial")
    try:
        fd = os.open(partial, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, PRIVATE)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(f"{database_id}\n")
        os.replace(partial, marker)
    except OSError as exc:
        raise DatabaseFileError(
            f"cannot write the marker {marker} beside the database "
            f"({exc.strerror or exc}): make the folder writable"
        ) from None


def _new_id() -> str:
    # user_version is a signed 32-bit integer; 0 means "no id yet".
    return str(secrets.randbelow(2**31 - 1) + 1)


def stored_id(conn: sqlite3.Connection) -> str | None:
    """The database's id (SQLite's user_version header field), or None if it has none."""
    value = int(conn.execute("PRAGMA user_version").fetchone()[0])
    return str(value) if value else None


def claim(conn: sqlite3.Connection, path: Path, *, new_database: bool = False) -> str:
    """Check (or give) the database's id against its marker file; return the id.

    The id is a random number in the database's header (`PRAGMA user_version`, which
    `topicdesk backup` copies along), so a restored backup is recognised as the same
    database. A database without an id gets one and the marker is written; a database
    whose marker is missing writes it again; a database whose id differs from the
    marker's is refused unless `new_database`. `conn` is in autocommit mode.
    """
    marker = marker_path(path)
    stored = stored_id(conn)
    expected = _read_marker(marker)
    if stored is not None and stored == expected:
        return stored
    if expected is not None and not new_database:
        raise DatabaseFileError(_mismatch_message(path, marker, stored, expected))
    if stored is None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have given it one meanwhile: keep that.
            stored = stored_id(conn) or _new_id()
            conn.execute(f"PRAGMA user_version = {int(stored)}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    _write_marker(marker, stored)
    if expected is None:
        log.debug("database id recorded beside it", path=str(path), marker=str(marker))
    else:
        log.warning(
            "accepted a database other than the one used before",
            path=str(path),
            marker=str(marker),
            previous_id=expected,
            database_id=stored,
        )
    return stored


@dataclass(frozen=True, slots=True)
class FileReport:
    """What `topicdesk check` says about the database file, without changing anything."""

    ok: bool
    detail: str
    warning: bool = False


def inspect(path: Path) -> FileReport:
    """The database file's state, for `topicdesk check`: read-only, it creates nothing.

    (An SQLite connection, even a read-only one, would leave -wal and -shm files behind;
    the id is read from the file's header instead.)
    """
    marker = marker_path(path)
    try:
        found = os.stat(path)
    except FileNotFoundError:
        if marker.exists():
            return FileReport(False, _missing_message(path, marker))
        return FileReport(True, f"{path} does not exist yet; `topicdesk run` creates it", True)
    except OSError as exc:
        return FileReport(False, f"storage.path {path} cannot be used ({exc.strerror or exc})")
    if stat.S_ISDIR(found.st_mode):
        return FileReport(False, f"storage.path {path} is a directory: name the database file")
    if not stat.S_ISREG(found.st_mode):
        return FileReport(False, f"storage.path {path} is not a regular file")
    if not os.access(path, os.R_OK | os.W_OK):
        return FileReport(False, _read_only_message(path))
    try:
        stored = _header_id(path)
        expected = _read_marker(marker)
    except DatabaseFileError as exc:
        return FileReport(False, str(exc))
    if expected is not None and stored != expected:
        return FileReport(False, _mismatch_message(path, marker, stored, expected))
    size = f"{found.st_size / 1024:,.0f} kB"
    mode = stat.S_IMODE(found.st_mode)
    if mode & 0o077:
        return FileReport(
            True,
            f"{path} ({size}) is readable by others (mode {mode:04o}); "
            "`topicdesk run` makes it owner-only",
            True,
        )
    return FileReport(True, f"{path} ({size})")


_SQLITE_MAGIC = b"SQLite format 3\x00"


def _header_id(path: Path) -> str | None:
    """The id in the database file's header (user_version, bytes 60-63), read directly."""
    try:
        with path.open("rb") as file:
            header = file.read(100)
    except OSError as exc:
        raise explain(path, exc) from None
    if not header:
        return None  # created, never written: SQLite takes it for an empty database
    if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
        raise explain(path, sqlite3.DatabaseError("file is not a database"))
    value = int.from_bytes(header[60:64], "big", signed=True)
    return str(value) if value else None
