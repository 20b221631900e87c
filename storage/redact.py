"""Secrets kept out of every text TopicDesk stores, sends or shows.

One registry for the process: the bot token (and its secret half) and the password of
`telegram.api_url` are added once, at start-up, when the settings are read. The log
redactor (bot/logs.py), `bot.delivery.errors.reason()` (the text of every failure that
is stored in the outbox and the dead letters, sent to the agents or printed by
`topicdesk dlq list`) and the dead-letter queue itself all scrub through it.

Patterns back the registry up, so even a secret it was never told about is hidden: a
bot token in a URL's path (`/bot123456:AA.../`), anything shaped like a bot token, and
the credentials of a URL (`https://user:password@host`).

It lives in storage/ because the store must not import bot/, and the store scrubs too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import quote, unquote, urlsplit

REDACTED = "[secret]"
# Shorter values would be replaced inside ordinary words; the patterns cover them.
MIN_SECRET = 6
# A stored or shown reason is one line, and not a whole HTML error page.
MAX_TEXT = 500

_COLON = r"(?::|%3[aA])"
# /bot<id>:<secret>/ in a Bot API URL, whatever the token.
_TOKEN_IN_PATH = re.compile(rf"\bbot\d+{_COLON}[A-Za-z0-9_-]+")
# A bare bot token: digits, a colon, then a long secret (BotFather's are 35 characters).
_BARE_TOKEN = re.compile(rf"\b\d{{5,}}{_COLON}[A-Za-z0-9_-]{{30,}}")
# scheme://user:password@ (or scheme://user@): the whole user part goes.
_URL_CREDENTIALS = re.compile(r"\b([A-Za-z][A-Za-z0-9+.-]*://)[^\s/?#@'\"<>]+@")
_SPACE = re.compile(r"\s+")
# One cheap search that every text shaped like a secret matches: most texts (a log line's
# values, most error texts) match nothing, and are spared the three substitutions.
_MAYBE = re.compile(rf"bot\d|\d{{5,}}{_COLON}|://[^\s/?#@'\"<>]+@")


class Scrubber:
    """The known secrets, longest first, and the patterns for those not known."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        for secret in secrets:
            if secret and len(secret) >= MIN_SECRET and secret not in self.secrets:
                self.secrets.append(secret)
        # Longest first, so a token is hidden whole before any part of it.
        self.secrets.sort(key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        if _MAYBE.search(text) is None:
            return text
        text = _TOKEN_IN_PATH.sub(f"bot{REDACTED}", text)
        text = _BARE_TOKEN.sub(REDACTED, text)
        return _URL_CREDENTIALS.sub(rf"\1{REDACTED}@", text)


# The process's one registry.
secrets = Scrubber()


def scrub(text: str) -> str:
    """`text` with every secret, known or shaped like one, replaced by [secret]."""
    return secrets.scrub(text)


def safe_text(text: str, limit: int = MAX_TEXT) -> str:
    """A text as it may be stored or shown: secrets hidden, one line, at most `limit` long."""
    text = _SPACE.sub(" ", scrub(str(text))).strip()
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def token_secrets(token: str) -> list[str]:
    """The strings of a bot token worth hiding: the whole token and its secret half."""
    token = token.strip()
    found = [token]
    if ":" in token:
        found.append(token.split(":", 1)[1])
    return found


def url_secrets(url: str) -> list[str]:
    """The password of a URL (http://user:password@host), as written and decoded."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return []
    if not password:
        return []
    return list(dict.fromkeys([password, unquote(password), quote(unquote(password), safe="")]))


def register(values: Iterable[str]) -> None:
    """Add secrets to the process's registry (the token, passwords): done at start-up."""
    secrets.add(values)
