"""Forgetting a customer: their personal data and their words go, the ticket figures stay.

What is removed, wherever it is kept (`SCHEMA` below accounts for every column):

- their profile: the `customers` row (name, username, language);
- the words of their tickets: every message's text (theirs and the agents' replies), the
  internal notes' texts (agents quote customers), the rating's comment, the intake
  answers, the subject and the topic's name (which carries their name), and whatever
  the tickets' history holds besides statuses, priorities, ids and scores;
- what the desk queued or sent about them: the texts, captions, names and buttons in the
  outbox and the dead letters (cards, notes, edits, replies) and Telegram's answers kept
  with them; rows not sent yet are cancelled, open dead letters dropped;
- their form in progress (`fsm_state`) and every quarantined update that came from them
  or was written in their tickets' topics (the raw update and its error, which may quote it);
- their Telegram user id: what is kept is filed under a stand-in id instead (`FORGOTTEN`
  and above, which no Telegram account can have), the same one for all their tickets, so
  the figures still count them as one customer without saying who. The desk no longer
  links them to those tickets: if they write again, they are a new customer.

What is kept: the tickets (numbers, statuses, priorities, assignees, times, escalation
stages), the number, direction, kind and times of their messages and notes, ratings'
scores, and the tickets' history of changes. The tickets' forum topics are in Telegram,
not in the database: they still hold the conversation and the customer's name until they
are deleted there (`ForgetReport.topics` lists them).

A customer with an active ticket is not forgotten (`ActiveTicketError`): close it first, so
that nothing more is relayed to or from them while their data goes.

The bytes go too. SQLite leaves deleted content in the file's free space and, in WAL
mode, old versions of pages in the `-wal` file, until something overwrites them: the
connection that forgets runs with `PRAGMA secure_delete = ON` (what it deletes or
overwrites is zeroed) and checkpoints the WAL with TRUNCATE afterwards. What the daemon
deleted or overwrote earlier (a finished form, a card's earlier text) was zeroed only if
its connection did the same: SQLite does when built with SQLITE_SECURE_DELETE, as
Debian's is; `ForgetReport.stale_copies_possible` says when this SQLite is not.

Safe while the daemon runs: the outbox (which has no index for rows already sent) is
searched in a read that holds no lock, and the changes are one short write transaction
that also picks up what was written meanwhile. The work uses its own connection: call
`forget()` from a worker thread in the daemon, outside any transaction of its own (it
would wait for the daemon's write lock).
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage import keys
from storage.db import BUSY_TIMEOUT_MS, utcnow

# Telegram's user and chat ids fit in 52 bits: no real account has an id from here on.
FORGOTTEN = 2**52
FORGOTTEN_NAME = "forgotten customer #{number}"
UNREACHABLE = "forgotten: their Telegram id is no longer known"
CANCELLED = "cancelled: the customer was forgotten"
# Outbox parameters that are ids and settings, never words; everything else goes.
_PLAIN_PARAMS = frozenset(
    {
        "chat_id",
        "from_chat_id",
        "message_id",
        "message_ids",
        "message_thread_id",
        "parse_mode",
        "icon_color",
        "disable_notification",
        "protect_content",
    }
)
# What Telegram's answer to a call keeps: the ids the desk used, not the message itself.
_PLAIN_RESULT = ("message_id", "message_thread_id")
# In the tickets' history, strings are kept only when they are words of the desk's own
# (statuses, priorities, "sender"); a person's words have spaces, capitals or digits.
_DESK_WORD = re.compile(r"[a-z_]{1,32}")

# Every column of the schema, table by table, and what forgetting a customer does with
# it. tests/unit/test_forget.py fails when a migration adds a table or a column that is
# not here: say whether it can hold a customer's personal data, and handle it if so.
SCHEMA: dict[str, tuple[str, str]] = {
    "customers": (
        "user_id full_name username language_code unreachable created_at updated_at",
        "their row is deleted; a stand-in row (no name) carries their tickets",
    ),
    "tickets": (
        "id customer_id status priority assignee_id subject topic_name answers group_chat_id "
        "thread_id card_message_id previous_ticket_id created_at updated_at "
        "first_response_at resolved_at closed_at "
        "sla_response_stage sla_resolution_stage sla_due_at",
        "subject, topic name and answers emptied, customer_id is the stand-in; the rest kept",
    ),
    "ticket_events": (
        "id ticket_id kind actor_id detail created_at",
        "detail keeps ids, numbers and the desk's own words; their actor_id is the stand-in",
    ),
    "messages": (
        "id ticket_id direction source_chat_id source_message_id target_chat_id "
        "target_message_id sender_id kind text media_group_id sent_at delivered_at",
        "text removed; their chat and user ids are the stand-in",
    ),
    "notes": ("id ticket_id author_id chat_id message_id text created_at", "text emptied"),
    "ratings": (
        "ticket_id customer_id score comment created_at updated_at",
        "comment removed, customer_id is the stand-in; the score kept",
    ),
    "outbox": (
        "id idempotency_key purpose method params chat_id ticket_id message_id priority "
        "state attempts not_before last_error result created_at updated_at in_topic "
        "edits_card reply_to_message_id album_id parts_done first_result",
        "params and results keep ids only, their id is the stand-in (keys too); unsent "
        "rows cancelled",
    ),
    "dead_letters": (
        "id outbox_id purpose method params chat_id ticket_id error attempts created_at "
        "resolution resolved_at",
        "params keep ids only, their id is the stand-in; open ones dropped",
    ),
    "fsm_state": ("key state data updated_at", "their form in progress is deleted"),
    "quarantined_updates": (
        "update_id raw stage error error_kind created_at replay_requested replayed_at "
        "replay_outcome",
        "updates from them, or written in their topics, are deleted",
    ),
    "processed_updates": ("update_id outcome processed_at", "no personal data: update ids"),
    "agents": (
        "user_id full_name username on_duty last_assigned_at created_at updated_at",
        "the desk's staff, not customers: untouched",
    ),
    "canned_responses": (
        "name text source updated_by created_at updated_at deleted_at",
        "the desk's own texts: untouched",
    ),
    "kv": ("key value", "the desk's own facts (markers, alerts); nothing of a customer's"),
    "schema_migrations": ("version name applied_at", "the schema's ledger"),
    "sqlite_sequence": ("name seq", "SQLite's counters"),
    "bans": ("user_id reason banned_by created_at", "the ban stays (their id), its reason emptied"),
    "banned_messages": (
        "user_id message_id kind text sent_at stored_at",
        "what they sent while banned: deleted",
    ),
}


class ForgetError(Exception):
    """The customer cannot be forgotten as asked; one sentence saying why."""


class ActiveTicketError(ForgetError):
    """The customer has a ticket that is not closed yet."""

    def __init__(self, user_id: int, active: tuple[tuple[int, str], ...]) -> None:
        self.user_id = user_id
        self.active = active
        listed = ", ".join(f"#{ticket} ({status})" for ticket, status in active)
        several = "s" if len(active) > 1 else ""
        super().__init__(
            f"customer {user_id} has {len(active)} active ticket{several} ({listed}): close "
            f"{'them' if several else 'it'} first, then forget the customer"
        )


@dataclass(frozen=True, slots=True)
class Stored:
    """What the database holds about a person, to show before forgetting them."""

    user_id: int
    name: str | None
    username: str | None
    tickets: tuple[tuple[int, str], ...]  # (number, status)
    messages: int

    @property
    def found(self) -> bool:
        return self.name is not None or bool(self.tickets)

    @property
    def active(self) -> tuple[tuple[int, str], ...]:
        return tuple(ticket for ticket in self.tickets if ticket[1] != "closed")

    def describe(self) -> str:
        """One line: who, how many tickets and messages."""
        who = self.name or "(no profile)"
        if self.username:
            who += f" (@{self.username})"
        tickets = ", ".join(f"#{number} {status}" for number, status in self.tickets)
        return (
            f"customer {self.user_id}: {who}; {len(self.tickets)} ticket(s)"
            f"{f' ({tickets})' if tickets else ''}, {self.messages} message(s)"
        )


@dataclass(frozen=True, slots=True)
class Topic:
    """A forgotten customer's ticket topic, still in the agents' group."""

    ticket_id: int
    group_chat_id: int
    thread_id: int


# The report's kinds, in the order shown, and how each is named.
KINDS = {
    "profile": "profile (name, username, language)",
    "subjects": "tickets' subjects, topic names and intake answers",
    "message_texts": "message texts",
    "notes": "internal notes' texts",
    "rating_comments": "rating comments",
    "history": "ticket history entries' details",
    "forms": "forms in progress",
    "quarantined": "quarantined updates",
    "outbox": "queued or sent calls (texts, names, Telegram's answers)",
    "cancelled": "unsent messages cancelled",
    "dead_letters": "dead letters' texts",
}


@dataclass(frozen=True, slots=True)
class ForgetReport:
    """What forgetting a customer removed and kept. It holds no name and no words (the
    user id is the admin's own): it can be shown, logged or sent as it is."""

    user_id: int
    stand_in: int | None  # the id their tickets are filed under now; None without tickets
    tickets: tuple[int, ...]  # kept, anonymised
    removed: dict[str, int] = field(default_factory=dict)  # KINDS -> how many
    topics: tuple[Topic, ...] = ()
    wal_emptied: bool = True
    stale_copies_possible: bool = False

    @property
    def found(self) -> bool:
        return any(self.removed.values()) or bool(self.tickets)

    def describe(self) -> str:
        """The report for the admin, a few lines of plain text."""
        if not self.found:
            return f"nothing is stored about user {self.user_id}"
        lines = [f"Forgot customer {self.user_id}. Removed:"]
        for kind, label in KINDS.items():
            if self.removed.get(kind):
                lines.append(f"  {label}: {self.removed[kind]}")
        if self.tickets:
            numbers = ", ".join(f"#{number}" for number in self.tickets)
            lines.append(
                f"Kept, with no name or words: {len(self.tickets)} ticket(s) ({numbers}): "
                "statuses, priorities, times, message counts and rating scores, filed under "
                f"forgotten customer #{(self.stand_in or FORGOTTEN) - FORGOTTEN} "
                f"(id {self.stand_in})."
            )
        if self.topics:
            where = ", ".join(f"#{topic.ticket_id}" for topic in self.topics)
            lines.append(
                f"Not deleted: the topics of tickets {where} in the agents' group still hold "
                "the conversation and the customer's name; delete them in Telegram."
            )
        if not self.wal_emptied:
            lines.append(
                "The database's -wal file could not be emptied now (the daemon was busy): "
                "the removed texts stay in it until its next checkpoint."
            )
        if self.stale_copies_possible:
            lines.append(
                "This SQLite does not overwrite deleted data by default: copies the daemon "
                "deleted earlier may remain in the file's free space until a VACUUM."
            )
        lines.append("Backups made before now still hold everything.")
        return "\n".join(lines)


@contextmanager
def _connect(database: Path) -> Iterator[sqlite3.Connection]:
    if not database.exists():
        raise ForgetError(f"{database}: no database here (check storage.path)")
    conn = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    try:
        conn.row_factory = sqlite3.Row
        for pragma in (
            f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}",
            "PRAGMA foreign_keys = ON",
            "PRAGMA synchronous = FULL",
            # What this connection deletes or overwrites is zeroed, not left in free space.
            "PRAGMA secure_delete = ON",
        ):
            conn.execute(pragma)
        yield conn
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()


