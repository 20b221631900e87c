"""The daemon: migrate, check, then poll and send until SIGTERM, and close everything."""

from __future__ import annotations

import asyncio
import signal

import structlog
from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import BotCommand, BotCommandScopeAllPrivateChats, BotCommandScopeChat

from bot.app import create_dispatcher
from bot.config import Settings
from bot.delivery.sender import Sender
from bot.ingest import Poller, TokenRejectedError
from bot.preflight import TOKEN_REJECTED, StartupError, make_bot, prepare
from storage.db import Database
from storage.migrations import migrate

log = structlog.stdlib.get_logger(__name__)


async def publish_commands(bot: Bot, settings: Settings) -> None:
    """Show the commands in Telegram's menu; a failure here stops nothing."""
    try:
        await bot.set_my_commands(
            [
                BotCommand(command="start", description="Open a support ticket"),
                BotCommand(command="cancel", description="Leave the form"),
            ],
            scope=BotCommandScopeAllPrivateChats(),
        )
        await bot.set_my_commands(
            [BotCommand(command="close", description="Close this topic's ticket")],
            scope=BotCommandScopeChat(chat_id=settings.support.group_id),
        )
    except TelegramAPIError as exc:
        log.warning("could not publish the command menu", error=exc.message)


async def serve(settings: Settings) -> None:
    """Run TopicDesk until SIGTERM or SIGINT; raise StartupError if it cannot start."""
    applied = migrate(settings.storage.path)
    if applied:
        log.info("database migrated", path=str(settings.storage.path), to=applied[-1].version)
    database = await Database.open(settings.storage.path)
    bot = make_bot(settings)
    try:
        await prepare(bot, settings)
        await publish_commands(bot, settings)
        sender = Sender(bot, database)
        poller = Poller(
            bot,
            create_dispatcher(settings, database),
            database,
            polling_timeout=settings.telegram.polling_timeout,
            on_commit=sender.wake,
        )
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, poller.stop)
        await _run(poller, sender)
    finally:
        await bot.session.close()
        await database.close()
        log.info("stopped")


async def _run(poller: Poller, sender: Sender) -> None:
    sending = asyncio.create_task(sender.run(), name="sender")
    polling = asyncio.create_task(poller.run(), name="poller")
    log.info("polling started")
    done, _ = await asyncio.wait({sending, polling}, return_when=asyncio.FIRST_COMPLETED)
    if sending in done:
        # The sender never returns on its own: whatever it raised stops the daemon.
        poller.stop()
    log.info("stopping: finishing the update in hand and the sends in flight")
    await asyncio.gather(polling, return_exceptions=True)
    await sender.stop()
    await asyncio.gather(sending, return_exceptions=True)
    for task in (polling, sending):
        error = task.exception()
        if isinstance(error, TokenRejectedError):
            raise StartupError(TOKEN_REJECTED) from None
        if error is not None:
            raise error
