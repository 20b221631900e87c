"""`topicdesk export` and `topicdesk forget`: an admin's commands on the desk's data.

Both work offline, on the database (migrated first, as `topicdesk dlq`: bot.cli runs
them through its `_offline`), safely while the daemon runs, and never import aiogram:
the work is storage.export's and storage.forget's, each on a connection of its own, run
in a worker thread. The `/export` and `/forget` admin commands call the same functions.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from bot.logs import redactor
from storage.db import Database
from storage.export import DateRange, ExportError, export
from storage.forget import ActiveTicketError, ForgetError, forget, look_up

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2  # a mistake on the command line: a date, a user id


def _say(text: str) -> None:
    sys.stdout.write(f"{text}\n")


def _fail(message: str, code: int = EXIT_FAILED) -> int:
    """One sentence on stderr, as bot.cli says it."""
    sys.stderr.write(f"topicdesk: {redactor.scrub(message)}\n")
    return code


def add_commands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """The `export` and `forget` commands, on bot.cli's parser."""
    exporting = commands.add_parser(
        "export",
        parents=[common],
        help="write the tickets as CSV and their transcripts as JSON Lines",
    )
    exporting.add_argument(
        "--from",
        dest="start",
        metavar="YYYY-MM-DD",
        help="only tickets received on this day (UTC) or later",
    )
    exporting.add_argument(
        "--to", dest="end", metavar="YYYY-MM-DD", help="only tickets received before this day"
    )
    exporting.add_argument(
        "--out",
        type=Path,
        default=Path(),
        metavar="DIR",
        help="the folder for tickets.csv and transcripts.jsonl (default: this one)",
    )
    exporting.add_argument("--force", action="store_true", help="replace files written before")
    forgetting = commands.add_parser(
        "forget",
        parents=[common],
        help="delete a customer's personal data and words; keep the ticket figures",
    )
    forgetting.add_argument("user_id", type=int, metavar="USER_ID", help="their Telegram user id")
    forgetting.add_argument("--yes", action="store_true", help="do not ask for confirmation")


async def export_command(database: Database, args: argparse.Namespace) -> int:
    """`topicdesk export`: tickets.csv and transcripts.jsonl into --out."""
    try:
        span = DateRange.parse(args.start, args.end)
    except ExportError as exc:
        return _fail(str(exc), EXIT_USAGE)
    folder = args.out.resolve()
    try:
        report = await asyncio.to_thread(export, database.path, folder, span, overwrite=args.force)
    except ExportError as exc:
        return _fail(str(exc))
    counts = report.counts
    _say(f"wrote {report.tickets_path}: {counts.tickets} ticket(s)")
    _say(f"wrote {report.transcripts_path}: {counts.messages} message(s), {counts.notes} note(s)")
    _say(f"({span.describe()}; the files hold customers' personal data: keep them safe)")
    return EXIT_OK


def _confirmed(description: str) -> bool:
    _say(description)
    try:
        answer = input(
            "Forget this customer? Their name, username, messages, answers, notes and "
            "comments are deleted for good; ticket figures are kept. [y/N] "
        )
    except EOFError:
        return False
    return answer.strip().lower() in {"y", "yes"}


async def forget_command(database: Database, args: argparse.Namespace) -> int:
    """`topicdesk forget USER_ID`: asks first on a terminal, unless --yes."""
    try:
        stored = await asyncio.to_thread(look_up, database.path, args.user_id)
    except ForgetError as exc:
        return _fail(str(exc), EXIT_USAGE)
    if stored.active:
        return _fail(str(ActiveTicketError(stored.user_id, stored.active)))
    if stored.found and not args.yes:
        if not sys.stdin.isatty():
            return _fail(
                "forgetting cannot be undone: run it on a terminal to confirm, or pass --yes",
                EXIT_USAGE,
            )
        if not _confirmed(stored.describe()):
            _say("nothing was changed")
            return EXIT_FAILED
    try:
        report = await asyncio.to_thread(forget, database.path, args.user_id)
    except ForgetError as exc:
        return _fail(str(exc))
    if not report.found:
        return _fail(report.describe())
    _say(report.describe())
    return EXIT_OK