def _check_user_id(user_id: int) -> None:
    if user_id <= 0:
        raise ForgetError(f"{user_id} is not a customer's user id (a user id is above 0)")
    if user_id >= FORGOTTEN:
        raise ForgetError(f"{user_id} is the stand-in of a customer forgotten already")


def _tickets_of(conn: sqlite3.Connection, user_id: int) -> list[sqlite3.Row]:
    return conn.execute(
        "SELECT id, status, group_chat_id, thread_id FROM tickets WHERE customer_id = ?"
        " ORDER BY id",
        (user_id,),
    ).fetchall()


def look_up(database: Path, user_id: int) -> Stored:
    """What is stored about `user_id`, to show before forgetting them; changes nothing."""
    _check_user_id(user_id)
    with _connect(database) as conn:
        conn.execute("BEGIN")
        customer = conn.execute(
            "SELECT full_name, username FROM customers WHERE user_id = ?", (user_id,)
        ).fetchone()
        tickets = _tickets_of(conn, user_id)
        messages = sum(
            conn.execute(
                "SELECT COUNT(*) FROM messages WHERE ticket_id = ?", (row["id"],)
            ).fetchone()[0]
            for row in tickets
        )
    return Stored(
        user_id=user_id,
        name=None if customer is None else customer["full_name"],
        username=None if customer is None else customer["username"],
        tickets=tuple((row["id"], row["status"]) for row in tickets),
        messages=messages,
    )


