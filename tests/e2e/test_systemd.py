"""TopicDesk started the way its unit starts it: token from a credential, notify, watchdog."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from collections.abc import Iterator

import pytest

from bot.daemon import READY_STATUS, STOPPING_STATUS
from bot.fake_telegram import BOT_TOKEN, FakeTelegram
from tests.e2e.test_daemon_process import child_env, stopped
from tests.unit.test_sdnotify import Systemd


@pytest.fixture
def systemd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Systemd]:
    """The notify socket systemd would name in $NOTIFY_SOCKET (a short path: 108 bytes)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path_factory.mktemp("sd") / "notify"))
        sock.setblocking(False)
        yield Systemd(sock)


async def test_under_systemd_the_daemon_reads_its_credential_reports_ready_and_stops_cleanly(
    telegram: FakeTelegram,
    desk_env: dict[str, str],
    systemd: Systemd,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    credentials = tmp_path_factory.mktemp("credentials")
    (credentials / "telegram-token").write_text(BOT_TOKEN + "\n")
    env = child_env(
        desk_env,
        NOTIFY_SOCKET=systemd.sock.getsockname(),
        WATCHDOG_USEC="1000000",
        CREDENTIALS_DIRECTORY=str(credentials),
    )
    del env["TOPICDESK_TELEGRAM__TOKEN"]  # the token comes only from the credential
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        # The child imports aiogram first, which takes seconds on a busy machine.
        await systemd.wait_for(f"READY=1\nSTATUS={READY_STATUS}", timeout=90)
        await systemd.wait_for("WATCHDOG=1")
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = await stopped(process)

    assert process.returncode == 0, err.decode()
    assert f"STOPPING=1\nSTATUS={STOPPING_STATUS}" in systemd.received()
    assert telegram.calls_to("getUpdates")
    text = out.decode() + err.decode()
    assert BOT_TOKEN not in text
    assert BOT_TOKEN.split(":")[1] not in text
