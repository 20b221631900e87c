"""Shared fixtures: a fake Telegram on loopback and TopicDesk running against it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from bot.config import Settings, load_settings
from bot.daemon import Daemon
from bot.fake_telegram import BOT_TOKEN, GROUP_ID, FakeTelegram


@pytest.fixture
async def telegram() -> AsyncIterator[FakeTelegram]:
    """A fake Bot API server with the support group set up as a forum."""
    fake = FakeTelegram()
    await fake.start()
    fake.add_group(GROUP_ID)
    try:
        yield fake
    finally:
        await fake.stop()


@pytest.fixture
def desk_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, telegram: FakeTelegram
) -> dict[str, str]:
    """Configuration through the environment only, as a container would run it."""
    for name in list(os.environ):
        if name.startswith("TOPICDESK_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    values = {
        "TOPICDESK_TELEGRAM__TOKEN": BOT_TOKEN,
        "TOPICDESK_TELEGRAM__API_URL": telegram.base_url,
        "TOPICDESK_TELEGRAM__POLLING_TIMEOUT": "2",
        "TOPICDESK_SUPPORT__GROUP_ID": str(GROUP_ID),
        "TOPICDESK_SUPPORT__ADMIN_IDS": "[900]",
        "TOPICDESK_STORAGE__PATH": str(tmp_path / "desk.db"),
        "TOPICDESK_LOGGING__FORMAT": "json",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


class RunningDesk:
    """TopicDesk's daemon running in this event loop, long-polling the fake server."""

    def __init__(self, settings: Settings, telegram: FakeTelegram) -> None:
        self.settings = settings
        self.telegram = telegram
        self.daemon: Daemon | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.daemon = Daemon(self.settings)
        self.task = asyncio.create_task(self.daemon.run(handle_signals=False))
        polls = len(self.telegram.calls_to("getUpdates"))
        await self.telegram.wait_until(
            lambda: len(self.telegram.calls_to("getUpdates")) > polls or self.task.done(),  # type: ignore[union-attr]
            what="the daemon's first getUpdates",
        )
        if self.task.done():
            await self.task

    async def stop(self) -> None:
        if self.daemon is not None and self.task is not None:
            self.daemon.stop()
            await asyncio.wait_for(self.task, 15)
            self.daemon = self.task = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()


@asynccontextmanager
async def desk_with(
    telegram: FakeTelegram, monkeypatch: pytest.MonkeyPatch, **changes: str
) -> AsyncIterator[RunningDesk]:
    """The daemon with some settings changed through the environment (`DELIVERY__...`);
    use it beside the `desk_env` fixture."""
    for name, value in changes.items():
        monkeypatch.setenv(f"TOPICDESK_{name}", value)
    running = RunningDesk(load_settings(), telegram)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
def settings(desk_env: dict[str, str]) -> Settings:
    return load_settings()


@pytest.fixture
async def desk(settings: Settings, telegram: FakeTelegram) -> AsyncIterator[RunningDesk]:
    running = RunningDesk(settings, telegram)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()
