"""The `topicdesk` command: run, migrate, check.

Heavy imports (aiogram) happen inside the commands that talk to Telegram, so
`topicdesk migrate` stays light.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from bot.config import ConfigError, Settings, load_settings
from bot.logs import configure_logging, get_logger, redactor, token_secrets
from storage.migrations import MigrationError, migrate

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
    commands.add_parser("run", parents=[common], help="serve customers and agents")
    commands.add_parser("migrate", parents=[common], help="bring the database schema up to date")
    commands.add_parser(
        "check",
        parents=[common],
        help="check the config, the token and the group; exit 0 if all is well",
    )
    return parser


def _fail(message: str, code: int = EXIT_FAILED) -> int:
    print(f"topicdesk: {redactor.scrub(message)}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        return _fail(str(exc), EXIT_CONFIG)
    configure_logging(
        settings.logging.level,
        settings.logging.format,
        secrets=token_secrets(settings.telegram.token.get_secret_value()),
    )
    try:
        if args.command == "migrate":
            return _migrate(settings)
        if args.command == "check":
            return asyncio.run(_check(settings))
        return _run(settings)
    except MigrationError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        return 130


def _migrate(settings: Settings) -> int:
    applied = migrate(settings.storage.path)
    if applied:
        names = ", ".join(f"{m.version:04d}_{m.name}" for m in applied)
        print(f"{settings.storage.path}: applied {names}")
    else:
        print(f"{settings.storage.path}: already up to date")
    return EXIT_OK


async def _check(settings: Settings) -> int:
    from bot.preflight import StartupError, inspect, make_bot  # noqa: PLC0415 - heavy import

    try:
        bot = make_bot(settings)
    except StartupError as exc:
        return _fail(str(exc))
    try:
        checks = await inspect(bot, settings)
    finally:
        await bot.session.close()
    print(f"config: {settings.storage.path} (database), group {settings.support.group_id}")
    for check in checks:
        mark = "✓" if check.ok and not check.warning else ("!" if check.ok else "✗")
        print(f"{mark} {check.name}: {redactor.scrub(check.detail)}")
    failed = [check for check in checks if not check.ok]
    print("all checks passed" if not failed else f"{len(failed)} check(s) failed")
    return EXIT_OK if not failed else EXIT_FAILED


def _run(settings: Settings) -> int:
    from bot.daemon import serve  # noqa: PLC0415 - heavy import
    from bot.preflight import StartupError  # noqa: PLC0415

    try:
        asyncio.run(serve(settings))
    except StartupError as exc:
        get_logger(__name__).error("cannot start", reason=str(exc))
        return _fail(str(exc))
    except Exception:  # noqa: BLE001 - the last line of defence logs, redacted, and exits
        get_logger(__name__).exception("TopicDesk stopped on an unexpected error")
        return EXIT_FAILED
    return EXIT_OK
