"""Settings: one TOML file, every key overridable from the environment.

The file is `--config PATH`, else `$TOPICDESK_CONFIG`, else `./config.toml`; a missing
default file is fine when the environment supplies what is required. Environment
variables use the prefix `TOPICDESK_` and `__` between levels, e.g.
`TOPICDESK_TELEGRAM__TOKEN` or `TOPICDESK_SUPPORT__ADMIN_IDS='[1, 2]'`.

This module must not import aiogram: `migrate` and other offline commands use it.
"""

from __future__ import annotations

import os
import re
import tomllib
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticKnownError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from bot.services import hours as business_hours
from bot.services import sla as escalation
from bot.telegram_text import html_to_entities
from storage import redact
from storage.tickets import Priority

ENV_PREFIX = "TOPICDESK_"
ENV_CONFIG = "TOPICDESK_CONFIG"
DEFAULT_CONFIG = Path("config.toml")
# systemd's `LoadCredential=telegram-token:/etc/topicdesk/token` puts the token here.
CREDENTIAL_TOKEN = "telegram-token"  # noqa: S105 - the credential's name, not a token
TOPIC_ICON_COLORS = (7322096, 16766590, 13338331, 9367192, 16749490, 16478047)
BAD_TOKEN_SHAPE = (
    "is not a bot token (it looks like 123456:ABC-DEF...): copy it again from @BotFather"  # noqa: S105 - a message, not a token
)


class ConfigError(Exception):
    """A configuration problem, worded for the person who runs the daemon."""


class _Section(BaseModel):
    # A typo in a key must be reported, not silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


def _telegram_html(value: str) -> str:
    """Texts are sent as Telegram HTML: refuse at start-up what Telegram would refuse later."""
    try:
        html_to_entities(value)
    except ValueError as exc:
        raise ValueError(
            f"is not valid Telegram HTML ({exc}); write &lt; &gt; &amp; for < > &"
        ) from None
    return value


