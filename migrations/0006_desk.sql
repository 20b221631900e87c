-- topicdesk: foreign_keys off
-- The desk: a ticket's status goes open → pending (waiting on the customer) → resolved →
-- closed, it has a priority and an assignee, and its first response and resolution are
-- timed. Agents, internal notes, canned responses and ratings get tables of their own.
--
-- `tickets.status` had CHECK (status IN ('open', 'closed')), which SQLite cannot alter:
-- the table is rebuilt (the runner turns foreign keys off for this file and checks every
-- reference before committing). A customer has one active (not closed) ticket unless
-- `tickets.new_closes_current` is off, so that rule moves from a unique index to the code.

CREATE TABLE tickets_new (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,   -- the ticket number customers see
    customer_id         INTEGER NOT NULL REFERENCES customers (user_id),
    status              TEXT NOT NULL DEFAULT 'open'
                        CHECK (status IN ('open', 'pending', 'resolved', 'closed')),
    priority            TEXT NOT NULL DEFAULT 'normal'
                        CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    assignee_id         INTEGER,                              -- an agent's user id
    subject             TEXT NOT NULL,                        -- the first answer
    topic_name          TEXT,            -- the name last asked of Telegram for the topic
    answers             TEXT NOT NULL,                        -- JSON: [[question id, label, answer]]
    group_chat_id       INTEGER NOT NULL,
    thread_id           INTEGER,                              -- known once the topic exists
    card_message_id     INTEGER,
    previous_ticket_id  INTEGER REFERENCES tickets (id),      -- the closed ticket this one follows
    created_at          TEXT NOT NULL,   -- Telegram's date on the customer's first message
    updated_at          TEXT NOT NULL,
    first_response_at   TEXT,            -- the first agent reply the customer received
    resolved_at         TEXT,
    closed_at           TEXT
);

INSERT INTO tickets_new (
    id, customer_id, status, subject, answers, group_chat_id, thread_id, card_message_id,
    created_at, updated_at, first_response_at, resolved_at, closed_at)
SELECT
    t.id, t.customer_id, t.status, t.subject, t.answers, t.group_chat_id, t.thread_id,
    t.card_message_id, t.created_at, t.updated_at,
    (SELECT MIN(m.delivered_at) FROM messages m
     WHERE m.ticket_id = t.id AND m.direction = 'to_customer' AND m.delivered_at IS NOT NULL),
    t.closed_at, t.closed_at
FROM tickets t;

-- Ticket numbers keep counting from where they were.
UPDATE sqlite_sequence
SET seq = MAX(seq, COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'tickets'), 0))
WHERE name = 'tickets_new';

DROP TABLE tickets;
ALTER TABLE tickets_new RENAME TO tickets;

CREATE INDEX tickets_active_by_customer ON tickets (customer_id, id)
    WHERE status != 'closed';
CREATE UNIQUE INDEX tickets_by_topic ON tickets (group_chat_id, thread_id)
    WHERE thread_id IS NOT NULL;
CREATE INDEX tickets_active_with_topic ON tickets (id)
    WHERE status != 'closed' AND thread_id IS NOT NULL;
-- /queue: active tickets nobody has answered yet, oldest first.
CREATE INDEX tickets_unanswered ON tickets (created_at)
    WHERE status != 'closed' AND first_response_at IS NULL;
-- /mine, least-loaded assignment: an agent's active tickets.
CREATE INDEX tickets_by_assignee ON tickets (assignee_id, id)
    WHERE status != 'closed' AND assignee_id IS NOT NULL;
CREATE INDEX tickets_by_customer ON tickets (customer_id, id);

-- The people who answer tickets, as the desk has met them.
CREATE TABLE agents (
    user_id           INTEGER PRIMARY KEY,
    full_name         TEXT NOT NULL,
    username          TEXT,
    on_duty           INTEGER NOT NULL DEFAULT 1 CHECK (on_duty IN (0, 1)),
    last_assigned_at  TEXT,                -- round-robin takes the longest-waiting agent
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL
);

-- Internal notes: what agents write for each other; never sent to the customer.
CREATE TABLE notes (
    id          INTEGER PRIMARY KEY,
    ticket_id   INTEGER NOT NULL REFERENCES tickets (id),
    author_id   INTEGER NOT NULL,
    chat_id     INTEGER NOT NULL,
    message_id  INTEGER NOT NULL,
    text        TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    UNIQUE (chat_id, message_id)
);
CREATE INDEX notes_by_ticket ON notes (ticket_id, id);

-- Canned responses, seeded from the config and managed by admins. A deleted one keeps
-- its row (deleted_at) so that seeding from the config does not bring it back.
CREATE TABLE canned_responses (
    name        TEXT PRIMARY KEY,
    text        TEXT NOT NULL,
    source      TEXT NOT NULL CHECK (source IN ('config', 'admin')),
    updated_by  INTEGER,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    deleted_at  TEXT
);

-- The customer's rating of a resolved or closed ticket; a second rating replaces the first.
CREATE TABLE ratings (
    ticket_id    INTEGER PRIMARY KEY REFERENCES tickets (id),
    customer_id  INTEGER NOT NULL,
    score        INTEGER NOT NULL CHECK (score BETWEEN 1 AND 5),
    comment      TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);

-- The new kinds of outgoing work (storage.outbox.Purpose).
DROP TRIGGER outbox_purpose_insert;
DROP TRIGGER outbox_purpose_update;
CREATE TRIGGER outbox_purpose_insert BEFORE INSERT ON outbox
WHEN NEW.purpose NOT IN ('topic', 'card', 'card_edit', 'relay', 'album', 'notice',
                         'topic_close', 'topic_reopen', 'topic_probe',
                         'topic_edit', 'card_pin', 'edit', 'reaction')
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: outbox.purpose');
END;
CREATE TRIGGER outbox_purpose_update BEFORE UPDATE OF purpose ON outbox
WHEN NEW.purpose NOT IN ('topic', 'card', 'card_edit', 'relay', 'album', 'notice',
                         'topic_close', 'topic_reopen', 'topic_probe',
                         'topic_edit', 'card_pin', 'edit', 'reaction')
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: outbox.purpose');
END;
