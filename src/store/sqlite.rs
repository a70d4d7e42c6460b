//! The SQLite backend: the embedded default.
//!
//! Writes go through a single-connection pool, so SQLite's one-writer rule is
//! met by queueing rather than by `SQLITE_BUSY` retries; reads use a separate
//! pool and see committed data through WAL. `synchronous = FULL`: a file is
//! archived only after its last chunk commits, so a commit that a power cut
//! could undo would lose the file.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection, SqlitePool, Transaction};

use super::rows::{self, all};
use super::shared::{Dialect, Sql};
use super::{
    check_schema, now_ms, AttemptOutcome, AttemptResult, Claim, Due, DueClaim, FileArrival, FileStatus,
    Generation, OutboxWrite, Progress, RejectRow, SchemaVersion, StateRow, StoreError, SubscriberStats,
};

mod journey;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("src/store/migrations/sqlite");

impl Dialect for Sqlite {
    /// Without statistics SQLite picks the primary key (see `claim_due`).
    const PENDING_INDEX: &'static str = "INDEXED BY deliveries_pending";
    const LANE_INDEX: &'static str = "INDEXED BY deliveries_lane";
    const TIMERS_DUE_INDEX: &'static str = "INDEXED BY journey_timers_due";

    fn in_texts(param: &str) -> String {
        in_json(param)
    }

    fn texts(values: &[&str]) -> String {
        serde_json::to_string(values).expect("a list of strings always serializes")
    }

    fn in_ints(param: &str) -> String {
        in_json(param)
    }

    fn ints(values: &[i64]) -> String {
        json_ints(values.iter().copied())
    }
}

/// `IN` the values of a JSON array bound as `param`: one cached statement
/// with one bound text, whatever the list's length.
fn in_json(param: &str) -> String {
    format!("IN (SELECT value FROM json_each({param}))")
}

/// The highest migration applied to the database, if any.
async fn applied_version(pool: &SqlitePool) -> Result<Option<i64>, StoreError> {
    let has_table: Option<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_optional(pool)
    .await?;
    if has_table.is_none() {
        return Ok(None);
    }
    Ok(
        sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(pool)
            .await?,
    )
}

/// SQLite's default limit on bound parameters is 32766; stay well below it.
const MAX_PARAMS: usize = 30_000;

/// Rows per multi-row INSERT. A chunk's rows go out in statements of these
/// fixed sizes (greedily), so each statement text recurs and is prepared once
/// per connection (sqlx caches it by its text) instead of parsing a new
/// statement of thousands of parameters per chunk: that parse was 7.6% of a
/// first load's writer thread (perf, 100k-row first load).
const BATCH_ROWS: [usize; 3] = [256, 16, 1];

/// `rows` cut into slices of the [`BATCH_ROWS`] sizes, largest first.
fn batches<T>(mut rows: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        let n = BATCH_ROWS.iter().copied().find(|n| *n <= rows.len())?;
        let (head, tail) = rows.split_at(n);
        rows = tail;
        Some(head)
    })
}

/// Logs attempts (their `attempts` rows), in statements of the
/// [`BATCH_ROWS`] sizes.
async fn log_attempts(conn: &mut SqliteConnection, results: &[&AttemptResult]) -> Result<(), StoreError> {
    for chunk in batches(results) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO attempts (subscriber, pos, attempt, at, duration_ms, status, error, response_excerpt) ",
        );
        q.push_values(chunk, |mut b, r| {
            b.push_bind(&r.subscriber)
                .push_bind(r.pos)
                .push_bind(r.attempt as i64)
                .push_bind(r.at_ms)
                .push_bind(r.duration_ms)
                .push_bind(r.http_status.map(i64::from))
                .push_bind(&r.error)
                .push_bind(&r.excerpt);
        });
        q.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// A list of integers as one JSON array: `x IN (SELECT value FROM
/// json_each(?))` is one cached statement with one bound text, whatever the
/// list's length, where `IN (?, ?, …)` is a new statement per length.
fn json_ints(values: impl Iterator<Item = i64>) -> String {
    use std::fmt::Write;
    let mut out = String::from("[");
    for (i, v) in values.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write!(out, "{v}").expect("writing to a String cannot fail");
    }
    out.push(']');
    out
}

