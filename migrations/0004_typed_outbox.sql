-- The outbox's contract made explicit (see storage/outbox.py): the references resolved
-- at send time and the progress of a split send get columns of their own instead of
-- `_`-keys inside the request's parameters, and `purpose` is checked like `state`.

ALTER TABLE outbox ADD COLUMN in_topic INTEGER NOT NULL DEFAULT 0 CHECK (in_topic IN (0, 1));
ALTER TABLE outbox ADD COLUMN edits_card INTEGER NOT NULL DEFAULT 0
    CHECK (edits_card IN (0, 1));
ALTER TABLE outbox ADD COLUMN reply_to_message_id INTEGER;  -- in params' from_chat_id
ALTER TABLE outbox ADD COLUMN album_id TEXT;                -- media_group_id to copy whole
ALTER TABLE outbox ADD COLUMN parts_done INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN first_result TEXT;            -- JSON: the first part's answer

UPDATE outbox SET
    in_topic = COALESCE(json_extract(params, '$._topic'), 0) != 0,
    edits_card = COALESCE(json_extract(params, '$._card'), 0) != 0,
    reply_to_message_id = json_extract(params, '$._reply_to'),
    album_id = json_extract(params, '$._album'),
    parts_done = COALESCE(json_extract(params, '$._parts_done'), 0),
    first_result = json(json_extract(params, '$._first_result')),
    params = json_remove(params, '$._topic', '$._card', '$._reply_to', '$._album',
                         '$._parts_done', '$._first_result');

-- A CHECK cannot be added to an existing column; these triggers are that CHECK.
CREATE TRIGGER outbox_purpose_insert BEFORE INSERT ON outbox
WHEN NEW.purpose NOT IN ('topic', 'card', 'card_edit', 'relay', 'album', 'notice',
                         'topic_close', 'topic_reopen', 'topic_probe')
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: outbox.purpose');
END;
CREATE TRIGGER outbox_purpose_update BEFORE UPDATE OF purpose ON outbox
WHEN NEW.purpose NOT IN ('topic', 'card', 'card_edit', 'relay', 'album', 'notice',
                         'topic_close', 'topic_reopen', 'topic_probe')
BEGIN
    SELECT RAISE(ABORT, 'CHECK constraint failed: outbox.purpose');
END;

-- The sender's next row of a ticket in a group (round-robin between tickets), and of
-- a private chat: an index seek, however long the queue.
CREATE INDEX outbox_lanes ON outbox (chat_id, ticket_id, priority, id)
    WHERE state IN ('pending', 'sending');
-- Coalescing and "is its topic/card still coming?" look up a ticket's unsent rows.
CREATE INDEX outbox_unsent_by_ticket ON outbox (ticket_id, purpose)
    WHERE state IN ('pending', 'sending');