# --- finding what to change --------------------------------------------------------------


def _mentions(raw: Any, user_id: int, topics: set[tuple[int, int]]) -> bool:
    """Whether a raw update came from the user, names them, or was written in one of
    `topics` ((group, thread) of their tickets)."""
    todo = [raw]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            for name in ("id", "user_id"):
                value = item.get(name)
                if isinstance(value, int) and not isinstance(value, bool) and value == user_id:
                    return True
            chat, thread = item.get("chat"), item.get("message_thread_id")
            if isinstance(chat, dict) and (chat.get("id"), thread) in topics:
                return True
            todo.extend(item.values())
        elif isinstance(item, list):
            todo.extend(item)
    return False


def _quarantined_of(
    conn: sqlite3.Connection, user_id: int, topics: set[tuple[int, int]], after: int = -1
) -> tuple[list[int], int]:
    """The quarantined updates from the user or their topics (with an id above `after`),
    and the highest id looked at.

    Read whole: who sent an update is inside its JSON, which has no index; the table holds
    only the updates that could not be handled."""
    rows = conn.execute(
        "SELECT update_id, raw FROM quarantined_updates WHERE update_id > ? ORDER BY update_id",
        (after,),
    )
    found, last = [], after
    for update_id, raw in rows:
        last = int(update_id)
        try:
            mentions = _mentions(json.loads(raw), user_id, topics)
        except ValueError:  # not JSON after all: look for the id as a number in the text
            mentions = re.search(rf"(?<!\d){user_id}(?!\d)", raw) is not None
        if mentions:
            found.append(last)
    return found, last