#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// The one writing connection. The shared statements (`shared!`) read
    /// on it what must see this process's latest commit.
    pub(super) writer: SqlitePool,
    /// Read-only connections: a read may see a snapshot a commit old.
    pub(super) reader: SqlitePool,
    /// Stops the background checkpoints when the last clone goes.
    checkpointer: Option<Arc<Checkpointer>>,
}

/// Copies the WAL into the database file on a connection of its own, so that
/// chunk commits rarely pay for it: with `wal_autocheckpoint` alone, the
/// commit that crossed the threshold ran the whole checkpoint on the one
/// writer's thread, 9.6% of a first load's writer time (perf, 100k-row first
/// load). Here passive checkpoints (which never block the writer) run beside
/// it on the other core; the writer's own autocheckpoint stays, at 64 MiB of
/// WAL, and then finds little left to copy, and its WAL restarts from the top.
#[derive(Debug)]
struct Checkpointer {
    stop: tokio_util::sync::CancellationToken,
    /// Cancelled by the task once its pool is closed, so `close` can wait
    /// for it: a pool left open past the runtime's end keeps sqlx's reaper
    /// task alive through the shutdown.
    closed: tokio_util::sync::CancellationToken,
}

impl Checkpointer {
    const EVERY: Duration = Duration::from_millis(100);

    fn spawn(pool: SqlitePool) -> Arc<Checkpointer> {
        let stop = tokio_util::sync::CancellationToken::new();
        let closed = tokio_util::sync::CancellationToken::new();
        let (token, done) = (stop.clone(), closed.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = token.cancelled() => break,
                    _ = tokio::time::sleep(Self::EVERY) => {}
                }
                if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
                    tracing::debug!(error = %e, "WAL checkpoint failed; retried later");
                }
            }
            pool.close().await;
            done.cancel();
        });
        Arc::new(Checkpointer { stop, closed })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub struct SqliteTx {
    pub(super) tx: Transaction<'static, Sqlite>,
}

/// `SELECT … FROM state WHERE key_hash IN (…)`, the hashes as one JSON array.
const STATE_BY_HASH: &str =
    "SELECT program, case_id, milestone, occurrence, key_hash, content_hash, body FROM state
     WHERE key_hash IN (SELECT value FROM json_each(?))";