def read_token_file(path: Path) -> str:
    """The token kept in a file, stripped; ValueError naming the file if it is unusable."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"{path} cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} cannot be read: it is not UTF-8 text") from None
    if not token:
        raise ValueError(f"{path} is empty")
    return token


def _credential_token_file() -> Path | None:
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    path = Path(directory) / CREDENTIAL_TOKEN if directory else None
    return path if path is not None and path.exists() else None


def _token_from_a_file(fields: dict[str, Any]) -> str:
    """No token given: read telegram.token_file, else the systemd credential."""
    if "token_file" not in fields:
        # token_file is set but unreadable; its own error says so. This value never
        # survives: validation fails on that error.
        return "unread"
    if fields["token_file"] is not None:
        return read_token_file(fields["token_file"])
    credential = _credential_token_file()
    if credential is None:
        raise PydanticKnownError("missing")
    try:
        return read_token_file(credential)
    except ValueError as exc:
        raise ValueError(f"is not set, and the systemd credential {exc}") from None


def _api_url_problem(url: str) -> str:
    """What is wrong with a Bot API URL, or "" (never echoing the URL: it may hold a password)."""
    if re.search(r"\s", url):
        return "must not contain spaces"
    if "{" in url or "}" in url:
        return "must not contain { or }"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"is not a valid URL ({exc})"
    if not parts.hostname:
        return "has no host name"
    if port == 0:
        return "has port 0"
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        return "must not have a query (?...) or a fragment (#...)"
    return ""


class TelegramSettings(_Section):
    # token_file comes before token: token's validator reads it when no token is given.
    token_file: Path | None = None
    # Required, but it may come from token_file or a systemd credential (see below).
    token: SecretStr = Field(default=None, validate_default=True)
    api_url: str = "https://api.telegram.org"
    local_api: bool = False
    polling_timeout: int = Field(default=30, ge=1, le=50)
    request_timeout: float = Field(default=30.0, gt=0)

    @field_validator("token_file")
    @classmethod
    def _check_token_file(cls, value: Path | None) -> Path | None:
        if value is not None:
            read_token_file(value)  # an unreadable file is reported under its own key
        return value

    @field_validator("token", mode="before")
    @classmethod
    def _strip_token(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return _token_from_a_file(info.data)
        if info.data.get("token_file") is not None:
            raise ValueError("and telegram.token_file are both set: keep one")
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str):
            value = value.strip()
            if not value:
                raise ValueError("is empty")
        return value

    @field_validator("token")
    @classmethod
    def _token_shape(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        # aiogram's own rule (digits, a colon, the rest without spaces), checked here so
        # that a mangled token is a configuration error for every command, and exit 2.
        if "token_file" not in info.data:
            return value  # token_file is unreadable; its own error says so
        if not re.fullmatch(r"\d+:\S+", value.get_secret_value()):
            raise ValueError(BAD_TOKEN_SHAPE)
        return value

    @field_validator("api_url")
    @classmethod
    def _check_api_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http(s) URL such as https://api.telegram.org")
        # The URL of every call is built as "{api_url}/bot{token}/{method}": a brace
        # would be taken for a placeholder, a query or fragment would swallow the token.
        problem = _api_url_problem(value)
        if problem:
            raise ValueError(f"{problem}; it should look like https://api.telegram.org")
        return value


class SupportSettings(_Section):
    group_id: int
    admin_ids: list[int] = Field(default_factory=list)
    topic_icon_color: int | None = None

    @field_validator("group_id")
    @classmethod
    def _check_group_id(cls, value: int) -> int:
        if value >= 0:
            raise ValueError("must be the supergroup's id, a negative number like -1001234567890")
        return value

    @field_validator("topic_icon_color")
    @classmethod
    def _check_color(cls, value: int | None) -> int | None:
        if value is not None and value not in TOPIC_ICON_COLORS:
            raise ValueError(f"must be one of {', '.join(map(str, TOPIC_ICON_COLORS))}")
        return value


class DeliverySettings(_Section):
    """How the sender paces and retries. The defaults follow Telegram's published limits."""

    global_per_second: int = Field(default=30, ge=1)
    private_per_second: float = Field(default=1.0, gt=0)
    private_burst: int = Field(default=3, ge=1)
    group_per_window: int = Field(default=20, ge=1)
    group_window: float = Field(default=60.0, gt=0)
    margin: float = Field(default=0.05, ge=0)
    max_attempts: int = Field(default=8, ge=1)
    base_delay: float = Field(default=1.0, gt=0)
    max_delay: float = Field(default=300.0, gt=0)
    retry_margin: float = Field(default=0.25, ge=0)
    breaker_threshold: int = Field(default=5, ge=1)
    probe_interval: float = Field(default=10.0, gt=0)
    album_wait: float = Field(default=1.5, ge=0)
    # Rows under way at once, across all chats; the bot-wide budget (30 a second) makes
    # more pointless, and fewer keeps a backlog from crowding the rate limiter.
    max_in_flight: int = Field(default=50, ge=1)


class StorageSettings(_Section):
    path: Path = Path("topicdesk.db")


class HealthSettings(_Section):
    """The health endpoint, the metrics, and the housekeeping that keeps them true."""

    listen: str = ""  # "host:port" (or just a port, on 127.0.0.1); empty: no endpoint
    max_poll_age: float = Field(default=90.0, gt=0)
    housekeeping_interval: float = Field(default=60.0, gt=0)
    reconcile_interval: float = Field(default=300.0, gt=0)
    failure_alert_ratio: float = Field(default=0.05, gt=0, le=1)
    pending_alert: int = Field(default=1000, ge=0)
    # Seconds the database may refuse updates (locked, read-only, full) before the admins
    # are told directly (the outbox lives in that database).
    store_alert_after: float = Field(default=60.0, ge=0)

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        value = value.strip()
        if not value:
            return ""
        host, _, port = value.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError('must be "host:port" or a port, e.g. "127.0.0.1:9187" or "9187"')
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "json", "console"] = "auto"

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