def _outbox_rows(
    conn: sqlite3.Connection, user_id: int, ticket_ids: list[int], after: int = 0
) -> tuple[list[int], int]:
    """The outbox rows for the user's chat or tickets (with an id above `after`), and the
    highest id looked at.

    Rows already sent have no index by chat or ticket (the sender needs none), so the
    first look reads the outbox whole: outside any transaction that writes, so the daemon
    is not held up. The second, inside the write, reads only the rows added since."""
    marks = ", ".join("?" * len(ticket_ids)) or "NULL"
    rows = conn.execute(
        f"SELECT id FROM outbox WHERE id > ? AND (chat_id = ? OR ticket_id IN ({marks}))",
        (after, user_id, *ticket_ids),
    ).fetchall()
    last = conn.execute("SELECT MAX(id) FROM outbox").fetchone()[0]
    return [int(row[0]) for row in rows], int(last or 0)


# --- rewriting what is kept ---------------------------------------------------------------


def _swap(value: Any, user_id: int, stand_in: int) -> Any:
    """`value` with the user's id replaced by the stand-in, in lists too."""
    if isinstance(value, list):
        return [_swap(item, user_id, stand_in) for item in value]
    if isinstance(value, int) and not isinstance(value, bool) and value == user_id:
        return stand_in
    return value


def _plain_params(params: str, user_id: int, stand_in: int) -> str:
    """A call's parameters with ids and settings only: no text, caption, name or button."""
    try:
        parsed = json.loads(params)
    except ValueError:
        return "{}"
    if not isinstance(parsed, dict):
        return "{}"
    kept = {
        name: _swap(value, user_id, stand_in)
        for name, value in parsed.items()
        if name in _PLAIN_PARAMS
    }
    return json.dumps(kept)


def _plain_result(result: str | None) -> str | None:
    """Telegram's answer reduced to the ids in it (the message it returns has the text and
    the chat's name)."""
    if result is None:
        return None
    try:
        parsed = json.loads(result)
    except ValueError:
        return None

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {name: value[name] for name in _PLAIN_RESULT if name in value}
        if isinstance(value, list):
            return [plain(item) for item in value]
        return value if isinstance(value, bool | int | float) or value is None else None

    return json.dumps(plain(parsed))


