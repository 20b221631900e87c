-- The escalation policy (bot/services/sla.py) and /stats (storage/stats.py).
--
-- Each ticket runs two clocks from its receipt (created_at): first response and
-- resolution. A scheduler fires a warning, then a breach, on each, at most once: the
-- furthest stage fired is stored per clock, and the next instant anything is due is
-- kept in one column, indexed, so one task can read what is due without a timer per
-- ticket, and a restart fires nothing twice.

-- The furthest stage fired on each clock: NULL (none), 'warning' or 'breach' (a breach
-- implies the warning). /stats counts the breaches from these.
ALTER TABLE tickets ADD COLUMN sla_response_stage TEXT
    CHECK (sla_response_stage IN ('warning', 'breach'));
ALTER TABLE tickets ADD COLUMN sla_resolution_stage TEXT
    CHECK (sla_resolution_stage IN ('warning', 'breach'));
-- When the next warning or breach is due (UTC, ISO 8601, as every stored time), NULL when
-- nothing more can fire: no policy, both clocks stopped or breached. Existing tickets
-- start with NULL; the daemon computes it for the active ones at start.
ALTER TABLE tickets ADD COLUMN sla_due_at TEXT;

-- The scheduler: `WHERE sla_due_at IS NOT NULL AND sla_due_at <= ? ORDER BY sla_due_at`.
-- Only tickets with something still due are in it (active ones, and for a moment a
-- closed one whose late breach is still to be recorded), so it stays small.
CREATE INDEX tickets_sla_due ON tickets (sla_due_at) WHERE sla_due_at IS NOT NULL;

-- /stats: the tickets received in a period (today, 7 or 30 days), by receipt time.
CREATE INDEX tickets_by_created ON tickets (created_at);
