"""The `topicdesk` command: run, migrate, check, dlq, updates, backup, export, forget, demo,
playground.

Heavy imports (aiogram) happen inside the commands that talk to Telegram, so
`topicdesk migrate` stays light.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bot.config import ConfigError, Settings, load_settings
from bot.data_commands import add_commands, export_command, forget_command
from bot.logs import configure_logging, get_logger, redactor
from storage import deadletters, quarantine, tickets
from storage.backup import BackupError, backup
from storage.db import Database
from storage.files import NEW_DATABASE_FLAG, DatabaseFileError, marker_path
from storage.files import inspect as inspect_file
from storage.migrations import MigrationError, migrate
from storage.redact import safe_text

if TYPE_CHECKING:
    from bot.preflight import Check

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2


def _config_option(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument(
        "--config",
        metavar="PATH",
        default=default,
        help="TOML config file (default: $TOPICDESK_CONFIG, else ./config.toml)",
    )


def _parser() -> argparse.ArgumentParser:
    # --config is accepted before or after the command; the command's copy must not
    # overwrite a value given before it, hence SUPPRESS there.
    common = argparse.ArgumentParser(add_help=False)
    _config_option(common, argparse.SUPPRESS)
    parser = argparse.ArgumentParser(
        prog="topicdesk",
        description="A helpdesk inside Telegram: every ticket a forum topic.",
    )
    _config_option(parser, None)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", parents=[common], help="serve customers and agents")
    migrate_ = commands.add_parser(
        "migrate", parents=[common], help="bring the database schema up to date"
    )
    for command in (run, migrate_):
        command.add_argument(
            NEW_DATABASE_FLAG,
            dest="new_database",
            action="store_true",
            help="start over with an empty database although one existed at storage.path "
            "(or accept the database found there as the right one)",
        )
    dlq = commands.add_parser(
        "dlq", parents=[common], help="review what could not be delivered: list, retry, drop"
    )
    actions = dlq.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", parents=[common], help="show the dead letters")
    listing.add_argument("--all", action="store_true", help="include retried and dropped ones")
    retry = actions.add_parser("retry", parents=[common], help="queue dead letters again")
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("ids", nargs="*", type=int, default=[], metavar="ID")
    which.add_argument("--all", action="store_true", help="every open dead letter")
    drop = actions.add_parser("drop", parents=[common], help="forget dead letters for good")
    drop.add_argument("ids", nargs="+", type=int, metavar="ID")
    quarantined = commands.add_parser(
        "updates",
        parents=[common],
        help="review updates that could not be handled: list, replay",
    )
    steps = quarantined.add_subparsers(dest="action", required=True, metavar="ACTION")
    steps.add_parser("list", parents=[common], help="show the quarantined updates")
    replay = steps.add_parser(
        "replay", parents=[common], help="feed quarantined updates through the handlers again"
    )
    chosen = replay.add_mutually_exclusive_group(required=True)
    chosen.add_argument("ids", nargs="*", type=int, default=[], metavar="UPDATE_ID")
    chosen.add_argument("--all", action="store_true", help="every one not handled yet")
    backup = commands.add_parser(
        "backup", parents=[common], help="copy the database, safely while the daemon runs"
    )
    backup.add_argument("path", type=Path, metavar="PATH", help="where to write the copy")
    backup.add_argument("--force", action="store_true", help="overwrite PATH if it exists")
    add_commands(commands, common)  # export, forget
    demo = commands.add_parser(
        "demo",
        help="watch the desk serve three customers on an embedded Telegram (no token needed)",
    )
    demo.add_argument(
        "--speed",
        type=float,
        default=1.0,
        metavar="X",
        help="pace the story X times faster (2 halves the pauses; default 1)",
    )
    demo.add_argument(
        "--fast", action="store_true", help="no pauses at all (the story as fast as it can go)"
    )
    demo.add_argument(
        "--keep",
        type=Path,
        metavar="PATH",
        help="keep the desk's database at PATH (a new file) to inspect it afterwards",
    )
    demo.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour the transcript (default: auto, on a terminal)",
    )
    playground = commands.add_parser(
        "playground",
        help="try the desk in your browser: customers and agents on an embedded Telegram",
    )
    playground.add_argument(
        "--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)"
    )
    playground.add_argument(
        "--no-browser", action="store_true", help="print the address, do not open a browser"
    )
    playground.add_argument(
        "--keep",
        type=Path,
        metavar="PATH",
        help="keep the desk's database at PATH (a new file) to inspect it afterwards",
    )
    commands.add_parser(
        "check",
        parents=[common],
        help="check the config, the token and the group; exit 0 if all is well",
    )
    return parser


def _fail(message: str, code: int = EXIT_FAILED) -> int:
    """One sentence on stderr (a config error names each wrong key on its own line)."""
    print(f"topicdesk: {redactor.scrub(message)}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = _parser().parse_args(argv)
    if args.command in {"demo", "playground"}:
        # On the embedded Telegram: no config file, no token, no environment read.
        return _sandbox(args)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        return _fail(str(exc), EXIT_CONFIG)
    configure_logging(
        settings.logging.level,
        settings.logging.format,
        secrets=settings.secrets(),
    )
    try:
        if args.command == "migrate":
            return _migrate(settings, new_database=args.new_database)
        if args.command == "backup":
            return _backup(settings, args.path, force=args.force)
        if args.command == "dlq":
            return asyncio.run(_offline(settings, dead_letter_command, args))
        if args.command == "updates":
            return asyncio.run(_offline(settings, quarantine_command, args))
        if args.command == "export":
            return asyncio.run(_offline(settings, export_command, args))
        if args.command == "forget":
            return asyncio.run(_offline(settings, forget_command, args))
        if args.command == "check":
            return asyncio.run(_check(settings))
        return _run(settings, new_database=args.new_database)
    except (MigrationError, DatabaseFileError) as exc:
        get_logger(__name__).error("cannot go on", reason=str(exc))
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130


def _sandbox(args: argparse.Namespace) -> int:
    if args.keep is not None and (args.keep.exists() or marker_path(args.keep).exists()):
        return _fail(f"{args.keep}: already exists; --keep needs a new file")
    try:
        if args.command == "demo":
            from bot.demo import run_demo  # noqa: PLC0415 - aiogram, only when asked

            return run_demo(args)
        from bot.playground import run_playground  # noqa: PLC0415

        return run_playground(args)
    except KeyboardInterrupt:
        return 130


def _migrate(settings: Settings, *, new_database: bool = False) -> int:
    applied = migrate(settings.storage.path, new_database=new_database)

    if applied:
        names = ", ".join(f"{m.version:04d}_{m.name}" for m in applied)
        print(f"{settings.storage.path}: applied {names}")
    else:
        print(f"{settings.storage.path}: already up to date")
    return EXIT_OK


def _backup(settings: Settings, target: Path, *, force: bool) -> int:
    try:
        report = backup(settings.storage.path, target, overwrite=force)
    except BackupError as exc:
        return _fail(str(exc))
    print(
        f"{report.path}: {report.size} bytes, schema version {report.schema_version}, "
        f"{report.tickets} tickets"
    )
    return EXIT_OK


async def _offline(
    settings: Settings,
    command: Callable[[Database, argparse.Namespace], Awaitable[int]],
    args: argparse.Namespace,
) -> int:
    """Run a command on the existing database (migrated first), closed afterwards."""
    path = settings.storage.path
    if not path.exists() and not marker_path(path).exists():
        return _fail(f"{path}: no database here yet (check storage.path)")
    migrate(path)  # a missing database with its marker beside it is reported here
    database = await Database.open(path)
    try:
        return await command(database, args)
    finally:
        await database.close()


async def quarantine_command(database: Database, args: argparse.Namespace) -> int:
    """`topicdesk updates list|replay`: safe while the daemon runs, which replays at its
    next poll (within telegram.polling_timeout seconds), or at its next start."""
    if args.action == "list":
        async with database.reader() as db:
            print(format_quarantined(await quarantine.list_all(db)))
        return EXIT_OK
    async with database.transaction() as db:
        asked = await quarantine.request_replay(db, None if args.all else args.ids)
    if not args.all and asked < len(set(args.ids)):
        print(f"only {asked} of those updates are in quarantine", file=sys.stderr)
    print(f"{asked} update(s) will be replayed by the running daemon at its next poll")
    return EXIT_OK if asked or args.all else EXIT_FAILED


def format_quarantined(entries: list[quarantine.Quarantined]) -> str:
    """The quarantined updates as a table an admin can read in a terminal."""
    if not entries:
        return "no quarantined updates"
    lines = [f"{'update':>10}  {'when (UTC)':16}  {'stage':7}  {'state':22}  error"]
    for entry in entries:
        when = entry.created_at[:16].replace("T", " ")
        if entry.replay_requested:
            state = "replay asked"
        elif entry.replay_outcome:
            state = f"replayed: {entry.replay_outcome}"
        else:
            state = "kept"
        lines.append(
            f"{entry.update_id:>10}  {when:16}  {entry.stage:7}  {state:22}"
            f"  {safe_text(entry.error, 120)}"
        )
    return "\n".join(lines)


async def dead_letter_command(database: Database, args: argparse.Namespace) -> int:
    """`topicdesk dlq list|retry|drop`: safe while the daemon runs, which picks retries up."""
    if args.action == "list":
        async with database.reader() as db:
            letters = await deadletters.list_letters(db, include_resolved=args.all)
        print(format_letters(letters))
        return EXIT_OK
    async with database.transaction() as db:
        if args.action == "retry" and args.all:
            chosen = await deadletters.list_letters(db)
        else:
            chosen = []
            for letter_id in args.ids:
                letter = await deadletters.get_letter(db, letter_id)
                if letter is None or letter.resolution is not None:
                    return _fail(f"dead letter {letter_id} does not exist or is resolved")
                chosen.append(letter)
        resolution = "retried" if args.action == "retry" else "dropped"
        for letter in chosen:
            if resolution == "retried" and letter.chat_id > 0:
                # The admin says try again: a customer marked unreachable may be back.
                await tickets.set_unreachable(db, letter.chat_id, None)
            await deadletters.resolve(db, letter, resolution)
    verb = "queued again" if resolution == "retried" else "dropped"
    print(f"{len(chosen)} dead letter(s) {verb}")
    return EXIT_OK


def format_letters(letters: list[deadletters.DeadLetter]) -> str:
    """The dead letters as a table an admin can read in a terminal."""
    if not letters:
        return "no dead letters"
    lines = [f"{'ID':>5}  {'when (UTC)':16}  {'method':15}  {'chat':>15}  {'ticket':>6}  error"]
    for letter in letters:
        when = letter.created_at[:16].replace("T", " ")
        ticket = f"#{letter.ticket_id}" if letter.ticket_id else "-"
        text = str(letter.params.get("text") or letter.params.get("caption") or "")
        preview = f'  "{text[:40]}"' if text else ""
        state = f" [{letter.resolution}]" if letter.resolution else ""
        lines.append(
            f"{letter.id:>5}  {when:16}  {letter.method:15}  {letter.chat_id:>15}  {ticket:>6}"
            f"  {safe_text(letter.error)}{state}{preview}"
        )
    return "\n".join(lines)


async def _check(settings: Settings) -> int:
    from bot.health import daemon_health  # noqa: PLC0415 - aiohttp, only for `check`
    from bot.preflight import StartupError, inspect, make_bot  # noqa: PLC0415 - heavy import

    try:
        bot = make_bot(settings)
    except StartupError as exc:
        return _fail(str(exc))
    try:
        checks = [
            _database_check(settings),
            *await inspect(bot, settings),
            *await daemon_health(settings),
        ]
    finally:
        await bot.session.close()
    print(f"config: {settings.storage.path} (database), group {settings.support.group_id}")
    for check in checks:
        mark = "✓" if check.ok and not check.warning else ("!" if check.ok else "✗")
        print(f"{mark} {check.name}: {redactor.scrub(check.detail)}")
    failed = [check for check in checks if not check.ok]
    print("all checks passed" if not failed else f"{len(failed)} check(s) failed")
    return EXIT_OK if not failed else EXIT_FAILED


def _database_check(settings: Settings) -> Check:
    """The database file, looked at without changing it: `run` would refuse what fails here."""
    from bot.preflight import Check  # noqa: PLC0415 - heavy import

    report = inspect_file(settings.storage.path)
    return Check("database", report.ok, report.detail, warning=report.warning)


def _run(settings: Settings, *, new_database: bool = False) -> int:
    from bot.daemon import serve  # noqa: PLC0415 - heavy import
    from bot.preflight import StartupError  # noqa: PLC0415

    try:
        asyncio.run(serve(settings, new_database=new_database))
    except (StartupError, DatabaseFileError, MigrationError) as exc:
        get_logger(__name__).error("cannot start", reason=str(exc))
        return _fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - the last line of defence logs, redacted, and exits
        get_logger(__name__).exception("TopicDesk stopped on an unexpected error")
        why = safe_text(f"{type(exc).__name__}: {exc}".rstrip(": "), limit=200)
        return _fail(f"stopped on an unexpected error ({why}); the log has the details")
    return EXIT_OK