def _plain_key(key: str, user_id: int, stand_in: int) -> str:
    """An idempotency key with the user's id, where it is one of its parts, replaced."""
    mine = str(user_id)
    return ":".join(str(stand_in) if part == mine else part for part in key.split(":"))


def _plain_text(text: str | None, user_id: int, stand_in: int) -> str | None:
    """An error text with the user's id replaced."""
    if text is None:
        return None
    return re.sub(rf"(?<!\d){user_id}(?!\d)", str(stand_in), text)


def _plain_detail(detail: str | None, user_id: int, stand_in: int) -> str | None:
    """A history entry's detail with numbers, ids and the desk's own words only."""
    if detail is None:
        return None
    try:
        parsed = json.loads(detail)
    except ValueError:
        return None

    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {name: plain(item) for name, item in value.items()}
        if isinstance(value, list):
            return [plain(item) for item in value]
        if isinstance(value, str):
            return value if _DESK_WORD.fullmatch(value) else None
        return _swap(value, user_id, stand_in)

    kept = plain(parsed)
    return json.dumps(kept) if kept else None


def _count(conn: sqlite3.Connection, sql: str, params: Iterable[Any]) -> int:
    return conn.execute(sql, tuple(params)).rowcount


def _next_stand_in(conn: sqlite3.Connection) -> int:
    """The next stand-in: one above the highest given so far (FORGOTTEN + 1 at first)."""
    highest = conn.execute(
        "SELECT MAX(user_id) FROM customers WHERE user_id >= ?", (FORGOTTEN,)
    ).fetchone()[0]
    return max(int(highest or 0), FORGOTTEN) + 1


def _fsm_keys(conn: sqlite3.Connection, user_id: int) -> list[str]:
    """The keys of the user's form state: aiogram's `fsm:<chat>:[<thread>:]<user>:<destiny>`,
    in their private chat (whose id is theirs), read through the primary key."""
    prefix = f"fsm:{user_id}:"
    rows = conn.execute(
        "SELECT key FROM fsm_state WHERE key >= ? AND key < ?",
        (prefix, prefix[:-1] + ";"),  # ";" follows ":": every key that starts with prefix
    ).fetchall()
    return [str(row[0]) for row in rows]


def _rewrite_tickets(
    conn: sqlite3.Connection, user_id: int, stand_in: int, ticket_ids: list[int]
) -> dict[str, int]:
    removed = dict.fromkeys(("subjects", "message_texts", "notes", "rating_comments", "history"), 0)
    now = utcnow()
    for ticket_id in ticket_ids:
        removed["subjects"] += _count(
            conn,
            "UPDATE tickets SET customer_id = ?, subject = '', topic_name = NULL, answers = '[]',"
            " updated_at = ? WHERE id = ?",
            (stand_in, now, ticket_id),
        )
        removed["message_texts"] += _count(
            conn,
            "UPDATE messages SET text = NULL WHERE ticket_id = ? AND text IS NOT NULL",
            (ticket_id,),
        )
        conn.execute(
            """
            UPDATE messages SET
                source_chat_id = CASE source_chat_id WHEN :user THEN :stand_in
                                 ELSE source_chat_id END,
                target_chat_id = CASE target_chat_id WHEN :user THEN :stand_in
                                 ELSE target_chat_id END,
                sender_id = CASE sender_id WHEN :user THEN :stand_in ELSE sender_id END
            WHERE ticket_id = :ticket
              AND (source_chat_id = :user OR target_chat_id = :user OR sender_id = :user)
            """,
            {"user": user_id, "stand_in": stand_in, "ticket": ticket_id},
        )
        removed["notes"] += _count(
            conn, "UPDATE notes SET text = '' WHERE ticket_id = ? AND text != ''", (ticket_id,)
        )
        removed["rating_comments"] += _count(
            conn,
            "UPDATE ratings SET comment = NULL WHERE ticket_id = ? AND comment IS NOT NULL",
            (ticket_id,),
        )
        conn.execute(
            "UPDATE ratings SET customer_id = ? WHERE ticket_id = ? AND customer_id = ?",
            (stand_in, ticket_id, user_id),
        )
        events = conn.execute(
            "SELECT id, actor_id, detail FROM ticket_events WHERE ticket_id = ? ORDER BY id",
            (ticket_id,),
        ).fetchall()
        for event in events:
            detail = _plain_detail(event["detail"], user_id, stand_in)
            actor = _swap(event["actor_id"], user_id, stand_in)
            if detail != event["detail"] or actor != event["actor_id"]:
                conn.execute(
                    "UPDATE ticket_events SET actor_id = ?, detail = ? WHERE id = ?",
                    (actor, detail, event["id"]),
                )
                removed["history"] += detail != event["detail"]
    return removed


