-- Journey rules and durable timers (issue 15).

-- One timer per (case, rule, trigger milestone): armed by the chunk that
-- stored the trigger, settled by the chunk that stored an awaited or a
-- cancelling milestone, fired by the wall clock. Armed, cleared and fired in
-- the same transaction as the state (or the outbox row) that caused it.
CREATE TABLE journey_timers (
    id                 INTEGER PRIMARY KEY,
    program            TEXT    NOT NULL,
    case_id            TEXT    NOT NULL,
    rule               TEXT    NOT NULL,
    trigger_milestone  TEXT    NOT NULL,
    trigger_occurrence TEXT    NOT NULL,
    trigger_occurred_at TEXT   NOT NULL,   -- as the milestone says (date or RFC 3339)
    connector          TEXT    NOT NULL,   -- of the file that armed it (subscriber filters)
    armed_at           INTEGER NOT NULL,   -- unix ms: when hubsync learned the trigger
    deadline_at        INTEGER NOT NULL,   -- unix ms
    status             INTEGER NOT NULL,   -- 0 armed, 1 stalled, 2 cleared, 3 cancelled, 4 resumed
    fired_at           INTEGER,            -- unix ms: when the stall was found
    settled_at         INTEGER,            -- unix ms: cleared, cancelled or resumed
    settled_by         TEXT,               -- the milestone code that settled it
    stalled_webhook    TEXT,               -- the journey.stalled message; NULL: not sent (horizon, no subscriber)
    resumed_webhook    TEXT,
    UNIQUE (program, case_id, rule, trigger_milestone, trigger_occurrence)
);
-- The clock's one question: what is due next.
CREATE INDEX journey_timers_due ON journey_timers (program, deadline_at) WHERE status = 0;
CREATE INDEX journey_timers_next ON journey_timers (deadline_at) WHERE status = 0;
-- Open stalls by program and rule, oldest first.
CREATE INDEX journey_timers_open ON journey_timers (program, rule, deadline_at) WHERE status = 1;
CREATE INDEX journey_timers_case ON journey_timers (program, case_id, rule);
