"""The daemon: migrate, check, then poll and send until SIGTERM, and close everything."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import time
from collections.abc import Callable

import structlog
from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import BotCommand, BotCommandScopeAllPrivateChats, BotCommandScopeChat

from bot import sdnotify
from bot.app import create_dispatcher
from bot.config import Settings
from bot.delivery.sender import Sender
from bot.health import HealthServer
from bot.housekeeping import Housekeeper
from bot.ingest import Poller, TokenRejectedError
from bot.metrics import Metrics
from bot.preflight import TOKEN_REJECTED, StartupError, make_bot, prepare
from bot.services.canned import seed_from_config as seed_canned_responses
from bot.services.deadlines import system_clock
from bot.services.escalation import Clock, Escalator
from bot.services.outcomes import DeskOutcomes
from bot.services.quarantine import DeskQuarantine
from storage.db import Database
from storage.migrations import migrate

log = structlog.stdlib.get_logger(__name__)

# What `systemctl status` shows while TopicDesk serves, and once it is stopping.
READY_STATUS = "Polling Telegram for updates and delivering the outbox"
STOPPING_STATUS = "Stopping: finishing the update in hand and the sends in flight"


# The command menus Telegram shows: customers in private, agents in the support group.
CUSTOMER_COMMANDS = (
    ("start", "Open a support ticket"),
    ("new", "Open a new ticket"),
    ("status", "Your tickets and where each stands"),
    ("close", "Close your open ticket"),
    ("cancel", "Leave the form"),
    ("help", "What you can do here"),
)
AGENT_COMMANDS = (
    ("close", "Close this topic's ticket"),
    ("assign", "Assign this ticket: /assign @agent, or reply to their message"),
    ("unassign", "Assign this ticket to nobody"),
    ("note", "Keep an internal note (or start a message with //)"),
    ("canned", "List canned responses, or send one: /canned name"),
    ("history", "This ticket's history"),
    ("queue", "Tickets nobody has answered yet, longest waiting first"),
    ("mine", "Your active tickets"),
    ("onduty", "Go on duty: new tickets can be assigned to you"),
    ("offduty", "Go off duty: no new tickets for you"),
    ("help", "The commands you may use"),
    ("canned_add", "Admins: add or replace a canned response"),
    ("canned_del", "Admins: delete a canned response"),
    ("ban", "Admins: ban a customer (/ban ID reason, or in their topic)"),
    ("unban", "Admins: lift a ban"),
    ("agents", "Admins: the agents, on duty or not, and their tickets"),
    ("dlq", "Admins: what could not be delivered, to retry or drop"),
)


async def publish_commands(bot: Bot, settings: Settings) -> None:
    """Show the commands in Telegram's menu; a failure here stops nothing."""
    try:
        await bot.set_my_commands(
            [BotCommand(command=name, description=text) for name, text in CUSTOMER_COMMANDS],
            scope=BotCommandScopeAllPrivateChats(),
        )
        await bot.set_my_commands(
            [BotCommand(command=name, description=text) for name, text in AGENT_COMMANDS],
            scope=BotCommandScopeChat(chat_id=settings.support.group_id),
        )
    except TelegramAPIError as exc:
        log.warning("could not publish the command menu", error=exc.message)


async def tell_admins_directly(bot: Bot, settings: Settings, text: str) -> None:
    """Write to the admins without the outbox: for when the database itself is failing."""
    for admin in settings.support.admin_ids:
        try:
            await bot.send_message(admin, text)
        except TelegramAPIError as exc:
            log.warning("could not tell an admin directly", admin_id=admin, error=exc.message)