class Question(_Section):
    """One question of the intake form."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    prompt: str = Field(min_length=1, max_length=1000)
    label: str = ""
    kind: Literal["choice", "text", "regex"] = "text"
    options: list[str] = Field(default_factory=list)
    min_length: int = Field(default=1, ge=0)
    max_length: int = Field(default=3000, ge=1, le=3500)
    pattern: str = ""
    error: str = ""
    optional: bool = False

    @field_validator("prompt", "error")
    @classmethod
    def _html(cls, value: str) -> str:
        return _telegram_html(value)

    @model_validator(mode="after")
    def _check_kind(self) -> Question:
        if self.kind == "choice":
            if not self.options:
                raise ValueError("a choice question needs options")
            if any(not 1 <= len(option) <= 64 for option in self.options):
                raise ValueError("each option must be 1 to 64 characters")
        if self.kind == "regex":
            if not self.pattern:
                raise ValueError("a regex question needs a pattern")
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern is not a valid regular expression: {exc}") from exc
        if self.min_length > self.max_length:
            raise ValueError("min_length is greater than max_length")
        return self

    @property
    def title(self) -> str:
        """The label shown on the ticket card."""
        return self.label or self.id.replace("_", " ").capitalize()


def _default_questions() -> list[Question]:
    return [
        Question(
            id="category",
            label="Category",
            prompt="What is your question about?",
            kind="choice",
            options=["Billing", "Technical problem", "Account", "Other"],
        ),
        Question(
            id="description",
            label="Description",
            prompt="Please describe the problem in a few sentences.",
            kind="text",
            min_length=10,
            max_length=3000,
        ),
    ]


class IntakeSettings(_Section):
    questions: list[Question] = Field(default_factory=_default_questions, min_length=1)

    @field_validator("questions")
    @classmethod
    def _unique_ids(cls, value: list[Question]) -> list[Question]:
        ids = [q.id for q in value]
        if len(ids) != len(set(ids)):
            raise ValueError("question ids must be unique")
        return value


class AgentsSettings(_Section):
    """Who the agents are, how a new ticket finds one, and how agents work in a topic."""

    # Empty: every member of the support group is an agent (asked of Telegram with
    # getChatMember, and trusted for membership_ttl seconds). Admins are always agents.
    ids: list[int] = Field(default_factory=list)
    membership_ttl: float = Field(default=300.0, ge=0)
    # New tickets: nobody (agents press Take), or the agent on duty who waited longest
    # for one (round_robin), or who holds the fewest active tickets (least_open).
    assignment: Literal["off", "round_robin", "least_open"] = "off"
    # An agent who goes /offduty keeps their tickets, unless this hands them on.
    hand_on_when_off_duty: bool = False
    # A topic message that starts with this is an internal note, never sent on.
    note_prefix: str = Field(default="//", min_length=1, max_length=16)


class TicketsSettings(_Section):
    """A ticket's life after it is answered."""

    # A customer writing after their ticket was closed: a new ticket (with a link to
    # the old topic on its card), or the old one reopened.
    after_closed: Literal["new_ticket", "reopen"] = "new_ticket"
    # "reopen" reopens the last closed ticket only if it was closed within this many
    # days (0: whatever its age); an older one is followed by a new ticket.
    reopen_within_days: int = Field(default=7, ge=0)
    # /new from a customer with an active ticket: close it first, or keep it (the new
    # ticket is then where their messages go).
    new_closes_current: bool = True
    # Ask for a 1-5 rating when a ticket is resolved or closed, then an optional comment.
    csat: bool = True
    csat_comment: bool = True


# --- Business hours and the escalation policy (bot.services.hours, bot.services.sla) ---


def _day_name(value: Any) -> Any:
    """ "Mon", "monday" → "mon"; ValueError in one sentence for what is not a day."""
    if isinstance(value, str):
        return business_hours.DAY_NAMES[business_hours.day_index(value)]
    return value


