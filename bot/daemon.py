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
from bot.metrics import Metrics
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


class Daemon:
    """TopicDesk running: the poller feeding handlers, the sender draining the outbox."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.poller: Poller | None = None
        self.sender: Sender | None = None
        self._stop_requested = False

    def stop(self) -> None:
        """Ask the daemon to stop: finish the update in hand and the sends in flight."""
        self._stop_requested = True
        if self.poller is not None:
            self.poller.stop()

    async def run(self, *, handle_signals: bool = True) -> None:
        """Migrate, check, serve until stop() (or SIGTERM/SIGINT), then close everything.

        Raises StartupError when TopicDesk cannot start, with the reason in one sentence.
        """
        settings = self.settings
        applied = migrate(settings.storage.path)
        if applied:
            log.info("database migrated", path=str(settings.storage.path), to=applied[-1].version)
        database = await Database.open(settings.storage.path)
        bot = make_bot(settings)
        try:
            await prepare(bot, settings)
            await publish_commands(bot, settings)
            self.sender = Sender(bot, database, settings, metrics=self.metrics)
            self.poller = Poller(
                bot,
                create_dispatcher(settings, database),
                database,
                polling_timeout=settings.telegram.polling_timeout,
                on_commit=self.sender.wake,
                metrics=self.metrics,
            )
            if handle_signals:
                loop = asyncio.get_running_loop()
                for signum in (signal.SIGTERM, signal.SIGINT):
                    loop.add_signal_handler(signum, self.stop)
            if self._stop_requested:
                self.poller.stop()
            await _run(self.poller, self.sender)
        finally:
            await bot.session.close()
            await database.close()
            log.info("stopped")


async def serve(settings: Settings) -> None:
    """Run TopicDesk until SIGTERM or SIGINT; raise StartupError if it cannot start."""
    await Daemon(settings).run()


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
