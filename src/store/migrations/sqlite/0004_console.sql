-- The operator console (issue 17): who did what, and indexes for its pages.

-- Every console action (replay, re-enable, login and logout), durable: who
-- (the name the operator gave at login), what, on which target, when. No PHI:
-- targets are subscriber names, webhook ids and time ranges.
CREATE TABLE console_audit (
    id       INTEGER PRIMARY KEY,
    at       INTEGER NOT NULL,          -- unix ms
    operator TEXT    NOT NULL,
    action   TEXT    NOT NULL,          -- login | logout | replay | enable
    target   TEXT    NOT NULL,          -- subscriber name, or '' for login/logout
    detail   TEXT    NOT NULL           -- what was asked and what it did
);

-- A file's deltas (the file page), and attempts of the last day (failure
-- rates). Both columns grow with time, so these indexes are appended to.
CREATE INDEX outbox_file ON outbox (file_id, pos);
CREATE INDEX attempts_at ON attempts (at);