def _holiday(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"{value!r} is not a date: write it like 2025-12-25") from None
    return value


DayName = Annotated[business_hours.DayName, BeforeValidator(_day_name)]


class HoursSettings(_Section):
    """When the desk is open. The default, every hour of every day, changes nothing."""

    # A tz database name; times are stored in UTC and shown to people in this zone.
    time_zone: str = "UTC"
    # The days the desk works, and its hours on each of them.
    weekdays: list[DayName] = Field(default_factory=lambda: list(business_hours.DAY_NAMES))
    open: str = business_hours.ALL_DAY
    # Other hours for some days, in or out of `weekdays` ("closed" for none).
    days: dict[DayName, str] = Field(default_factory=dict)
    # Whole days closed, in the desk's time zone.
    holidays: list[Annotated[date, BeforeValidator(_holiday)]] = Field(default_factory=list)

    @field_validator("time_zone")
    @classmethod
    def _check_time_zone(cls, value: str) -> str:
        return business_hours.zone(value).key

    @field_validator("open")
    @classmethod
    def _check_open(cls, value: str) -> str:
        business_hours.parse_ranges(value)
        return value

    @field_validator("days")
    @classmethod
    def _check_days(cls, value: dict[str, str]) -> dict[str, str]:
        for day, text in value.items():
            try:
                business_hours.parse_ranges(text)
            except ValueError as exc:
                raise ValueError(f"{day}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _open_sometimes(self) -> HoursSettings:
        try:
            self.business_hours()
        except ValueError:
            raise ValueError(
                "has no opening hours: give hours.open some hours on at least one of "
                "hours.weekdays, or leave [hours] out to be always open"
            ) from None
        return self

    def business_hours(self) -> business_hours.BusinessHours:
        """The desk's opening hours, to compute with."""
        return business_hours.BusinessHours.weekly(
            self.time_zone,
            self.weekdays,
            self.open,
            {str(day): text for day, text in self.days.items()},
            self.holidays,
        )


def _sla_duration(value: Any) -> Any:
    if isinstance(value, str):
        return escalation.parse_duration(value)
    if value is None or isinstance(value, timedelta):
        return value
    raise ValueError('must be a duration written as text, such as "15m", "4h" or "1d", or "off"')


def _grace(value: Any) -> Any:
    value = _sla_duration(value)
    return timedelta() if value is None else value  # "off": no grace


SlaDuration = Annotated[timedelta | None, BeforeValidator(_sla_duration)]
Grace = Annotated[timedelta, BeforeValidator(_grace)]


class SlaTargetSettings(_Section):
    """One priority's targets ([sla.high] and so on); a key left out is the [sla] one."""

    first_response: SlaDuration = None  # "off" (None): no target
    resolution: SlaDuration = None
    warn_at: float | None = Field(default=None, ge=0, lt=1)
    grace: Grace | None = None
    business_hours_only: bool | None = None


def _default_target(priority: Priority) -> SlaTargetSettings:
    first_response, resolution = escalation.DEFAULT_TARGETS[priority]
    return SlaTargetSettings(first_response=first_response, resolution=resolution)


class SlaSettings(_Section):
    """The escalation policy on first response and resolution times, per priority."""

    # Off by default: an existing desk gets no warnings or breaches until it asks.
    enabled: bool = False
    # Warn at this share of a target (0: never warn); breach at the target plus the grace.
    warn_at: float = Field(default=escalation.DEFAULT_WARN_AT, ge=0, lt=1)
    grace: Grace = Field(default=escalation.DEFAULT_GRACE, validate_default=True)
    business_hours_only: bool = False
    # On a breach, raise the ticket's priority one step (low → normal → high → urgent).
    raise_priority: bool = False
    # Mentioned on a breach when the ticket has no assignee (those on duty); empty: the admins.
    leads: list[int] = Field(default_factory=list)
    # Each priority's targets (escalation.DEFAULT_TARGETS unless its table names them).
    low: SlaTargetSettings = _default_target(Priority.LOW)
    normal: SlaTargetSettings = _default_target(Priority.NORMAL)
    high: SlaTargetSettings = _default_target(Priority.HIGH)
    urgent: SlaTargetSettings = _default_target(Priority.URGENT)

    @model_validator(mode="before")
    @classmethod
    def _default_targets(cls, data: Any) -> Any:
        # A priority's table may name one target; the other keeps its default.
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for priority, (first_response, resolution) in escalation.DEFAULT_TARGETS.items():
            given = data.get(priority.value, {})
            if isinstance(given, BaseModel):
                continue
            if isinstance(given, dict):
                data[priority.value] = {
                    "first_response": first_response,
                    "resolution": resolution,
                    **given,
                }
        return data

    def policy(self) -> escalation.SlaPolicy:
        """The policy to compute with, each priority's keys completed from [sla]'s."""
        targets = {}
        for priority in escalation.PRIORITY_ORDER:
            table: SlaTargetSettings = getattr(self, priority.value)
            targets[priority] = escalation.Target(
                first_response=table.first_response,
                resolution=table.resolution,
                warn_at=self.warn_at if table.warn_at is None else table.warn_at,
                grace=self.grace if table.grace is None else table.grace,
                business_hours_only=(
                    self.business_hours_only
                    if table.business_hours_only is None
                    else table.business_hours_only
                ),
            )
        return escalation.SlaPolicy(targets, enabled=self.enabled)


def _check_canned(value: dict[str, str]) -> dict[str, str]:
    for name, text in value.items():
        if not re.fullmatch(r"[a-z0-9_]{1,32}", name):
            raise ValueError(
                f"{name!r} is not a canned response name: use 1 to 32 of a-z, 0-9 and _"
            )
        try:
            _telegram_html(text.replace("{", "").replace("}", ""))
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
        if not text.strip():
            raise ValueError(f"{name}: the text is empty")
    return value


class TextsSettings(_Section):
    """What the bot says to customers, in Telegram HTML; translate freely.

    `{ticket}` is the ticket number; `{size}` and `{limit}` are megabytes.
    """

    greeting: str = "Hello! Let's open a support ticket. A few quick questions first."
    ticket_created: str = (
        "Thank you! Your ticket #{ticket} is open. An agent will answer here; "
        "write anything else you want us to know."
    )
    # Sent after ticket_created when the ticket opens outside [hours]; {when}: when the
    # desk opens again, in its time zone (e.g. "Mon 09:00 CET").
    out_of_office: str = (
        "We are away right now. We open again on {when}, and an agent will answer you then."
    )
    cancelled: str = "Okay, the form is cancelled. Write to us any time to start again."
    nothing_to_cancel: str = "There is nothing to cancel."
    unsupported: str = (
        "Sorry, we can't pass this kind of message on. Please send text, a photo or a file."
    )
    ticket_closed: str = "Your ticket #{ticket} is closed. Write to us any time to open a new one."
    ticket_resolved: str = (
        "Your ticket #{ticket} is marked as resolved. If something is still wrong, "
        "just write here and it opens again."
    )
    skip_button: str = "Skip"  # a button label: plain text
    not_delivered_to_agents: str = "⚠ we could not pass this message to an agent; please try again"
    file_too_large: str = (
        "This file is too large to pass on ({size} MB; the limit is {limit} MB). "
        "Please send a smaller file or a link."
    )
    # Customer commands. /status lists tickets with one line each: `status_line` with
    # {ticket}, {subject} and {status}, one of the status_* texts ({when}: a date).
    status_header: str = "Your tickets:"
    status_line: str = "#{ticket} · {subject} · {status}"
    status_open: str = "open since {when}, an agent will answer"
    status_pending: str = "answered, waiting for your reply"
    status_resolved: str = "resolved on {when}"
    status_closed: str = "closed on {when}"
    no_tickets: str = "You have no tickets yet. Write to us to open one."
    nothing_to_close: str = "You have no open ticket to close."
    new_closes_current: str = "Your ticket #{ticket} is closed. Let's open a new one."
    new_keeps_current: str = (
        "Your ticket #{ticket} stays open. Let's open a new one: once it is open, "
        "your messages go to the new ticket."
    )
    ticket_reopened: str = "Your ticket #{ticket} is open again; an agent will answer here."
    # CSAT: the rating prompt (1-5 buttons), the score chosen, the optional comment.
    csat_prompt: str = (
        "How did we do with ticket #{ticket}? Please rate it from 1 (poor) to 5 (excellent)."
    )
    csat_rated: str = "You rated ticket #{ticket} {score}/5. Thank you!"
    csat_comment_prompt: str = (
        "Would you like to tell us more? Write a comment here, or press Skip."
    )
    csat_thanks: str = "Thank you for your feedback! If you need anything else, just write here."
    csat_refused: str = "This rating cannot be taken."  # a button's answer: plain text
    # The one note a banned customer gets (their messages are kept, never relayed).
    banned: str = (
        "Sorry, this support desk cannot take your messages at the moment. "
        "They are kept, but they will not be answered here."
    )

    @field_validator(
        "greeting",
        "ticket_created",
        "out_of_office",
        "cancelled",
        "nothing_to_cancel",
        "unsupported",
        "ticket_closed",
        "ticket_resolved",
        "not_delivered_to_agents",
        "file_too_large",
        "status_header",
        "status_line",
        "status_open",
        "status_pending",
        "status_resolved",
        "status_closed",
        "no_tickets",
        "nothing_to_close",
        "new_closes_current",
        "new_keeps_current",
        "ticket_reopened",
        "csat_prompt",
        "csat_rated",
        "csat_comment_prompt",
        "csat_thanks",
        "banned",
    )
    @classmethod
    def _html(cls, value: str) -> str:
        return _telegram_html(value)


class Settings(BaseSettings):
    """All of TopicDesk's settings."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    # Without a [telegram] table the token may still come from a systemd credential.
    telegram: TelegramSettings = Field(default_factory=dict, validate_default=True)
    support: SupportSettings
    storage: StorageSettings = StorageSettings()
    delivery: DeliverySettings = DeliverySettings()
    logging: LoggingSettings = LoggingSettings()
    intake: IntakeSettings = IntakeSettings()
    texts: TextsSettings = TextsSettings()
    agents: AgentsSettings = AgentsSettings()
    tickets: TicketsSettings = TicketsSettings()
    hours: HoursSettings = HoursSettings()
    sla: SlaSettings = SlaSettings()
    # Canned responses seeded into the database at start: name = "Telegram HTML text",
    # with {customer_name}, {ticket_id} and {agent_name}. Admins add more with /canned_add.
    canned: dict[str, str] = Field(default_factory=dict)
    health: HealthSettings = HealthSettings()

    @field_validator("canned")
    @classmethod
    def _canned(cls, value: dict[str, str]) -> dict[str, str]:
        return _check_canned(value)

    @model_validator(mode="after")
    def _poll_age_outlasts_a_poll(self) -> Settings:
        # An idle long poll legitimately lasts polling_timeout seconds: a shorter limit
        # would report a healthy daemon as failing between every two polls.
        if self.health.max_poll_age <= self.telegram.polling_timeout:
            raise ValueError(
                f"health.max_poll_age ({self.health.max_poll_age:g}) must be longer than "
                f"telegram.polling_timeout ({self.telegram.polling_timeout})"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file is passed in as init data by load_settings, so it ranks below
        # the environment: init < env would be wrong, hence the explicit order here.
        return (_EnvSource(settings_cls), init_settings)

    def secrets(self) -> list[str]:
        """What must never be stored, sent or shown: the token, the api_url's password."""
        return [
            *redact.token_secrets(self.telegram.token.get_secret_value()),
            *redact.url_secrets(self.telegram.api_url),
        ]


class _EnvSource(EnvSettingsSource):
    """The environment, where a list or a table that is not JSON is left as text.

    pydantic-settings raises (a traceback) on `TOPICDESK_SUPPORT__ADMIN_IDS='1,2'`;
    left as text, the value fails validation like any wrong value, and is reported
    with its variable's name.
    """

    def decode_complex_value(self, field_name: str, field: FieldInfo, value: Any) -> Any:
        try:
            return super().decode_complex_value(field_name, field, value)
        except ValueError:
            return value


def resolve_config_path(cli_path: str | Path | None) -> tuple[Path, bool]:
    """Return the config file to read and whether the user named it explicitly."""
    if cli_path:
        return Path(cli_path), True
    env_path = os.environ.get(ENV_CONFIG)
    if env_path:
        return Path(env_path), True
    return DEFAULT_CONFIG, False


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: this is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror}") from None


