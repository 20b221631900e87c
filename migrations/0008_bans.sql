-- Banned customers (/ban, /unban in bot/handlers/admin.py).
--
-- A banned customer's messages are never relayed: they are kept in banned_messages, so
-- nothing they wrote is lost, and they get one note per ban (its outbox key names the
-- ban's created_at, so a ban lifted and given again notes them again).
CREATE TABLE bans (
    user_id    INTEGER PRIMARY KEY,
    reason     TEXT,
    banned_by  INTEGER,
    created_at TEXT NOT NULL
);

-- What a banned customer sent, in order; one row per Telegram message.
CREATE TABLE banned_messages (
    user_id     INTEGER NOT NULL,
    message_id  INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    text        TEXT,
    sent_at     TEXT NOT NULL,
    stored_at   TEXT NOT NULL,
    PRIMARY KEY (user_id, message_id)
);
