-- SFTP drops and feed expectations.

-- Remote files already handled, by what a listing shows: (path, size, mtime).
-- With the sha256 ledger in `files` this makes a remote file once-only even
-- when it is left in place (`after_commit = "leave"`, read-only accounts):
-- it is never downloaded again until its size or mtime changes.
CREATE TABLE remote_files (
    connector   TEXT    NOT NULL,
    path        TEXT    NOT NULL,
    size        INTEGER NOT NULL,
    mtime       INTEGER NOT NULL,          -- seconds since the epoch, as the server lists it
    sha256      TEXT    NOT NULL,
    status      TEXT    NOT NULL,          -- done | failed
    recorded_at INTEGER NOT NULL,          -- unix ms
    PRIMARY KEY (connector, path, size, mtime)
) WITHOUT ROWID;
CREATE INDEX remote_files_recent ON remote_files (connector, recorded_at);

-- Deadlines a connector's file missed (`[expect]` in the connector file).
-- One row per (connector, deadline): the feed.missing event is inserted into
-- the outbox in the same transaction, so it is sent once.
CREATE TABLE missing_drops (
    connector    TEXT    NOT NULL,
    expected_by  INTEGER NOT NULL,         -- unix ms
    detected_at  INTEGER NOT NULL,         -- unix ms
    last_arrival INTEGER,                  -- unix ms of the latest file before the deadline
    webhook_id   TEXT,                     -- the feed.missing message, if any subscriber wanted it
    PRIMARY KEY (connector, expected_by)
) WITHOUT ROWID;