def _env_name(loc: tuple[int | str, ...]) -> str:
    return ENV_PREFIX + "__".join(str(part).upper() for part in loc if isinstance(part, str))


# A list or table given in the environment as text that is not JSON.
_NOT_JSON = {
    "list_type": "a list",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
}
_JSON_EXAMPLES = {
    "support.admin_ids": "[111, 222]",
    "intake.questions": '[{"id": "email", "prompt": "Your e-mail?"}]',
}


def _describe(exc: ValidationError, path: Path | None) -> str:
    where = str(path) if path else "the environment"
    lines = []
    for error in _expand_missing_tables(exc.errors(include_url=False)):
        loc = tuple(error["loc"])
        key = ".".join(str(part) for part in loc)
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "missing":
            message = f"is required: set it in the [{loc[0]}] table or as {_env_name(loc)}"
        elif error["type"] == "extra_forbidden":
            message = "is not a known setting (check the spelling against config.example.toml)"
        source = where
        if _env_name(loc) in os.environ:
            source = f"{_env_name(loc)} in the environment"
            if error["type"] in _NOT_JSON and isinstance(error.get("input"), str):
                example = _JSON_EXAMPLES.get(key)
                message = f"must be {_NOT_JSON[error['type']]} written as JSON" + (
                    f", such as {example}" if example else ""
                )
        # A rule across tables (e.g. health.max_poll_age against polling_timeout) has no key.
        lines.append(f"{source}: {key} {message}" if key else f"{source}: {message}")
    return "\n".join(lines)


