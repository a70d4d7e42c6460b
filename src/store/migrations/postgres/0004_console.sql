-- The operator console (issue 17): the PostgreSQL twin of the SQLite
-- migration of the same number.

-- Every console action (replay, re-enable, login and logout), durable. No
-- PHI: targets are subscriber names, webhook ids and time ranges.
CREATE TABLE console_audit (
    id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at       BIGINT NOT NULL,           -- unix ms
    operator TEXT   NOT NULL,
    action   TEXT   NOT NULL,           -- login | logout | replay | enable
    target   TEXT   NOT NULL,
    detail   TEXT   NOT NULL
);

-- A file's deltas (the file page), and attempts of the last day (failure rates).
CREATE INDEX outbox_file ON outbox (file_id, pos);
CREATE INDEX attempts_at ON attempts (at);