def _rewrite_outbox(
    conn: sqlite3.Connection, user_id: int, stand_in: int, row_ids: Iterable[int]
) -> dict[str, int]:
    removed = dict.fromkeys(("outbox", "cancelled", "dead_letters"), 0)
    now = utcnow()
    for row_id in sorted(set(row_ids)):
        row = conn.execute("SELECT * FROM outbox WHERE id = ?", (row_id,)).fetchone()
        if row is None:
            continue  # gone meanwhile (a superseded card edit)
        unsent = row["state"] in ("pending", "sending")
        conn.execute(
            """
            UPDATE outbox SET idempotency_key = ?, params = ?, chat_id = ?, result = ?,
                first_result = ?, last_error = ?, state = ?, updated_at = ?
            WHERE id = ?
            """,
            (
                _plain_key(row["idempotency_key"], user_id, stand_in),
                _plain_params(row["params"], user_id, stand_in),
                _swap(row["chat_id"], user_id, stand_in),
                _plain_result(row["result"]),
                _plain_result(row["first_result"]),
                CANCELLED if unsent else _plain_text(row["last_error"], user_id, stand_in),
                "dead" if unsent else row["state"],
                now,
                row_id,
            ),
        )
        removed["outbox"] += 1
        removed["cancelled"] += unsent
        letters = conn.execute(
            "SELECT id, params, chat_id, error, resolution FROM dead_letters WHERE outbox_id = ?",
            (row_id,),
        ).fetchall()
        for letter in letters:
            conn.execute(
                """
                UPDATE dead_letters SET params = ?, chat_id = ?, error = ?,
                    resolution = COALESCE(resolution, 'dropped'),
                    resolved_at = COALESCE(resolved_at, ?)
                WHERE id = ?
                """,
                (
                    _plain_params(letter["params"], user_id, stand_in),
                    _swap(letter["chat_id"], user_id, stand_in),
                    _plain_text(letter["error"], user_id, stand_in),
                    now,
                    letter["id"],
                ),
            )
            removed["dead_letters"] += 1
    return removed


def _checkpoint(conn: sqlite3.Connection) -> bool:
    """Copy the WAL into the database and empty it; False if a reader held it."""
    busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return bool(busy == 0 and frames == copied)


def _secure_delete_by_default() -> bool:
    probe = sqlite3.connect(":memory:")
    try:
        return bool(probe.execute("PRAGMA secure_delete").fetchone()[0])
    finally:
        probe.close()


@dataclass(slots=True)
class _Look:
    """What the read without a lock found: the user's tickets, and where it stopped."""

    tickets: list[sqlite3.Row]
    outbox_ids: list[int]
    outbox_seen: int
    quarantined: list[int]
    quarantine_seen: int

    @property
    def ticket_ids(self) -> list[int]:
        return [int(row["id"]) for row in self.tickets]

    @property
    def topics(self) -> set[tuple[int, int]]:
        return {
            (row["group_chat_id"], row["thread_id"]) for row in self.tickets if row["thread_id"]
        }


def _look(conn: sqlite3.Connection, user_id: int) -> _Look:
    """The slow part, without a lock: the outbox rows and the quarantined updates."""
    tickets = _tickets_of(conn, user_id)
    look = _Look(tickets, [], 0, [], -1)
    look.outbox_ids, look.outbox_seen = _outbox_rows(conn, user_id, look.ticket_ids)
    look.quarantined, look.quarantine_seen = _quarantined_of(conn, user_id, look.topics)
    return look


