"""Telling systemd how the desk is: ready, stopping, and a watchdog fed only while healthy."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from bot import sdnotify
from bot.daemon import READY_STATUS, STOPPING_STATUS, feed_watchdog, healthy_for_watchdog
from bot.metrics import Metrics
from tests.conftest import RunningDesk


class Systemd:
    """The receiving end of $NOTIFY_SOCKET, as systemd holds it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.datagrams: list[str] = []

    def received(self) -> list[str]:
        """Every datagram that arrived so far, in order."""
        while True:
            try:
                self.datagrams.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return self.datagrams

    async def wait_for(self, datagram: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while datagram not in self.received():
            if time.monotonic() > deadline:
                raise AssertionError(f"systemd never got {datagram!r}: {self.datagrams}")
            await asyncio.sleep(0.02)


@pytest.fixture
def clean_systemd_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(sdnotify, "_warned", False)


@pytest.fixture
def systemd(
    clean_systemd_env: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Systemd]:
    """A datagram socket on a path (short: sun_path holds 108 bytes) named in $NOTIFY_SOCKET."""
    path = tmp_path_factory.mktemp("sd") / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.setblocking(False)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        yield Systemd(sock)


def test_ready_stopping_and_watchdog_arrive_as_systemd_expects(systemd: Systemd) -> None:
    assert sdnotify.ready("Polling Telegram")
    assert sdnotify.watchdog()
    assert sdnotify.status("Waiting for Telegram")
    assert sdnotify.stopping()

    assert systemd.received() == [
        "READY=1\nSTATUS=Polling Telegram",
        "WATCHDOG=1",
        "STATUS=Waiting for Telegram",
        "STOPPING=1",
    ]


def test_a_status_stays_one_field_whatever_its_text(systemd: Systemd) -> None:
    sdnotify.status("two\nlines")

    assert systemd.received() == ["STATUS=two lines"]


def test_an_abstract_socket_is_written_with_an_at_sign(
    clean_systemd_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"topicdesk-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.setblocking(False)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)

        assert sdnotify.ready()
        assert Systemd(sock).received() == ["READY=1"]


def test_outside_systemd_nothing_is_sent_and_nothing_fails(clean_systemd_env: None) -> None:
    with capture_logs() as logs:
        assert not sdnotify.ready("x")
        assert not sdnotify.stopping()
        assert not sdnotify.watchdog()
        assert not sdnotify.status("x")
    assert logs == []


def test_a_socket_that_is_gone_is_warned_about_once_and_never_raises(
    clean_systemd_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))

    with capture_logs() as logs:
        assert not sdnotify.ready()
        assert not sdnotify.watchdog()

    assert len(logs) == 1
    assert logs[0]["log_level"] == "warning"
    assert logs[0]["socket"] == str(tmp_path / "gone")


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        (None, None, None),
        ("90000000", None, 90.0),
        ("90000000", "self", 90.0),
        ("90000000", "other", None),  # a watchdog meant for another process
        ("500000", None, 0.5),
        ("0", None, None),
        ("soon", None, None),
        ("90000000", "not-a-pid", None),
    ],
)
def test_the_watchdog_interval_comes_from_watchdog_usec(
    clean_systemd_env: None,
    monkeypatch: pytest.MonkeyPatch,
    usec: str | None,
    pid: str | None,
    expected: float | None,
) -> None:
    if usec is not None:
        monkeypatch.setenv("WATCHDOG_USEC", usec)
    if pid is not None:
        pids = {"self": str(os.getpid()), "other": str(os.getpid() + 1)}
        monkeypatch.setenv("WATCHDOG_PID", pids.get(pid, pid))

    assert sdnotify.watchdog_interval() == expected


@pytest.mark.parametrize(
    ("poll_age", "sender_running", "healthy"),
    [
        (5.0, True, True),  # polled a moment ago, sender working
        (89.9, True, True),
        (90.0, True, False),  # the poller is stuck
        (None, True, False),  # never polled
        (5.0, False, False),  # the sender died
    ],
)
def test_the_watchdog_is_fed_only_while_polling_and_sending_work(
    poll_age: float | None, sender_running: bool, healthy: bool
) -> None:
    assert healthy_for_watchdog(poll_age, sender_running=sender_running, stale_after=90) is healthy


async def test_a_healthy_desk_pings_and_a_dead_sender_stops_the_pings(systemd: Systemd) -> None:
    metrics = Metrics()
    metrics.polled()
    sending: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    feeding = asyncio.create_task(feed_watchdog(metrics, sending, interval=0.1, stale_after=60))
    try:
        await systemd.wait_for("WATCHDOG=1", timeout=2)
        with capture_logs() as logs:
            sending.set_result(None)
            await asyncio.sleep(0.1)
            pings = len(systemd.received())
            await asyncio.sleep(0.3)
    finally:
        feeding.cancel()
        await asyncio.gather(feeding, return_exceptions=True)

    assert len(systemd.received()) == pings  # withheld, so systemd restarts us
    assert [entry["log_level"] for entry in logs] == ["error"]  # said once, not every tick
    assert logs[0]["sender_running"] is False


async def test_a_stale_poll_withholds_the_ping(systemd: Systemd) -> None:
    metrics = Metrics()
    metrics.polled()
    metrics.last_poll = time.monotonic() - 120
    sending: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    with capture_logs() as logs:
        feeding = asyncio.create_task(feed_watchdog(metrics, sending, interval=0.1, stale_after=90))
        await asyncio.sleep(0.3)
        feeding.cancel()
        await asyncio.gather(feeding, return_exceptions=True)

    assert systemd.received() == []
    assert logs[0]["seconds_since_poll"] >= 120


# The in-process daemon (tests/conftest.py) under a systemd that also set a watchdog.


@pytest.fixture
def desk_env(
    desk_env: dict[str, str], systemd: Systemd, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The test desk's environment, with $NOTIFY_SOCKET set and a fast watchdog."""
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # pings every 0.1 s
    return desk_env


async def test_the_daemon_reports_ready_feeds_the_watchdog_and_reports_stopping(
    systemd: Systemd, desk: RunningDesk
) -> None:
    await systemd.wait_for(f"READY=1\nSTATUS={READY_STATUS}")
    await systemd.wait_for("WATCHDOG=1")
    assert f"STOPPING=1\nSTATUS={STOPPING_STATUS}" not in systemd.received()

    await desk.stop()

    datagrams = list(systemd.received())
    assert datagrams.count(f"STOPPING=1\nSTATUS={STOPPING_STATUS}") == 1
    assert datagrams.index(f"READY=1\nSTATUS={READY_STATUS}") < datagrams.index("WATCHDOG=1")
    # The watchdog task ends with the service: no ping once it has stopped.
    await asyncio.sleep(0.3)
    assert systemd.received() == datagrams
