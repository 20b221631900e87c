"""An admin backs up the database while the desk keeps writing to it."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
from pathlib import Path

import pytest

from bot.cli import EXIT_FAILED, EXIT_OK, main
from storage import messages, tickets
from storage.backup import BackupError, backup
from storage.db import Database, utcnow
from storage.migrations import discover, migrate
from storage.tickets import Answer

PARTS = 3  # every ticket is written with exactly this many messages, in one transaction


async def _write_tickets(path: Path, stop: asyncio.Event) -> int:
    db = await Database.open(path)
    written = 0
    try:
        while not stop.is_set():
            async with db.transaction() as tx:
                customer = 10_000 + written
                await tickets.save_customer(tx, customer, f"Customer {written}", None, None)
                ticket = await tickets.open_ticket(
                    tx,
                    customer,
                    "Billing",
                    [Answer("category", "Category", "Billing")],
                    -100,
                    utcnow(),
                )
                for n in range(PARTS):
                    await messages.add_message(
                        tx,
                        ticket_id=ticket.id,
                        direction="to_agents",
                        source_chat_id=customer,
                        source_message_id=n + 1,
                        sender_id=customer,
                        kind="text",
                        text="x" * 500,
                        media_group_id=None,
                        sent_at=utcnow(),
                    )
            written += 1
            await asyncio.sleep(0)
    finally:
        await db.close()
    return written


def _check_copy(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        counts = conn.execute(
            "SELECT t.id, COUNT(m.id) FROM tickets t LEFT JOIN messages m ON m.ticket_id = t.id"
            " GROUP BY t.id"
        ).fetchall()
        # No copy ever holds half a transaction.
        assert all(count == PARTS for _, count in counts)
        return len(counts)
    finally:
        conn.close()


async def test_backups_taken_while_writing_are_consistent(tmp_path: Path) -> None:
    live = tmp_path / "desk.db"
    migrate(live)
    stop = asyncio.Event()
    writer = asyncio.create_task(_write_tickets(live, stop))
    seen = []
    try:
        for n in range(5):
            await asyncio.sleep(0.05)
            report = await asyncio.to_thread(backup, live, tmp_path / f"copy-{n}.db")
            assert report.schema_version == discover()[-1].version
            seen.append(_check_copy(report.path))
            assert seen[-1] == report.tickets
            assert stat.S_IMODE(report.path.stat().st_mode) == 0o600
    finally:
        stop.set()
        written = await writer
    assert seen == sorted(seen)
    assert seen[-1] > 0
    assert written >= seen[-1]


def test_backup_refuses_to_overwrite_unless_forced(tmp_path: Path) -> None:
    live = tmp_path / "desk.db"
    migrate(live)
    target = tmp_path / "copy.db"
    backup(live, target)
    with pytest.raises(BackupError, match="exists already"):
        backup(live, target)
    assert backup(live, target, overwrite=True).path == target
    with pytest.raises(BackupError, match="no database here"):
        backup(tmp_path / "missing.db", tmp_path / "other.db")


@pytest.mark.usefixtures("operator_shell")
def test_the_backup_command_reports_what_it_copied(
    database: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate"]) == EXIT_OK
    capsys.readouterr()
    target = tmp_path / "nightly.db"
    assert main(["backup", str(target)]) == EXIT_OK
    assert f"{target}: " in capsys.readouterr().out
    assert main(["backup", str(target)]) == EXIT_FAILED
    assert "exists already" in capsys.readouterr().err
