-- hubsync schema, SQLite backend.

-- The ledger: one row per (connector, file content). Its progress is committed
-- in the same transaction as the state and outbox rows a chunk produced.
CREATE TABLE files (
    id            INTEGER PRIMARY KEY,
    connector     TEXT    NOT NULL,
    sha256        TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    size          INTEGER NOT NULL,
    status        TEXT    NOT NULL,          -- processing | done | failed
    records_done  INTEGER NOT NULL DEFAULT 0, -- checkpoint: records fully handled
    records_read  INTEGER NOT NULL DEFAULT 0,
    emitted       INTEGER NOT NULL DEFAULT 0, -- records that produced at least one delta
    unchanged     INTEGER NOT NULL DEFAULT 0,
    rejected      INTEGER NOT NULL DEFAULT 0,
    filtered      INTEGER NOT NULL DEFAULT 0,
    deltas        INTEGER NOT NULL DEFAULT 0, -- milestones forwarded
    error         TEXT,
    started_at    INTEGER NOT NULL,
    finished_at   INTEGER,
    UNIQUE (connector, sha256)
);

-- Last known state per milestone key.
CREATE TABLE state (
    program      TEXT    NOT NULL,
    case_id      TEXT    NOT NULL,
    milestone    TEXT    NOT NULL,
    occurrence   TEXT    NOT NULL,
    key_hash     INTEGER NOT NULL,
    content_hash INTEGER NOT NULL,
    body         TEXT    NOT NULL,  -- canonical content JSON, for field diffs
    file_id      INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    PRIMARY KEY (program, case_id, milestone, occurrence)
) WITHOUT ROWID;
CREATE INDEX state_key_hash ON state (key_hash);

-- Per-case delta counter: the `sequence` receivers use to spot gaps.
CREATE TABLE cases (
    program  TEXT    NOT NULL,
    case_id  TEXT    NOT NULL,
    last_seq INTEGER NOT NULL,
    PRIMARY KEY (program, case_id)
) WITHOUT ROWID;

-- Every delta, as the exact body that is signed and sent. `id` is the webhook-id.
CREATE TABLE outbox (
    pos        INTEGER PRIMARY KEY,
    id         TEXT    NOT NULL UNIQUE,
    connector  TEXT    NOT NULL,
    program    TEXT    NOT NULL,
    case_id    TEXT    NOT NULL,
    milestone  TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    file_id    INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    body       TEXT
);

-- One row per (subscriber, message): its delivery state.
CREATE TABLE deliveries (
    subscriber      TEXT    NOT NULL,
    pos             INTEGER NOT NULL,
    lane            INTEGER NOT NULL,     -- hash of (program, case_id): the FIFO lane
    status          INTEGER NOT NULL,     -- 0 pending, 1 delivered, 2 failed (dead letter)
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,     -- unix ms
    last_status     INTEGER,
    last_error      TEXT,
    delivered_at    INTEGER,
    PRIMARY KEY (subscriber, pos)
) WITHOUT ROWID;
CREATE INDEX deliveries_pending ON deliveries (subscriber, pos) WHERE status = 0;
CREATE INDEX deliveries_lane ON deliveries (subscriber, lane, pos) WHERE status = 0;

-- One row per HTTP attempt. Response bodies are capped and redacted.
CREATE TABLE attempts (
    id          INTEGER PRIMARY KEY,
    subscriber  TEXT    NOT NULL,
    pos         INTEGER NOT NULL,
    attempt     INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    status      INTEGER,
    error       TEXT
);
CREATE INDEX attempts_message ON attempts (subscriber, pos);

-- Quarantined records: where, which column, why, and a redacted value.
CREATE TABLE rejects (
    id       INTEGER PRIMARY KEY,
    file_id  INTEGER NOT NULL,
    locator  TEXT    NOT NULL,
    col      TEXT,
    reason   TEXT    NOT NULL
);
CREATE INDEX rejects_file ON rejects (file_id);
