"""An admin at the terminal: `topicdesk export` and `topicdesk forget`, offline."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli import main
from bot.data_commands import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from storage import messages, tickets
from storage.db import Database, utcnow
from storage.forget import FORGOTTEN
from storage.migrations import migrate
from storage.tickets import Answer, Status
from tests.unit.conftest import GROUP, TOKEN

REPO = Path(__file__).resolve().parents[2]
ALICE, BOB = 5512345678, 6612345678

pytestmark = pytest.mark.usefixtures("operator_shell")


async def _desk(path: Path, *, alice_closed: bool = True) -> None:
    """Alice's ticket (closed) and Bob's (open), a message each."""
    migrate(path)
    database = await Database.open(path)
    try:
        async with database.transaction() as db:
            for user, name, text in ((ALICE, "Alice Smith", "Hi, it's Alice"),
                                     (BOB, "Bob Jones", "Bob, here")):  # fmt: skip
                await tickets.save_customer(db, user, name, None, "en")
                ticket = await tickets.open_ticket(
                    db, user, "Billing", [Answer("category", "Category", "Billing")], GROUP,
                    "2026-05-01T10:00:00.000000+00:00",
                )  # fmt: skip
                await messages.add_message(
                    db, ticket_id=ticket.id, direction="to_agents", source_chat_id=user,
                    source_message_id=1, sender_id=user, kind="text", text=text,
                    media_group_id=None, sent_at=utcnow(),
                )  # fmt: skip
                if user == ALICE and alice_closed:
                    await tickets.set_status(db, ticket.id, Status.CLOSED, None)
    finally:
        await database.close()


class Terminal(io.StringIO):
    """Standard input typed at a terminal."""

    def isatty(self) -> bool:
        return True


def test_export_writes_both_files_and_says_where(
    database: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_desk(database))
    capsys.readouterr()  # what setting the desk up logged
    out_dir = tmp_path / "out"

    code = main(["export", "--from", "2026-05-01", "--to", "2026-05-02", "--out", str(out_dir)])

    out, err = capsys.readouterr()
    assert (code, err) == (EXIT_OK, "")
    assert out == (
        f"wrote {out_dir / 'tickets.csv'}: 2 ticket(s)\n"
        f"wrote {out_dir / 'transcripts.jsonl'}: 2 message(s), 0 note(s)\n"
        "(tickets received on 2026-05-01 (UTC); the files hold customers' personal data: "
        "keep them safe)\n"
    )
    with (out_dir / "tickets.csv").open(encoding="utf-8", newline="") as table:
        assert [row["customer_name"] for row in csv.DictReader(table)] == [
            "Alice Smith",
            "Bob Jones",
        ]
    lines = (out_dir / "transcripts.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["text"] for line in lines] == ["Hi, it's Alice", "Bob, here"]


def test_export_writes_into_the_current_folder_and_keeps_what_is_there(
    database: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_desk(database))
    capsys.readouterr()  # what setting the desk up logged
    assert main(["export"]) == EXIT_OK  # operator_shell's current folder is tmp_path
    assert (tmp_path / "tickets.csv").is_file()
    capsys.readouterr()

    assert main(["export", "--to", "2026-05-01"]) == EXIT_FAILED
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"topicdesk: {tmp_path / 'tickets.csv'} exists already; choose another folder with "
        "--out, or pass --force\n"
    )
    assert main(["export", "--to", "2026-05-01", "--force"]) == EXIT_OK
    assert "0 ticket(s)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("dates", "message"),
    [
        (["--from", "2026-02-30"], "--from '2026-02-30' is not a date: write it as YYYY-MM-DD"),
        (["--to", "yesterday"], "--to 'yesterday' is not a date: write it as YYYY-MM-DD"),
        (
            ["--from", "2026-06-01", "--to", "2026-05-01"],
            "the range's start (2026-06-01) is not before its end (2026-05-01), which is the "
            "first day left out",
        ),
    ],
)
def test_a_bad_date_is_one_sentence_and_exit_2(
    database: Path, dates: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_desk(database))
    capsys.readouterr()  # what setting the desk up logged

    code = main(["export", *dates])

    out, err = capsys.readouterr()
    assert (code, out, err) == (EXIT_USAGE, "", f"topicdesk: {message}\n")


def test_forget_with_yes_prints_the_report(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_desk(database))
    capsys.readouterr()  # what setting the desk up logged

    code = main(["forget", str(ALICE), "--yes"])

    out, err = capsys.readouterr()
    assert (code, err) == (EXIT_OK, "")
    assert out.startswith(f"Forgot customer {ALICE}. Removed:\n")
    assert "  message texts: 1\n" in out
    assert f"filed under forgotten customer #1 (id {FORGOTTEN + 1})." in out
    assert b"Alice" not in database.read_bytes()

    assert main(["forget", str(ALICE), "--yes"]) == EXIT_FAILED
    assert capsys.readouterr().err == f"topicdesk: nothing is stored about user {ALICE}\n"


def test_forget_asks_at_a_terminal_and_no_is_no(
    database: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    asyncio.run(_desk(database))
    capsys.readouterr()  # what setting the desk up logged
    monkeypatch.setattr(sys, "stdin", Terminal("n\n"))

    assert main(["forget", str(ALICE)]) == EXIT_FAILED

    out = capsys.readouterr().out
    assert out.startswith(
        f"customer {ALICE}: Alice Smith; 1 ticket(s) (#1 closed), 1 message(s)\n"
        "Forget this customer? "
    )
    assert out.endswith("nothing was changed\n")
    assert b"Alice" in database.read_bytes()

    monkeypatch.setattr(sys, "stdin", Terminal("yes\n"))
    assert main(["forget", str(ALICE)]) == EXIT_OK
    assert "Forgot customer" in capsys.readouterr().out


def test_forget_without_a_terminal_needs_yes(
    database: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    asyncio.run(_desk(database))
    capsys.readouterr()  # what setting the desk up logged
    monkeypatch.setattr(sys, "stdin", io.StringIO("yes\n"))

    assert main(["forget", str(ALICE)]) == EXIT_USAGE

    assert capsys.readouterr().err == (
        "topicdesk: forgetting cannot be undone: run it on a terminal to confirm, or pass --yes\n"
    )


def test_forget_refuses_an_active_ticket_and_a_wrong_id(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_desk(database, alice_closed=False))
    capsys.readouterr()

    assert main(["forget", str(ALICE), "--yes"]) == EXIT_FAILED
    assert capsys.readouterr().err == (
        f"topicdesk: customer {ALICE} has 1 active ticket (#1 (open)): close it first, then "
        "forget the customer\n"
    )
    assert main(["forget", "0", "--yes"]) == EXIT_USAGE
    assert capsys.readouterr().err == (
        "topicdesk: 0 is not a customer's user id (a user id is above 0)\n"
    )


def test_no_database_is_said_before_anything(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export"]) == EXIT_FAILED
    assert main(["forget", str(ALICE), "--yes"]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert err.count(f"topicdesk: {database}: no database here yet (check storage.path)\n") == 2


@pytest.mark.parametrize(
    "command",
    [["export", "--from", "2026-05-01", "--out", "exported"], ["forget", str(ALICE), "--yes"]],
)
def test_the_commands_never_load_aiogram(
    database: Path, tmp_path: Path, command: list[str]
) -> None:
    asyncio.run(_desk(database))
    env = {name: value for name, value in os.environ.items() if not name.startswith("TOPICDESK_")}
    env |= {
        "PYTHONPATH": str(REPO),
        "TOPICDESK_TELEGRAM__TOKEN": TOKEN,
        "TOPICDESK_SUPPORT__GROUP_ID": str(GROUP),
        "TOPICDESK_STORAGE__PATH": str(database),
    }
    script = (
        "import sys, bot.cli\n"
        f"code = bot.cli.main({command!r})\n"
        "assert 'aiogram' not in sys.modules, 'aiogram was imported'\n"
        "sys.exit(code)\n"
    )

    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(("wrote ", "Forgot customer "))
