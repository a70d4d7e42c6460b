-- hubsync schema, PostgreSQL backend. Same tables and meaning as the SQLite
-- schema, plus what several instances sharing one database need: leases on
-- files and deliveries, and a per-program generation counter.
--
-- Hashes (key, content, lane) are u64 stored as BIGINT (same bits, i64).
-- Times are unix milliseconds (BIGINT), as in SQLite, so both backends share
-- one model.

-- The ledger: one row per (connector, file content). The unique key is what
-- makes a file claimable by exactly one instance; the lease says by whom and
-- until when. Progress is committed in the same transaction as the output.
CREATE TABLE files (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    connector     TEXT    NOT NULL,
    sha256        TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    size          BIGINT  NOT NULL,
    status        TEXT    NOT NULL,           -- processing | done | failed
    records_done  BIGINT  NOT NULL DEFAULT 0, -- checkpoint: records fully handled
    records_read  BIGINT  NOT NULL DEFAULT 0,
    emitted       BIGINT  NOT NULL DEFAULT 0,
    unchanged     BIGINT  NOT NULL DEFAULT 0,
    rejected      BIGINT  NOT NULL DEFAULT 0,
    filtered      BIGINT  NOT NULL DEFAULT 0,
    deltas        BIGINT  NOT NULL DEFAULT 0,
    error         TEXT,
    started_at    BIGINT  NOT NULL,
    finished_at   BIGINT,
    lease_owner   TEXT,                       -- instance id holding the file
    lease_until   BIGINT,                     -- unix ms; after it, anyone may take over
    UNIQUE (connector, sha256)
);

-- Last known state per milestone key.
CREATE TABLE state (
    program      TEXT   NOT NULL,
    case_id      TEXT   NOT NULL,
    milestone    TEXT   NOT NULL,
    occurrence   TEXT   NOT NULL,
    key_hash     BIGINT NOT NULL,
    content_hash BIGINT NOT NULL,
    body         TEXT   NOT NULL,  -- canonical content JSON, for field diffs
    file_id      BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (program, case_id, milestone, occurrence)
);
CREATE INDEX state_key_hash ON state (key_hash) INCLUDE (content_hash);

-- Per-program state generation. Every chunk transaction locks its program's
-- row first (so chunk commits of one program serialize across instances and
-- the diff reads settled state), and bumps the counter when it writes state,
-- so an instance can tell whether its in-memory index may be stale.
CREATE TABLE programs (
    program    TEXT   PRIMARY KEY,
    generation BIGINT NOT NULL
);

-- Per-case delta counter: the `sequence` receivers use to spot gaps.
CREATE TABLE cases (
    program  TEXT   NOT NULL,
    case_id  TEXT   NOT NULL,
    last_seq BIGINT NOT NULL,
    PRIMARY KEY (program, case_id)
);

-- Outbox positions come from a sequence; a chunk reserves its positions in
-- one statement and assigns them in file order.
CREATE SEQUENCE outbox_pos AS BIGINT;

-- Every delta, as the exact body that is signed and sent. `id` is the webhook-id.
CREATE TABLE outbox (
    pos        BIGINT PRIMARY KEY,
    id         TEXT   NOT NULL UNIQUE,
    connector  TEXT   NOT NULL,
    program    TEXT   NOT NULL,
    case_id    TEXT   NOT NULL,
    milestone  TEXT   NOT NULL,
    seq        BIGINT NOT NULL,
    file_id    BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    body       TEXT
);

-- One row per (subscriber, message): its delivery state, and the lease of the
-- instance sending it.
CREATE TABLE deliveries (
    subscriber      TEXT     NOT NULL,
    pos             BIGINT   NOT NULL,
    lane            BIGINT   NOT NULL,     -- hash of (program, case_id): the FIFO lane
    status          SMALLINT NOT NULL,     -- 0 pending, 1 delivered, 2 failed (dead letter)
    attempts        INTEGER  NOT NULL DEFAULT 0,
    next_attempt_at BIGINT   NOT NULL,     -- unix ms
    last_status     INTEGER,
    last_error      TEXT,
    delivered_at    BIGINT,
    lease_owner     TEXT,
    lease_until     BIGINT,
    PRIMARY KEY (subscriber, pos)
);
CREATE INDEX deliveries_pending ON deliveries (subscriber, pos) WHERE status = 0;
CREATE INDEX deliveries_lane ON deliveries (subscriber, lane, pos) WHERE status = 0;

-- One row per HTTP attempt.
CREATE TABLE attempts (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscriber  TEXT    NOT NULL,
    pos         BIGINT  NOT NULL,
    attempt     INTEGER NOT NULL,
    at          BIGINT  NOT NULL,
    duration_ms BIGINT  NOT NULL,
    status      INTEGER,
    error       TEXT
);
CREATE INDEX attempts_message ON attempts (subscriber, pos);

-- Quarantined records.
CREATE TABLE rejects (
    id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    file_id  BIGINT NOT NULL,
    locator  TEXT   NOT NULL,
    col      TEXT,
    reason   TEXT   NOT NULL
);
CREATE INDEX rejects_file ON rejects (file_id);
