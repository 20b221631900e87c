"""Fixtures for the operator's commands."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from bot.logs import redactor

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
GROUP = -1001234567890


@pytest.fixture
def operator_shell(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """A clean environment in an empty directory; the logging `main` sets up is undone."""
    for name in list(os.environ):
        if name.startswith("TOPICDESK_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    aiogram_events = logging.getLogger("aiogram.event")
    saved = (root.handlers[:], root.level, aiogram_events.level, redactor.secrets[:])
    yield
    root.handlers, root.level = saved[0], saved[1]
    aiogram_events.setLevel(saved[2])
    redactor.secrets = saved[3]
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Settings from the environment only, as under systemd; returns the database path."""
    path = tmp_path / "var" / "topicdesk.db"
    monkeypatch.setenv("TOPICDESK_TELEGRAM__TOKEN", TOKEN)
    monkeypatch.setenv("TOPICDESK_SUPPORT__GROUP_ID", str(GROUP))
    monkeypatch.setenv("TOPICDESK_STORAGE__PATH", str(path))
    return path
