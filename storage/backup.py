"""Online backups with SQLite's backup API: safe while the daemon writes."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from storage.db import create_private_file
from storage.migrations import current_version


class BackupError(Exception):
    """The backup could not be made; the message says why."""


@dataclass(frozen=True, slots=True)
class BackupReport:
    path: Path
    size: int
    schema_version: int
    tickets: int


def backup(source: Path, target: Path, *, overwrite: bool = False) -> BackupReport:
    """Copy the live database at `source` to `target` as one consistent snapshot."""
    if not source.exists():
        raise BackupError(f"{source}: no database here (check storage.path)")
    if target.exists() and not overwrite:
        raise BackupError(f"{target} exists already; choose another name or pass --force")
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    create_private_file(partial)
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(partial)
    try:
        # One step (pages=-1): a single read transaction, so the copy is one moment of
        # the database; in WAL mode the daemon keeps writing meanwhile.
        src.backup(dst, pages=-1)
        dst.execute("PRAGMA journal_mode = DELETE")
        problems = dst.execute("PRAGMA integrity_check").fetchone()[0]
        if problems != "ok":
            raise BackupError(f"{target}: the copy failed its integrity check: {problems}")
        version = current_version(dst)
        tickets = dst.execute("SELECT COUNT(*) FROM tickets").fetchone()[0]
    except sqlite3.Error as exc:
        raise BackupError(f"{source}: backup failed: {exc}") from None
    finally:
        dst.close()
        src.close()
    os.replace(partial, target)
    return BackupReport(target, target.stat().st_size, version, int(tickets))
