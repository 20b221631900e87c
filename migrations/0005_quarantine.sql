-- Updates that could not be parsed or handled: kept raw with their error, never lost, and
-- replayable (`topicdesk updates replay`). The ledger learns the outcome 'quarantined'.

CREATE TABLE quarantined_updates (
    update_id         INTEGER PRIMARY KEY,
    raw               TEXT NOT NULL,             -- the update's JSON exactly as received
    stage             TEXT NOT NULL CHECK (stage IN ('parse', 'kind', 'handler')),
    error             TEXT NOT NULL,             -- why, secrets removed
    error_kind        TEXT NOT NULL,             -- reported to the admins once per kind
    created_at        TEXT NOT NULL,
    replay_requested  TEXT,                      -- set by `topicdesk updates replay`
    replayed_at       TEXT,
    replay_outcome    TEXT CHECK (replay_outcome IN ('handled', 'ignored', 'quarantined'))
);
CREATE INDEX quarantined_updates_to_replay ON quarantined_updates (update_id)
    WHERE replay_requested IS NOT NULL;

-- The ledger's CHECK gains 'quarantined' (a CHECK cannot be altered: the table is rebuilt;
-- nothing refers to it).
CREATE TABLE processed_updates_new (
    update_id     INTEGER PRIMARY KEY,
    outcome       TEXT NOT NULL
                  CHECK (outcome IN ('handled', 'ignored', 'failed', 'quarantined')),
    processed_at  TEXT NOT NULL
);
INSERT INTO processed_updates_new SELECT update_id, outcome, processed_at FROM processed_updates;
DROP TABLE processed_updates;
ALTER TABLE processed_updates_new RENAME TO processed_updates;
CREATE INDEX processed_updates_by_time ON processed_updates (processed_at);
