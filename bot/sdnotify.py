"""Telling systemd how the desk is doing: the sd_notify protocol, without a dependency.

Under `Type=notify` systemd names a datagram socket in $NOTIFY_SOCKET (a path, or an
abstract socket written with a leading `@`); each message is a datagram of `KEY=value`
lines. Outside systemd the variable is unset and every function here does nothing.
A notification that cannot be sent is logged once and otherwise ignored: telling
systemd is never a reason to stop serving customers.

This module must not import aiogram: it is small on purpose.
"""

from __future__ import annotations

import os
import socket

import structlog

log = structlog.stdlib.get_logger(__name__)

_warned = False


def notify(*fields: str) -> bool:
    """Send `KEY=value` fields to systemd in one datagram; True if it was sent."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket: no file behind it
    message = "\n".join(fields).encode("utf-8", errors="replace")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            # Never block the event loop: a full queue is a failed send, not a wait.
            sock.setblocking(False)
            sock.sendto(message, address)
    except OSError as exc:
        _warn_once(address, exc)
        return False
    return True


def _warn_once(address: str, exc: OSError) -> None:
    global _warned  # noqa: PLW0603 - one warning per process is the point
    if not _warned:
        _warned = True
        log.warning(
            "cannot notify systemd; further failures are not logged",
            socket=address.replace("\0", "@"),
            error=exc.strerror or str(exc),
        )


def _status(text: str | None) -> tuple[str, ...]:
    # One datagram line per field: a newline in the text would start a bogus field.
    return () if text is None else ("STATUS=" + " ".join(text.splitlines()),)


def ready(status: str | None = None) -> bool:
    """Start-up is complete: systemd considers the service started."""
    return notify("READY=1", *_status(status))


def stopping(status: str | None = None) -> bool:
    """Shutdown has begun."""
    return notify("STOPPING=1", *_status(status))


def watchdog() -> bool:
    """The desk is healthy: reset systemd's watchdog timer."""
    return notify("WATCHDOG=1")


def status(text: str) -> bool:
    """A one-line status shown by `systemctl status`."""
    return notify(*_status(text))


def watchdog_interval() -> float | None:
    """Seconds within which systemd expects WATCHDOG=1, or None if no watchdog is set.

    Reads $WATCHDOG_USEC; when $WATCHDOG_PID is set, the watchdog is ours only if it
    names this process (a child must not take over its parent's watchdog).
    """
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    try:
        if pid and int(pid) != os.getpid():
            return None
        interval = int(usec)
    except ValueError:
        return None
    return interval / 1_000_000 if interval > 0 else None
