-- Delivery you can trust (issue 6): subscriber state, coalescing keys,
-- redacted response excerpts, and indexes for replay, retention and the
-- admin API.

-- Operator-visible state of a subscriber. A row exists only once something
-- happened to it. `disabled_*` is set by a 410 Gone and cleared by
-- `hubsync enable`, the admin API, or a change of the configured URL.
-- `parked_until` is set while the circuit breaker is open.
CREATE TABLE subscriber_state (
    subscriber      TEXT    PRIMARY KEY,
    disabled_at     INTEGER,             -- unix ms; NULL when enabled
    disabled_reason TEXT,
    disabled_url    TEXT,                -- the URL that answered 410
    parked_until    INTEGER,             -- unix ms of the next probe; NULL when closed
    parked_reason   TEXT
) WITHOUT ROWID;

-- The milestone key (hash of program, case, milestone, occurrence): updates
-- with the same key supersede each other, which is what coalescing collapses.
-- NULL on rows written before this migration (never coalesced).
ALTER TABLE outbox ADD COLUMN key_hash INTEGER;

-- deliveries.status gains 3 = coalesced (superseded by a later update of the
-- same milestone key while the subscriber was down; never sent).

-- A capped, redacted excerpt of a failed response body.
ALTER TABLE attempts ADD COLUMN response_excerpt TEXT;

CREATE INDEX outbox_case ON outbox (program, case_id, seq);
CREATE INDEX outbox_created ON outbox (created_at);
CREATE INDEX deliveries_failed ON deliveries (subscriber, pos) WHERE status = 2;