def _expand_missing_tables(errors: list[Any]) -> list[Any]:
    """A missing table is reported as its required keys, which is what must be set."""
    expanded = []
    for error in errors:
        loc = tuple(error["loc"])
        field = Settings.model_fields.get(str(loc[0])) if len(loc) == 1 else None
        section = field.annotation if field is not None else None
        if (
            error["type"] == "missing"
            and isinstance(section, type)
            and issubclass(section, BaseModel)
        ):
            for name, sub in section.model_fields.items():
                if sub.is_required():
                    expanded.append({**error, "loc": (*loc, name)})
        else:
            expanded.append(error)
    return expanded


def load_settings(cli_path: str | Path | None = None) -> Settings:
    """Read the config file and the environment; raise ConfigError with a readable reason."""
    path, explicit = resolve_config_path(cli_path)
    data: dict[str, Any] = {}
    source: Path | None = None
    if path.exists():
        data, source = _read_toml(path), path
    elif explicit:
        raise ConfigError(f"{path}: the config file does not exist")
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from None
    except SettingsError as exc:
        # Whatever else the environment source refuses: name the variable it names.
        cause = f" ({exc.__cause__})" if exc.__cause__ else ""
        raise ConfigError(f"the environment: {exc}{cause}") from None
    # From here on, the token and the api_url's password are scrubbed from every text.
    redact.register(settings.secrets())
    return settings
