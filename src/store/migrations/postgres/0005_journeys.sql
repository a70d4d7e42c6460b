-- Journey rules and durable timers (issue 15): the PostgreSQL twin of the
-- SQLite migration of the same number. Firing claims due rows with
-- FOR UPDATE SKIP LOCKED under the program lock, so each fires once.
CREATE TABLE journey_timers (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    program             TEXT   NOT NULL,
    case_id             TEXT   NOT NULL,
    rule                TEXT   NOT NULL,
    trigger_milestone   TEXT   NOT NULL,
    trigger_occurrence  TEXT   NOT NULL,
    trigger_occurred_at TEXT   NOT NULL,
    connector           TEXT   NOT NULL,
    armed_at            BIGINT NOT NULL,
    deadline_at         BIGINT NOT NULL,
    status              BIGINT NOT NULL,    -- 0 armed, 1 stalled, 2 cleared, 3 cancelled, 4 resumed
    fired_at            BIGINT,
    settled_at          BIGINT,
    settled_by          TEXT,
    stalled_webhook     TEXT,
    resumed_webhook     TEXT,
    UNIQUE (program, case_id, rule, trigger_milestone, trigger_occurrence)
);
CREATE INDEX journey_timers_due ON journey_timers (program, deadline_at) WHERE status = 0;
CREATE INDEX journey_timers_next ON journey_timers (deadline_at) WHERE status = 0;
CREATE INDEX journey_timers_open ON journey_timers (program, rule, deadline_at) WHERE status = 1;
CREATE INDEX journey_timers_case ON journey_timers (program, case_id, rule);
