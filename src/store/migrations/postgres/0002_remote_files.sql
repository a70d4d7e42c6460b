-- SFTP drops and feed expectations: the PostgreSQL twin of the SQLite
-- migration of the same number (main's SFTP source). Same tables and meaning;
-- times are unix ms (mtime: seconds, as the server lists it) in BIGINT.

-- Remote files already handled, by what a listing shows: (path, size, mtime).
CREATE TABLE remote_files (
    connector   TEXT   NOT NULL,
    path        TEXT   NOT NULL,
    size        BIGINT NOT NULL,
    mtime       BIGINT NOT NULL,
    sha256      TEXT   NOT NULL,
    status      TEXT   NOT NULL,          -- done | failed
    recorded_at BIGINT NOT NULL,
    PRIMARY KEY (connector, path, size, mtime)
);
CREATE INDEX remote_files_recent ON remote_files (connector, recorded_at);

-- Deadlines a connector's file missed. The primary key makes the feed.missing
-- event once-only across instances too: the instance whose insert wins sends it.
CREATE TABLE missing_drops (
    connector    TEXT   NOT NULL,
    expected_by  BIGINT NOT NULL,
    detected_at  BIGINT NOT NULL,
    last_arrival BIGINT,
    webhook_id   TEXT,
    PRIMARY KEY (connector, expected_by)
);
