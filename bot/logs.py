"""structlog set-up: JSON lines under systemd, a readable console on a terminal.

Our own loggers and the standard-library ones (aiogram, aiohttp) go through the same
processors, so every line is in one format and every line passes the redactor that
keeps the bot token and other secrets out of logs, tracebacks included.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import IO, Any, TextIO, cast

import structlog
from structlog.types import EventDict, Processor, WrappedLogger

from storage import redact
from storage.redact import REDACTED, Scrubber, token_secrets

__all__ = ["REDACTED", "Redactor", "configure_logging", "get_logger", "redactor", "token_secrets"]


class Redactor:
    """The log processor: replace every secret in a log line's values.

    It reads the process's one registry of secrets (storage.redact), the same that
    `bot.delivery.errors.reason()` and the dead-letter queue scrub with, plus its
    patterns for a token or URL credentials it was never told about.
    """

    def __init__(self, scrubber: Scrubber | None = None) -> None:
        self._scrubber = scrubber if scrubber is not None else redact.secrets

    @property
    def secrets(self) -> list[str]:
        return self._scrubber.secrets

    @secrets.setter
    def secrets(self, values: list[str]) -> None:
        self._scrubber.secrets = values

    def add(self, secrets: Iterable[str]) -> None:
        self._scrubber.add(secrets)

    def scrub(self, text: str) -> str:
        return self._scrubber.scrub(text)

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


# One redactor for the process, over the one registry: secrets learned later apply everywhere.
redactor = Redactor()


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

    # Our own lines skip the standard library's machinery (a LogRecord, a handler, a
    # formatter for every line: a quarter of an update's handling during catch-up) and
    # are rendered and written by structlog itself, through the same processors.
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            redactor,
            renderer,
            _scrub_line,
        ],
        logger_factory=_LineWriterFactory(stream),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level]),
        cache_logger_on_first_use=False,
    )


class _LineWriter(structlog.WriteLogger):
    """structlog's WriteLogger with the name add_logger_name reads."""

    def __init__(self, stream: IO[str], name: str) -> None:
        super().__init__(cast(TextIO, stream))
        self.name = name


class _LineWriterFactory:
    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def __call__(self, *args: Any) -> _LineWriter:
        return _LineWriter(self._stream, str(args[0]) if args else "")


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A logger named after its module."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
