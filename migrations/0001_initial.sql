-- TopicDesk's first schema: customers, tickets, relayed messages, the outbox,
-- the processed-update ledger and the FSM state of the intake form.
-- Times are ISO 8601 strings in UTC.

CREATE TABLE customers (
    user_id        INTEGER PRIMARY KEY,          -- Telegram user id, also their private chat id
    full_name      TEXT NOT NULL,
    username       TEXT,
    language_code  TEXT,
    unreachable    TEXT,                         -- why we cannot write to them (blocked...), or NULL
    created_at     TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);

CREATE TABLE tickets (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,   -- the ticket number customers see
    customer_id      INTEGER NOT NULL REFERENCES customers (user_id),
    status           TEXT NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed')),
    subject          TEXT NOT NULL,                       -- the topic's name
    answers          TEXT NOT NULL,                       -- JSON: [[question id, label, answer]]
    group_chat_id    INTEGER NOT NULL,
    thread_id        INTEGER,                             -- known once the topic exists
    card_message_id  INTEGER,
    created_at       TEXT NOT NULL,                       -- the date Telegram stamped on the customer's message
    updated_at       TEXT NOT NULL,
    closed_at        TEXT
);
-- One open ticket per customer: two racing messages cannot open two.
CREATE UNIQUE INDEX tickets_one_open_per_customer ON tickets (customer_id) WHERE status = 'open';
CREATE UNIQUE INDEX tickets_by_topic ON tickets (group_chat_id, thread_id) WHERE thread_id IS NOT NULL;

CREATE TABLE ticket_events (
    id          INTEGER PRIMARY KEY,
    ticket_id   INTEGER NOT NULL REFERENCES tickets (id),
    kind        TEXT NOT NULL,            -- opened, closed, reopened, ...
    actor_id    INTEGER,
    detail      TEXT,                     -- JSON
    created_at  TEXT NOT NULL
);
CREATE INDEX ticket_events_by_ticket ON ticket_events (ticket_id, id);

-- Every relayed message: the customer's or agent's original and the copy we made.
CREATE TABLE messages (
    id                 INTEGER PRIMARY KEY,
    ticket_id          INTEGER NOT NULL REFERENCES tickets (id),
    direction          TEXT NOT NULL CHECK (direction IN ('to_agents', 'to_customer')),
    source_chat_id     INTEGER NOT NULL,
    source_message_id  INTEGER NOT NULL,
    target_chat_id     INTEGER,              -- known once delivered
    target_message_id  INTEGER,
    sender_id          INTEGER,
    kind               TEXT NOT NULL,        -- text, photo, document, ...
    text               TEXT,                 -- text or caption
    media_group_id     TEXT,
    sent_at            TEXT NOT NULL,        -- Telegram's date of the original
    delivered_at       TEXT,
    UNIQUE (source_chat_id, source_message_id)
);
CREATE INDEX messages_by_ticket ON messages (ticket_id, id);
CREATE INDEX messages_by_target ON messages (target_chat_id, target_message_id);
CREATE INDEX messages_by_album ON messages (source_chat_id, media_group_id)
    WHERE media_group_id IS NOT NULL;

-- What we owe Telegram. Written in the same transaction as the change that caused it.
CREATE TABLE outbox (
    id               INTEGER PRIMARY KEY,
    idempotency_key  TEXT NOT NULL UNIQUE,
    purpose          TEXT NOT NULL,          -- topic, card, relay, album, notice, ...
    method           TEXT NOT NULL,          -- Bot API method, e.g. copyMessage
    params           TEXT NOT NULL,          -- JSON parameters
    chat_id          INTEGER NOT NULL,       -- the chat whose budget this spends
    ticket_id        INTEGER REFERENCES tickets (id),
    message_id       INTEGER REFERENCES messages (id),   -- the relay link to complete
    priority         INTEGER NOT NULL DEFAULT 0,         -- lower goes first within a group
    state            TEXT NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'sending', 'sent', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    not_before       TEXT NOT NULL,          -- earliest time to (re)try
    last_error       TEXT,
    result           TEXT,                   -- JSON of Telegram's answer
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
);
CREATE INDEX outbox_pending ON outbox (chat_id, id) WHERE state IN ('pending', 'sending');

-- Updates whose effects have committed; a redelivered update is skipped.
CREATE TABLE processed_updates (
    update_id     INTEGER PRIMARY KEY,
    outcome       TEXT NOT NULL CHECK (outcome IN ('handled', 'ignored', 'failed')),
    processed_at  TEXT NOT NULL
);
CREATE INDEX processed_updates_by_time ON processed_updates (processed_at);

-- aiogram FSM state (the intake form), keyed like aiogram's DefaultKeyBuilder.
CREATE TABLE fsm_state (
    key         TEXT PRIMARY KEY,
    state       TEXT,
    data        TEXT NOT NULL DEFAULT '{}',
    updated_at  TEXT NOT NULL
);

-- Small facts the daemon keeps between runs (e.g. a group's id after an upgrade).
CREATE TABLE kv (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);