class Daemon:
    """TopicDesk running: the poller feeding handlers, the sender draining the outbox."""

    def __init__(
        self, settings: Settings, *, new_database: bool = False, clock: Clock = system_clock
    ) -> None:
        self.settings = settings
        # What the escalation scheduler takes for now (tests move it).
        self.clock = clock
        # Start over with an empty database although its marker says one existed.
        self.new_database = new_database
        self.metrics = Metrics()
        self.poller: Poller | None = None
        self.sender: Sender | None = None
        self.database: Database | None = None  # open while run() runs
        self.housekeeper: Housekeeper | None = None
        self.escalator: Escalator | None = None
        self.health: HealthServer | None = None
        self._stop_requested = False
        self._stopping_announced = False

    def stop(self) -> None:
        """Ask the daemon to stop: finish the update in hand and the sends in flight."""
        self._announce_stopping()
        self._stop_requested = True
        if self.poller is not None:
            self.poller.stop()

    def _announce_stopping(self) -> None:
        """Tell systemd, once, that shutdown has begun (asked for, or after a failure)."""
        if not self._stopping_announced:
            self._stopping_announced = True
            sdnotify.stopping(STOPPING_STATUS)

    async def run(self, *, handle_signals: bool = True) -> None:
        """Migrate, check, serve until stop() (or SIGTERM/SIGINT), then close everything.

        Raises StartupError when TopicDesk cannot start, with the reason in one sentence.
        """
        settings = self.settings
        # Whatever is opened is closed, in reverse, however the start or the run ends: a
        # database left open keeps aiosqlite's thread, and so the process, alive.
        resources = contextlib.AsyncExitStack()
        try:
            applied = migrate(settings.storage.path, new_database=self.new_database)
            if applied:
                log.info(
                    "database migrated", path=str(settings.storage.path), to=applied[-1].version
                )
            database = self.database = await Database.open(settings.storage.path)
            resources.callback(log.info, "stopped")
            resources.push_async_callback(database.close)
            await seed_canned_responses(database, settings)
            bot = make_bot(settings)
            resources.push_async_callback(bot.session.close)
            resources.push_async_callback(self._stop_operations)
        except BaseException:
            await resources.aclose()
            raise
        try:
            await prepare(bot, settings)
            await publish_commands(bot, settings)
            self.sender = Sender(
                bot, database, settings, DeskOutcomes(settings, self.metrics), metrics=self.metrics
            )
            # Each commit tells the sender which chats it queued work for.
            database.on_outbox_commit(self.sender.notify)
            self.poller = Poller(
                bot,
                create_dispatcher(settings, database, metrics=self.metrics),
                database,
                polling_timeout=settings.telegram.polling_timeout,
                metrics=self.metrics,
                desk=DeskQuarantine(settings),
                store_alert_after=settings.health.store_alert_after,
                alert=lambda text: tell_admins_directly(bot, settings, text),
            )
            if handle_signals:
                loop = asyncio.get_running_loop()
                for signum in (signal.SIGTERM, signal.SIGINT):
                    loop.add_signal_handler(signum, self.stop)
            await self._start_operations(bot, database, self.sender)
            # Everything built so far (aiogram's models: most of the heap) lives as long as
            # the process; kept out of the collector's full passes, which otherwise stop
            # the loop for a tenth of a second now and then.
            gc.freeze()
            if self._stop_requested:
                self.poller.stop()
            await _run(
                self.poller,
                self.sender,
                # One notion of "polling is stuck" for /healthz and for systemd.
                stale_after=settings.health.max_poll_age,
                on_stopping=self._announce_stopping,
            )
        finally:
            # The housekeeper and health endpoint, the bot's session, the database.
            await resources.aclose()

    async def _start_operations(self, bot: Bot, database: Database, sender: Sender) -> None:
        """The housekeeper, the escalation scheduler, and the health endpoint if
        health.listen is set."""
        settings = self.settings
        if settings.health.listen:
            self.health = HealthServer(
                settings.health, database, self.metrics, breaker_open=lambda: sender.breaker.is_open
            )
            try:
                await self.health.start()
            except OSError as exc:
                self.health = None
                raise StartupError(
                    f"health.listen {settings.health.listen}: cannot listen there "
                    f"({exc.strerror or exc}): choose another port or address"
                ) from None
        self.housekeeper = Housekeeper(
            bot,
            database,
            settings,
            self.metrics,
            is_delivering=sender.is_delivering,
            breaker_open=lambda: sender.breaker.is_open,
            wake=sender.wake,
        )
        self.housekeeper.start()
        self.escalator = Escalator(database, settings, self.metrics, clock=self.clock)
        self.escalator.start()

    async def _stop_operations(self) -> None:
        """Stop the housekeeper, the escalation scheduler and the health endpoint (before
        the database closes)."""
        if self.escalator is not None:
            await self.escalator.stop()
            self.escalator = None
        if self.housekeeper is not None:
            await self.housekeeper.stop()
            self.housekeeper = None
        if self.health is not None:
            await self.health.stop()
            self.health = None


async def serve(settings: Settings, *, new_database: bool = False) -> None:
    """Run TopicDesk until SIGTERM or SIGINT; raise StartupError if it cannot start."""
    await Daemon(settings, new_database=new_database).run()


def healthy_for_watchdog(
    poll_age: float | None, *, sender_running: bool, stale_after: float
) -> bool:
    """Whether to ping systemd's watchdog: getUpdates succeeded lately and the sender runs."""
    return sender_running and poll_age is not None and poll_age < stale_after


async def feed_watchdog(
    metrics: Metrics, sending: asyncio.Future[None], *, interval: float, stale_after: float
) -> None:
    """Ping the watchdog every interval/2 while healthy; withheld pings make systemd restart us."""
    started = time.monotonic()
    withheld = False
    while True:
        # Before the first successful poll, count from start: the same grace as a stale poll.
        poll_age = metrics.seconds_since_poll()
        if poll_age is None:
            poll_age = time.monotonic() - started
        sender_running = not sending.done()
        if healthy_for_watchdog(poll_age, sender_running=sender_running, stale_after=stale_after):
            sdnotify.watchdog()
            withheld = False
        elif not withheld:
            withheld = True
            log.error(
                "unhealthy: withholding the watchdog ping, systemd will restart TopicDesk",
                seconds_since_poll=round(poll_age, 1),
                sender_running=sender_running,
            )
        await asyncio.sleep(interval / 2)


async def _run(
    poller: Poller,
    sender: Sender,
    *,
    stale_after: float,
    on_stopping: Callable[[], None] = lambda: None,
) -> None:
    sending = asyncio.create_task(sender.run(), name="sender")
    polling = asyncio.create_task(poller.run(), name="poller")
    interval = sdnotify.watchdog_interval()
    watching: asyncio.Task[None] | None = None
    if interval is not None:
        watching = asyncio.create_task(
            feed_watchdog(
                poller.metrics,
                sending,
                interval=interval,
                stale_after=max(stale_after, interval),
            ),
            name="watchdog",
        )
    log.info("polling started", watchdog_interval=interval)
    sdnotify.ready(READY_STATUS)
    try:
        done, _ = await asyncio.wait({sending, polling}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        # systemd watches only a running service; TimeoutStopSec= bounds the shutdown.
        if watching is not None:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)
    if sending in done:
        # The sender never returns on its own: whatever it raised stops the daemon.
        poller.stop()
    on_stopping()
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
