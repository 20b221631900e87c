"""The embedded desk: TopicDesk's real daemon against the embedded Telegram, on loopback.

`topicdesk demo` and `topicdesk playground` run the same daemon as `topicdesk run` (the
poller, the outbox, the sender and its rate limiter, the housekeeper) against
`bot.fake_telegram`, which listens on 127.0.0.1 only. No token, no config file, no network.

Telegram's budgets can run on a faster clock: with `scale` 10, the group's 20 sends a
minute become 20 per 6 s, for the fake and for the desk alike, so a demo shows the
limiter at work without making anyone wait a minute.

The settings are built here and never read from the environment or a config file, so a
`TOPICDESK_*` variable (a real token, say) can never point the sandbox at Telegram.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import structlog
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from bot.config import Settings
from bot.daemon import Daemon
from bot.fake_telegram import ADMIN_ID, BOT_TOKEN, GROUP_ID, FakeTelegram, Limits
from bot.logs import configure_logging
from storage import outbox


@dataclass(frozen=True, slots=True)
class Person:
    """Someone in the sandbox's world: a customer writing in private, or an agent."""

    user_id: int
    first_name: str
    last_name: str
    username: str
    language: str = "en"

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}"


CUSTOMERS: tuple[Person, ...] = (
    Person(1001, "Alice", "Martin", "alice_m"),
    Person(1002, "Bruno", "Costa", "bruno_c", "pt"),
    Person(1003, "Chiara", "Rossi", "chiara_r", "it"),
    Person(1004, "Deniz", "Kaya", "deniz_k", "tr"),
)
AGENTS: tuple[Person, ...] = (
    Person(2001, "Dana", "Support", "dana_support"),
    Person(2002, "Eli", "Support", "eli_support"),
)
#: The desk's administrator (also the fake's human admin who owns the group).
ADMIN = Person(ADMIN_ID, "Desk", "Admin", "desk_admin")


