-- What could not be delivered: kept for an admin to review, retry or drop, never lost.

CREATE TABLE dead_letters (
    id           INTEGER PRIMARY KEY,
    outbox_id    INTEGER NOT NULL REFERENCES outbox (id),
    purpose      TEXT NOT NULL,
    method       TEXT NOT NULL,
    params       TEXT NOT NULL,            -- JSON, as it was queued
    chat_id      INTEGER NOT NULL,
    ticket_id    INTEGER REFERENCES tickets (id),
    error        TEXT NOT NULL,            -- Telegram's description, or why we gave up
    attempts     INTEGER NOT NULL,
    created_at   TEXT NOT NULL,
    resolution   TEXT CHECK (resolution IN ('retried', 'dropped')),
    resolved_at  TEXT
);
CREATE INDEX dead_letters_open ON dead_letters (id) WHERE resolution IS NULL;
