"""A start that fails closes everything it opened, so the process can exit at once."""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.config import Settings, load_settings
from bot.daemon import Daemon
from bot.preflight import StartupError


def aiosqlite_threads() -> list[threading.Thread]:
    """aiosqlite's worker threads still alive: each is an open connection (not a daemon)."""
    return [
        thread
        for thread in threading.enumerate()
        if "_connection_worker_thread" in thread.name and thread.is_alive()
    ]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def with_token(settings: Settings, token: str) -> Settings:
    """Settings as code could build them, past the config's own check of the token."""
    telegram = settings.telegram.model_copy(update={"token": SecretStr(token)})
    return settings.model_copy(update={"telegram": telegram})


@pytest.mark.parametrize("failure", ["malformed token", "unreachable Bot API"])
async def test_a_failed_start_leaves_no_database_connection_open(
    database: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    monkeypatch.setenv("TOPICDESK_TELEGRAM__API_URL", f"http://127.0.0.1:{closed_port()}")
    settings = load_settings()
    if failure == "malformed token":
        settings = with_token(settings, "not-a-token")
    before = aiosqlite_threads()

    with pytest.raises(StartupError):
        await Daemon(settings).run(handle_signals=False)

    for _ in range(100):  # a closed connection's thread ends within moments
        if aiosqlite_threads() == before:
            break
        await asyncio.sleep(0.02)
    assert aiosqlite_threads() == before, "a database connection was left open"
