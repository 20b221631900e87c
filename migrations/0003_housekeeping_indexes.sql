-- Indexes for the housekeeping and reconciliation queries (bot/housekeeping/, through
-- storage/housekeeping.py), so that none of them reads a whole table as the history grows.
-- benchmarks/bigdb.py times and explains every one of them on a desk of 100,000 tickets;
-- tests/unit/test_query_plans.py checks their plans. The outbox's own indexes are in 0004.

-- housekeeping.undelivered_replies: the dead letters of the last 7 days (created_at >= ?).
CREATE INDEX dead_letters_by_time ON dead_letters (created_at);

-- housekeeping.undelivered_replies: the latest dead letter of each outbox row found
-- (MAX(id) WHERE outbox_id = ?). Also what the foreign key from dead_letters looks up
-- when an outbox row is deleted (outbox.supersede).
CREATE INDEX dead_letters_by_outbox ON dead_letters (outbox_id);

-- housekeeping.open_tickets_with_topic (the topic probes): the open tickets that have a
-- topic, in order, without reading the closed ones.
CREATE INDEX tickets_open_with_topic ON tickets (id)
    WHERE status = 'open' AND thread_id IS NOT NULL;
