"""structlog set-up: JSON lines under systemd, a readable console on a terminal.

Our own loggers and the standard-library ones (aiogram, aiohttp) go through the same
processors, so every line is in one format and every line passes the redactor that
keeps the bot token and other secrets out of logs, tracebacks included.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import IO, Any

import structlog
from structlog.types import EventDict, Processor, WrappedLogger

REDACTED = "[secret]"


class Redactor:
    """Replace every occurrence of a secret in a log line's values."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        for secret in secrets:
            if secret and len(secret) >= 6 and secret not in self.secrets:
                self.secrets.append(secret)
        # Longest first, so a token is hidden whole before any part of it.
        self.secrets.sort(key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {key: self._clean(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self._clean(item) for item in value)
        if isinstance(value, BaseException):
            return self.scrub(repr(value))
        return value

    def __call__(self, logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
        return {key: self._clean(value) for key, value in event.items()}


# One redactor for the process, so secrets learned later (the token) apply everywhere.
redactor = Redactor()


def token_secrets(token: str) -> list[str]:
    """The strings of a bot token worth hiding: the whole token and its secret half."""
    token = token.strip()
    secrets = [token]
    if ":" in token:
        secrets.append(token.split(":", 1)[1])
    return secrets


def _scrub_line(logger: WrappedLogger, method: str, line: Any) -> Any:
    if isinstance(line, bytes):
        return redactor.scrub(line.decode()).encode()
    return redactor.scrub(line)


def configure_logging(
    level: str = "INFO",
    fmt: str = "auto",
    *,
    secrets: Iterable[str] = (),
    stream: IO[str] | None = None,
) -> None:
    """Send every log line, ours and the libraries', to `stream` (stdout) in one format."""
    stream = stream or sys.stdout
    redactor.add(secrets)
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor = (
        structlog.dev.ConsoleRenderer(colors=stream.isatty())
        if fmt == "console"
        else structlog.processors.JSONRenderer(ensure_ascii=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # Tracebacks become text before the redactor reads them.
            structlog.processors.format_exc_info,
            redactor,
            renderer,
            # Last, on the finished line: values of any type (URLs, paths) rendered to
            # text can carry a secret the redactor above could not see.
            _scrub_line,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    # aiogram logs one line per update of its own; ours carries more context.
    logging.getLogger("aiogram.event").setLevel(logging.WARNING)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A logger named after its module."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