impl SqliteStore {
    pub async fn open(path: &str) -> Result<SqliteStore, StoreError> {
        if let Some(parent) = Path::new(path).parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent)?;
            }
        }
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30))
            .pragma("cache_size", "-32000")
            .pragma("temp_store", "memory");
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(300))
            // Every 64 MiB of WAL rather than every 4 MiB: a big first load
            // writes several MiB per commit. The `Checkpointer` copies most
            // frames before this threshold is reached.
            .connect_with(opts.clone().pragma("wal_autocheckpoint", "16384"))
            .await?;
        // Refuse a newer schema before the migrator sees it: its own error
        // ("migration N was previously applied but is missing") hides the cause.
        check_schema(applied_version(&writer).await?, &MIGRATOR)?;
        // Two processes opening a fresh database at once (the daemon and
        // `hubsync status`, a test and its child) both see no migration
        // applied and both try the first; the loser fails with "table …
        // already exists". SQLite has no advisory lock for sqlx to take, so
        // retry: the next run sees what the winner applied and skips it.
        let mut tries = 0;
        loop {
            match MIGRATOR.run(&writer).await {
                Ok(()) => break,
                Err(e) if tries < 5 => {
                    tries += 1;
                    tracing::debug!(error = %e, tries, "migration raced another process; retrying");
                    tokio::time::sleep(Duration::from_millis(50 * tries)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        let checkpoints = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts.clone().pragma("cache_size", "-1000"))
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts.read_only(true))
            .await?;
        Ok(SqliteStore {
            writer,
            reader,
            checkpointer: Some(Checkpointer::spawn(checkpoints)),
        })
    }

    /// Opens an existing database for reading only (dry runs): no file is
    /// created, no migration runs, and any write fails.
    pub async fn open_read_only(path: &str) -> Result<Option<SqliteStore>, StoreError> {
        if !Path::new(path).is_file() {
            return Ok(None);
        }
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))?
            .read_only(true)
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await?;
        Ok(Some(SqliteStore {
            writer: pool.clone(),
            reader: pool,
            checkpointer: None,
        }))
    }

    /// State rows by key hash, outside any transaction.
    pub async fn state_rows(&self, hashes: &[u64]) -> Result<Vec<StateRow>, StoreError> {
        let rows = sqlx::query(STATE_BY_HASH)
            .bind(json_ints(hashes.iter().map(|h| *h as i64)))
            .fetch_all(&self.reader)
            .await?;
        all(&rows, rows::state_row)
    }

    pub async fn close(&self) {
        if let Some(c) = &self.checkpointer {
            c.stop.cancel();
            // A checkpoint in progress finishes first; bounded, as a stuck
            // one must not hold up the exit.
            let _ = tokio::time::timeout(Duration::from_secs(5), c.closed.cancelled()).await;
        }
        self.reader.close().await;
        self.writer.close().await;
    }

    pub async fn schema_version(&self) -> Result<SchemaVersion, StoreError> {
        check_schema(applied_version(&self.writer).await?, &MIGRATOR)
    }

    /// This process's name in lease columns (it never writes one).
    pub fn instance(&self) -> &str {
        "local"
    }

    /// The lease is never lost: no other instance shares the file.
    pub async fn file_renew(&self, _file_id: i64) -> Result<bool, StoreError> {
        Ok(true)
    }

    /// Nothing to release: no lease was taken.
    pub async fn file_release(&self, _file_id: i64) -> Result<(), StoreError> {
        Ok(())
    }

    /// No generations: only this process writes the state.
    pub async fn state_generations(&self) -> Result<HashMap<String, i64>, StoreError> {
        Ok(HashMap::new())
    }

    /// One instance owns a SQLite store, so every claim is granted: a file not
    /// yet done is ours to (re)process from its checkpoint.
    pub async fn file_claim(&self, file: &FileArrival<'_>) -> Result<Claim, StoreError> {
        if let Some((row, _)) = Sql::<Sqlite>::file_by_key(&self.writer, file.connector, file.sha256).await? {
            if row.status == FileStatus::Done {
                return Ok(Claim::Done(row));
            }
        }
        // The lookup stays outside the transaction: one that starts with a
        // read and then writes fails at once with SQLITE_BUSY when another
        // connection committed in between (see `replay`).
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "INSERT INTO files (connector, sha256, name, size, status, started_at) VALUES (?, ?, ?, ?, 'processing', ?)
             ON CONFLICT (connector, sha256) DO UPDATE SET
                status = CASE WHEN status = 'failed' THEN 'processing' ELSE status END,
                name = excluded.name",
        )
        .bind(file.connector)
        .bind(file.sha256)
        .bind(file.name)
        .bind(file.size as i64)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        let (row, _) = Sql::<Sqlite>::file_by_key(&mut *tx, file.connector, file.sha256)
            .await?
            .ok_or(sqlx::Error::RowNotFound)?;
        tx.commit().await?;
        Ok(Claim::Owned(row))
    }

    pub async fn begin(&self) -> Result<SqliteTx, StoreError> {
        Ok(SqliteTx {
            tx: self.writer.begin().await?,
        })
    }

    /// Due lane heads; nothing to lease (`c.lease`), since this process is
    /// the only sender.
    pub async fn claim_due(&self, c: &DueClaim<'_>) -> Result<Vec<Due>, StoreError> {
        // A delivery is due when it is the oldest pending one of its lane: that
        // is the per-case FIFO. A parked (failing) head holds back only its lane.
        // `in_flight` (still pending) is excluded here so their bodies
        // are not read again on every refill. INDEXED BY: without statistics
        // SQLite picks the primary key, which walks every delivered row and,
        // in the lane check, every earlier position: 40 ms instead of 0.03 ms
        // per call with 50k rows.
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT d.pos, d.lane, d.attempts, o.id, o.body, o.connector, o.program, o.case_id, o.milestone,
                    o.seq, o.created_at
             FROM deliveries d INDEXED BY deliveries_pending JOIN outbox o ON o.pos = d.pos
             WHERE d.subscriber = ",
        );
        q.push_bind(c.subscriber);
        q.push(" AND d.status = 0 AND d.next_attempt_at <= ");
        q.push_bind(c.now_ms);
        q.push(
            " AND NOT EXISTS (SELECT 1 FROM deliveries e INDEXED BY deliveries_lane
                              WHERE e.subscriber = d.subscriber AND e.lane = d.lane AND e.status = 0 AND e.pos < d.pos)",
        );
        if !c.in_flight.is_empty() {
            q.push(" AND d.pos NOT IN (SELECT value FROM json_each(");
            q.push_bind(json_ints(c.in_flight.iter().copied()));
            q.push("))");
        }
        q.push(" ORDER BY d.pos LIMIT ");
        q.push_bind(c.limit as i64);
        let rows = q.build().fetch_all(&self.reader).await?;
        all(&rows, rows::due)
    }

    pub async fn next_due(&self, subscriber: &str) -> Result<Option<i64>, StoreError> {
        // `fetch_all`, not `fetch_one`: sqlx resets a statement dropped before
        // SQLITE_DONE later, on its worker thread, and until then the pooled
        // reader connection pins an old WAL snapshot (sqlx #2543) — a later
        // `due` on it could see delivered messages as pending.
        let rows: Vec<Option<i64>> = sqlx::query_scalar(
            "SELECT MIN(next_attempt_at) FROM deliveries INDEXED BY deliveries_pending WHERE subscriber = ? AND status = 0",
        )
        .bind(subscriber)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.into_iter().next().flatten())
    }

    /// See `Store::apply_journal`. A few statements per outcome (a few
    /// dozen, once at start), each guarded: the attempt row only if it is
    /// not there yet; the delivery only if it is still pending at the
    /// attempt count and due time the journaled attempt saw (a replay resets
    /// both, and wins).
    pub async fn apply_journal(&self, results: &[AttemptResult]) -> Result<u64, StoreError> {
        let mut tx = self.writer.begin().await?;
        let mut applied = 0;
        for r in results {
            let logged: Option<i64> = sqlx::query_scalar(
                "SELECT 1 FROM attempts WHERE subscriber = ? AND pos = ? AND attempt = ? AND at = ?",
            )
            .bind(&r.subscriber)
            .bind(r.pos)
            .bind(r.attempt as i64)
            .bind(r.at_ms)
            .fetch_optional(&mut *tx)
            .await?;
            if logged.is_none() {
                log_attempts(&mut tx, &[r]).await?;
            }
            let (status, next_at, delivered_at) = match r.outcome {
                AttemptOutcome::Delivered => (1, None, Some(r.at_ms + r.duration_ms)),
                AttemptOutcome::RetryAt(at) => (0, Some(at), None),
                AttemptOutcome::Failed => (2, None, None),
                // Leaves the delivery exactly as it was.
                AttemptOutcome::Held => continue,
            };
            let done = sqlx::query(
                "UPDATE deliveries SET status = ?1, attempts = ?2, next_attempt_at = COALESCE(?3, next_attempt_at),
                        delivered_at = COALESCE(?4, delivered_at), last_status = ?5, last_error = ?6
                 WHERE subscriber = ?7 AND pos = ?8 AND status = 0 AND attempts = ?2 - 1 AND next_attempt_at <= ?9",
            )
            .bind(status)
            .bind(r.attempt as i64)
            .bind(next_at)
            .bind(delivered_at)
            .bind(r.http_status.map(i64::from))
            .bind(&r.error)
            .bind(&r.subscriber)
            .bind(r.pos)
            .bind(r.at_ms)
            .execute(&mut *tx)
            .await?;
            applied += done.rows_affected();
        }
        tx.commit().await?;
        Ok(applied)
    }

    pub async fn record_attempts(&self, results: &[AttemptResult]) -> Result<(), StoreError> {
        if results.is_empty() {
            return Ok(());
        }
        let mut tx = self.writer.begin().await?;
        log_attempts(&mut tx, &results.iter().collect::<Vec<_>>()).await?;
        // Successes are the common case: one statement per subscriber batch.
        let mut delivered: HashMap<&str, Vec<i64>> = HashMap::new();
        for r in results {
            // The rest, one statement: a retry or a failure settles a still
            // pending delivery (status, attempts, when next); a held attempt
            // (a probe) only notes its answer, whatever the status.
            let (status, next_at, held) = match r.outcome {
                AttemptOutcome::Delivered => {
                    delivered.entry(r.subscriber.as_str()).or_default().push(r.pos);
                    continue;
                }
                AttemptOutcome::RetryAt(at) => (None, Some(at), false),
                AttemptOutcome::Failed => (Some(2i64), None, false),
                AttemptOutcome::Held => (None, None, true),
            };
            sqlx::query(
                "UPDATE deliveries SET status = COALESCE($1, status),
                    attempts = CASE WHEN $2 THEN attempts ELSE $3 END,
                    next_attempt_at = COALESCE($4, next_attempt_at), last_status = $5, last_error = $6
                 WHERE subscriber = $7 AND pos = $8 AND ($2 OR status = 0)",
            )
            .bind(status)
            .bind(held)
            .bind(r.attempt as i64)
            .bind(next_at)
            .bind(r.http_status.map(i64::from))
            .bind(&r.error)
            .bind(&r.subscriber)
            .bind(r.pos)
            .execute(&mut *tx)
            .await?;
        }
        let now = now_ms();
        for (sub, positions) in delivered {
            sqlx::query(
                "UPDATE deliveries SET status = 1, attempts = attempts + 1, delivered_at = ?, last_status = 200,
                    last_error = NULL
                 WHERE subscriber = ? AND status = 0 AND pos IN (SELECT value FROM json_each(?))",
            )
            .bind(now)
            .bind(sub)
            .bind(json_ints(positions.into_iter()))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn subscriber_stats(&self) -> Result<Vec<SubscriberStats>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.subscriber,
                    SUM(d.status = 0) AS pending, SUM(d.status = 1) AS delivered, SUM(d.status = 2) AS failed,
                    SUM(d.status = 3) AS coalesced, SUM(d.status = 0 AND d.last_error IS NOT NULL) AS failing,
                    MIN(CASE WHEN d.status = 0 THEN o.created_at END) AS oldest
             FROM deliveries d JOIN outbox o ON o.pos = d.pos GROUP BY d.subscriber ORDER BY d.subscriber",
        )
        .fetch_all(&self.reader)
        .await?;
        let now = now_ms();
        all(&rows, |r| rows::subscriber_stats(r, now))
    }
}

