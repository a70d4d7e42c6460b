-- Delivery you can trust (issue 6): the PostgreSQL twin of the SQLite
-- migration of the same number. Subscriber state, coalescing keys, redacted
-- response excerpts, and indexes for replay, retention and the admin API.

-- Operator-visible state of a subscriber: disabled by a 410 Gone, or parked
-- by the circuit breaker. A row exists only once something happened to it.
CREATE TABLE subscriber_state (
    subscriber      TEXT   PRIMARY KEY,
    disabled_at     BIGINT,
    disabled_reason TEXT,
    disabled_url    TEXT,
    parked_until    BIGINT,
    parked_reason   TEXT
);

-- The milestone key hash: updates with the same key supersede each other,
-- which is what coalescing collapses. NULL on older rows (never coalesced).
ALTER TABLE outbox ADD COLUMN key_hash BIGINT;

-- deliveries.status gains 3 = coalesced.

-- A capped, redacted excerpt of a failed response body.
ALTER TABLE attempts ADD COLUMN response_excerpt TEXT;

CREATE INDEX outbox_case ON outbox (program, case_id, seq);
CREATE INDEX outbox_created ON outbox (created_at);
CREATE INDEX deliveries_failed ON deliveries (subscriber, pos) WHERE status = 2;