class SandboxSettings(Settings):
    """Settings from the values given here only: no environment, no config file."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def sandbox_settings(
    api_url: str,
    database: Path,
    *,
    scale: float = 1.0,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Settings:
    """The desk's settings for the embedded Telegram at `api_url`, Telegram's periods
    divided by `scale`. `overrides` maps a table to the keys to change in it, e.g.
    {"delivery": {"group_per_window": 21}}."""
    data: dict[str, Any] = {
        "telegram": {"token": BOT_TOKEN, "api_url": api_url, "polling_timeout": 5},
        "support": {"group_id": GROUP_ID, "admin_ids": [ADMIN.user_id]},
        "storage": {"path": database},
        "delivery": {
            "global_per_second": round(30 * scale),
            "private_per_second": 1.0 * scale,
            "group_window": 60.0 / scale,
            "base_delay": max(0.05, 1.0 / scale),
            "probe_interval": max(0.5, 10.0 / scale),
            "album_wait": 0.3,
        },
        "logging": {"level": "INFO", "format": "json"},
    }
    for table, values in (overrides or {}).items():
        data.setdefault(table, {}).update(values)
    return SandboxSettings(**data)


class Sandbox:
    """The embedded Telegram and the desk running against it, in this event loop.

    `async with Sandbox(...) as sandbox:` starts both (the desk has polled once when the
    block begins) and stops both at its end. The database is a temporary file, removed
    afterwards, unless `database` names one to keep; the desk's log goes to `log`, or to
    a temporary file.
    """

    def __init__(
        self,
        *,
        scale: float = 10.0,
        database: Path | None = None,
        log: IO[str] | None = None,
        overrides: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        if scale <= 0:
            raise ValueError("the sandbox's time scale must be positive")
        self.scale = scale
        self.telegram = FakeTelegram(limits=Limits(time_scale=scale))
        self._keep = database is not None
        self._workdir = Path(tempfile.mkdtemp(prefix="topicdesk-sandbox-"))
        self.database = database if database is not None else self._workdir / "desk.db"
        self._log = log
        self._own_log: IO[str] | None = None
        self._saved_logging: tuple[list[logging.Handler], int, dict[str, Any]] | None = None
        self._overrides = overrides
        self.settings: Settings | None = None
        self.daemon: Daemon | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Sandbox:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def start(self) -> None:
        telegram = self.telegram
        await telegram.start()
        telegram.add_group(GROUP_ID, "Support desk")
        telegram.set_member(GROUP_ID, ADMIN.user_id, "creator")
        for person in (*CUSTOMERS, *AGENTS):
            telegram.add_user(
                person.user_id,
                person.first_name,
                person.last_name,
                username=person.username,
                language_code=person.language,
            )
        for agent in AGENTS:
            telegram.set_member(GROUP_ID, agent.user_id, "member")
        self.settings = sandbox_settings(
            telegram.base_url, self.database, scale=self.scale, overrides=self._overrides
        )
        # The desk's log goes where the caller says (a file, by default nowhere visible);
        # whatever logging was set up before comes back in stop().
        root = logging.getLogger()
        self._saved_logging = (list(root.handlers), root.level, structlog.get_config())
        configure_logging(
            self.settings.logging.level,
            "json",
            secrets=self.settings.secrets(),
            stream=self._log or self._log_file(),
        )
        polls = len(telegram.calls_to("getUpdates"))
        self.daemon = Daemon(self.settings, new_database=not self._keep)
        self._task = asyncio.create_task(self.daemon.run(handle_signals=False))
        await telegram.wait_until(
            lambda: len(telegram.calls_to("getUpdates")) > polls or self._task_done(),
            timeout=30,
            what="the desk's first getUpdates",
        )
        if self._task.done():
            await self._task  # the desk could not start: its StartupError goes up

    def _log_file(self) -> IO[str]:
        """The desk's log, in the sandbox's working directory (closed by stop())."""
        self._own_log = (self._workdir / "topicdesk.log").open("a", encoding="utf-8")
        return self._own_log

    def _task_done(self) -> bool:
        return self._task is not None and self._task.done()

    async def stop(self) -> None:
        """Stop the desk (finishing the sends in flight), then the embedded Telegram."""
        try:
            if self.daemon is not None and self._task is not None:
                self.daemon.stop()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._task), 15)
                if not self._task.done():
                    self._task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await self._task
                self.daemon = self._task = None
        finally:
            # Also when the desk's task ended in an error (it could not start, say), which
            # the wait above raises: the embedded Telegram, the log and the folder go too.
            await self.telegram.stop()
            self._restore_logging()
            if self._own_log is not None:
                self._own_log.close()
                self._own_log = None
            shutil.rmtree(self._workdir, ignore_errors=True)

    def _restore_logging(self) -> None:
        if self._saved_logging is None:
            return
        handlers, level, structlog_config = self._saved_logging
        root = logging.getLogger()
        root.handlers = handlers
        root.setLevel(level)
        structlog.configure(**structlog_config)
        self._saved_logging = None

    async def outbox_depth(self) -> int:
        """How many outgoing calls still wait in the desk's outbox."""
        database = self.daemon.database if self.daemon is not None else None
        if database is None:
            return 0
        async with database.reader() as db:
            return await outbox.depth(db)

    async def settled(self, timeout: float = 30.0, *, quiet_for: float = 0.3) -> None:  # noqa: ASYNC109
        """Wait until every update is handled and the outbox is empty, and has stayed so
        for `quiet_for` seconds: everything the desk had to say is said."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        quiet_since: float | None = None
        while True:
            now = loop.time()
            busy = bool(self.telegram.pending_updates) or await self.outbox_depth() > 0
            if busy:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = now
            elif now - quiet_since >= quiet_for:
                return
            if now > deadline:
                raise TimeoutError(f"the desk was still busy after {timeout:g} s")
            await asyncio.sleep(0.05)