def _forget(
    conn: sqlite3.Connection, user_id: int, look: _Look
) -> tuple[int | None, dict[str, int]]:
    """The changes, inside the write transaction: (the stand-in, what was removed)."""
    outbox_ids = look.outbox_ids + _outbox_rows(conn, user_id, look.ticket_ids, look.outbox_seen)[0]
    quarantined = (
        look.quarantined + _quarantined_of(conn, user_id, look.topics, look.quarantine_seen)[0]
    )
    for update_id in quarantined:  # what the desk passed on of them (a note names them)
        for part in ("copy", "note"):
            row = conn.execute(
                "SELECT id FROM outbox WHERE idempotency_key = ?",
                (keys.quarantined(update_id, part),),
            ).fetchone()
            if row is not None:
                outbox_ids.append(int(row[0]))

    removed = dict.fromkeys(KINDS, 0)
    # A stand-in of their own for what is kept (tickets, the outbox's rows and keys), so
    # that nothing of two forgotten customers' collides.
    stand_in = _next_stand_in(conn) if look.tickets or outbox_ids else None
    if stand_in is not None:
        now = utcnow()
        conn.execute(
            "INSERT INTO customers (user_id, full_name, username, language_code, unreachable,"
            " created_at, updated_at) VALUES (?, ?, NULL, NULL, ?, ?, ?)",
            (stand_in, FORGOTTEN_NAME.format(number=stand_in - FORGOTTEN), UNREACHABLE, now, now),
        )
        removed |= _rewrite_tickets(conn, user_id, stand_in, look.ticket_ids)
        removed |= _rewrite_outbox(conn, user_id, stand_in, outbox_ids)
    removed["profile"] = _count(conn, "DELETE FROM customers WHERE user_id = ?", (user_id,))
    removed["message_texts"] += _count(
        conn, "DELETE FROM banned_messages WHERE user_id = ?", (user_id,)
    )
    conn.execute("UPDATE bans SET reason = NULL WHERE user_id = ?", (user_id,))
    for key in _fsm_keys(conn, user_id):
        removed["forms"] += _count(conn, "DELETE FROM fsm_state WHERE key = ?", (key,))
    for update_id in quarantined:
        removed["quarantined"] += _count(
            conn, "DELETE FROM quarantined_updates WHERE update_id = ?", (update_id,)
        )
    return stand_in, removed


ATTEMPTS = 3  # looks before giving up on a customer whose tickets keep changing


def forget(database: Path, user_id: int) -> ForgetReport:
    """Forget the customer `user_id` in the database at `database` (see the module's
    docstring); raise ActiveTicketError while they have a ticket that is not closed."""
    _check_user_id(user_id)
    try:
        with _connect(database) as conn:
            for _attempt in range(ATTEMPTS):
                look = _look(conn, user_id)
                conn.execute("BEGIN IMMEDIATE")
                tickets = _tickets_of(conn, user_id)
                active = tuple(
                    (int(row["id"]), str(row["status"]))
                    for row in tickets
                    if row["status"] != "closed"
                )
                if active:
                    raise ActiveTicketError(user_id, active)
                if [int(row["id"]) for row in tickets] == look.ticket_ids:
                    break
                conn.execute("ROLLBACK")  # a ticket came meanwhile: look again
            else:
                raise ForgetError(f"customer {user_id}'s tickets kept changing: try again")
            stand_in, removed = _forget(conn, user_id, look)
            conn.execute("COMMIT")
            wal_emptied = _checkpoint(conn)
    except sqlite3.OperationalError as exc:  # locked for too long, read-only, full, ...
        raise ForgetError(f"{database}: {exc}; nothing was changed, try again") from None
    return ForgetReport(
        user_id=user_id,
        stand_in=stand_in,
        tickets=tuple(look.ticket_ids),
        removed=removed,
        topics=tuple(
            Topic(int(row["id"]), int(row["group_chat_id"]), int(row["thread_id"]))
            for row in look.tickets
            if row["thread_id"] is not None
        ),
        wal_emptied=wal_emptied,
        stale_copies_possible=not _secure_delete_by_default(),
    )