impl SqliteTx {
    /// The single writer already serializes every chunk: nothing to lock.
    pub async fn lock_program(&mut self, _program: &str) -> Result<Generation, StoreError> {
        Ok(Generation::SingleWriter)
    }

    pub async fn bump_program(&mut self, _program: &str) -> Result<Generation, StoreError> {
        Ok(Generation::SingleWriter)
    }

    pub async fn state_hashes(&mut self, hashes: &[u64]) -> Result<Vec<(u64, u64)>, StoreError> {
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT key_hash, content_hash FROM state WHERE key_hash IN (SELECT value FROM json_each(?))",
        )
        .bind(json_ints(hashes.iter().map(|h| *h as i64)))
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(rows.into_iter().map(|(k, c)| (k as u64, c as u64)).collect())
    }

    pub async fn state_rows(&mut self, hashes: &[u64]) -> Result<Vec<StateRow>, StoreError> {
        let rows = sqlx::query(STATE_BY_HASH)
            .bind(json_ints(hashes.iter().map(|h| *h as i64)))
            .fetch_all(&mut *self.tx)
            .await?;
        all(&rows, rows::state_row)
    }

    pub async fn bump_cases(&mut self, cases: &[(&str, &str, i64)]) -> Result<Vec<i64>, StoreError> {
        let mut returned = Vec::with_capacity(cases.len());
        for chunk in batches(cases) {
            let mut q = QueryBuilder::<Sqlite>::new("INSERT INTO cases (program, case_id, last_seq) ");
            q.push_values(chunk, |mut b, (p, c, n)| {
                b.push_bind(*p).push_bind(*c).push_bind(*n);
            });
            q.push(
                " ON CONFLICT (program, case_id) DO UPDATE SET last_seq = last_seq + excluded.last_seq
                 RETURNING program, case_id, last_seq",
            );
            returned.extend(
                q.build_query_as::<(String, String, i64)>()
                    .fetch_all(&mut *self.tx)
                    .await?,
            );
        }
        Ok(rows::seqs_in_order(cases, returned))
    }

    pub async fn upsert_state(&mut self, rows: &[StateRow], file_id: i64) -> Result<(), StoreError> {
        let now = now_ms();
        for chunk in batches(rows) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO state (program, case_id, milestone, occurrence, key_hash, content_hash, body, file_id, updated_at) ",
            );
            q.push_values(chunk, |mut b, r| {
                b.push_bind(&r.program)
                    .push_bind(&r.case_id)
                    .push_bind(&r.milestone)
                    .push_bind(&r.occurrence)
                    .push_bind(r.key_hash as i64)
                    .push_bind(r.content_hash as i64)
                    .push_bind(&r.body)
                    .push_bind(file_id)
                    .push_bind(now);
            });
            q.push(
                " ON CONFLICT (program, case_id, milestone, occurrence) DO UPDATE SET
                    key_hash = excluded.key_hash, content_hash = excluded.content_hash, body = excluded.body,
                    file_id = excluded.file_id, updated_at = excluded.updated_at",
            );
            q.build().execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    pub async fn insert_outbox(&mut self, rows: &[OutboxWrite], file_id: i64) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        // Positions are assigned here rather than by RETURNING, whose row order
        // SQLite does not promise; the single writer makes MAX()+1 safe.
        let base: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(pos), 0) FROM outbox")
            .fetch_one(&mut *self.tx)
            .await?;
        let now = now_ms();
        let positioned: Vec<(i64, &OutboxWrite)> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| (base + 1 + i as i64, r))
            .collect();
        for chunk in batches(&positioned) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO outbox (pos, id, connector, program, case_id, milestone, seq, file_id, created_at, body, key_hash) ",
            );
            q.push_values(chunk, |mut b, (pos, r)| {
                b.push_bind(*pos)
                    .push_bind(&r.id)
                    .push_bind(&r.connector)
                    .push_bind(&r.program)
                    .push_bind(&r.case_id)
                    .push_bind(&r.milestone)
                    .push_bind(r.seq)
                    .push_bind(file_id)
                    .push_bind(now)
                    .push_bind(&r.body)
                    .push_bind(r.key_hash as i64);
            });
            q.build().execute(&mut *self.tx).await?;
        }
        let deliveries: Vec<(i64, i64, &str)> = positioned
            .iter()
            .flat_map(|(pos, r)| {
                r.subscribers
                    .iter()
                    .map(move |s| (*pos, r.lane as i64, s.as_str()))
            })
            .collect();
        for chunk in batches(&deliveries) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO deliveries (subscriber, pos, lane, status, next_attempt_at) ",
            );
            q.push_values(chunk, |mut b, (pos, lane, sub)| {
                b.push_bind(*sub)
                    .push_bind(*pos)
                    .push_bind(*lane)
                    .push_bind(0i64)
                    .push_bind(now);
            });
            q.build().execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    pub async fn insert_rejects(&mut self, file_id: i64, rows: &[RejectRow]) -> Result<(), StoreError> {
        for chunk in rows.chunks(MAX_PARAMS / 4) {
            let mut q = QueryBuilder::<Sqlite>::new("INSERT INTO rejects (file_id, locator, col, reason) ");
            q.push_values(chunk, |mut b, r| {
                b.push_bind(file_id)
                    .push_bind(&r.locator)
                    .push_bind(&r.column)
                    .push_bind(&r.reason);
            });
            q.build().persistent(false).execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    /// No fence: no other instance can take the file over.
    pub async fn file_progress(&mut self, p: &Progress<'_>) -> Result<(), StoreError> {
        Sql::<Sqlite>::file_progress(&mut self.tx, p, None).await?;
        Ok(())
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await?;
        Ok(())
    }
}
