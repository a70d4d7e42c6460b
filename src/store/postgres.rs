//! The PostgreSQL backend: the same store as SQLite, for deployments that
//! outgrow one machine or need a standby, and shared by several instances.
//!
//! What sharing adds (see `design.md` beside this file):
//!
//! - a file is processed by the instance holding its ledger row's lease; each
//!   chunk commit renews the lease and is fenced by it (a chunk whose instance
//!   lost the lease rolls back), so a file's output is written once;
//! - deliveries are claimed with `FOR UPDATE SKIP LOCKED` and a lease; a lane
//!   whose head is pending (leased or not) has no other due message, so
//!   per-case order holds across instances;
//! - a chunk transaction first locks its program's `programs` row, so the diff
//!   of one program's chunks reads settled state, and the generation in that
//!   row tells an instance whether its in-memory index may be stale.
//!
//! Every multi-row write is one statement over `UNNEST`ed arrays: no per-row
//! round trips, and no bound-parameter limit to chunk around.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};

use super::rows::{self, all, FILE_COLS};
use super::shared::{Dialect, Sql};
use super::{
    check_schema, now_ms, AttemptOutcome, AttemptResult, Claim, Due, DueClaim, FileArrival, FileStatus,
    Generation, OutboxWrite, Progress, RejectRow, SchemaVersion, StateRow, StoreError, StoreOptions,
    SubscriberStats,
};

mod journey;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("src/store/migrations/postgres");

/// Connections per instance: one committer per connector, one worker per
/// subscriber, lease renewals and status reads, with room to spare.
const MAX_CONNECTIONS: u32 = 10;
/// Connections for claims and attempt records (one statement each).
const DELIVERY_CONNECTIONS: u32 = 4;

#[derive(Debug, Clone)]
pub struct PgStore {
    /// Also the pool of the shared statements (`shared!`), reads and writes.
    pub(super) pool: PgPool,
    /// Delivery bookkeeping's own connections, with relaxed commits (see
    /// [`PgStore::open`]).
    deliveries: PgPool,
    /// This process's name in lease columns.
    instance: String,
    lease_ms: i64,
}

pub struct PgTx {
    pub(super) tx: Transaction<'static, Postgres>,
    instance: String,
    lease_ms: i64,
}

impl Dialect for Postgres {
    /// A replayed delivery may be leased by an instance still sending it;
    /// its result then no longer settles it (`record_attempts`).
    const LEASE_RESET: &'static str = ", lease_owner = NULL, lease_until = NULL";
    /// A leased delivery is being sent: never coalesced under its sender.
    const UNLEASED: &'static str = " AND d.lease_owner IS NULL";
    /// Concurrent instances claim disjoint timers; a crash before commit
    /// releases the claim.
    const CLAIM_LOCK: &'static str = " FOR UPDATE SKIP LOCKED";

    /// An array literal, cast: the same plan as a bound `text[]`.
    fn in_texts(param: &str) -> String {
        format!("= ANY(CAST({param} AS text[]))")
    }

    /// Each element quoted, `"` and `\` escaped (PostgreSQL's array input),
    /// written into one buffer: no allocation per element.
    fn texts(values: &[&str]) -> String {
        let mut out = String::with_capacity(2 + values.iter().map(|v| v.len() + 3).sum::<usize>());
        out.push('{');
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('"');
            for c in v.chars() {
                if c == '"' || c == '\\' {
                    out.push('\\');
                }
                out.push(c);
            }
            out.push('"');
        }
        out.push('}');
        out
    }

    fn in_ints(param: &str) -> String {
        format!("= ANY(CAST({param} AS bigint[]))")
    }

    fn ints(values: &[i64]) -> String {
        use std::fmt::Write;
        let mut out = String::with_capacity(2 + values.len() * 20);
        out.push('{');
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write!(out, "{v}").expect("writing to a String cannot fail");
        }
        out.push('}');
        out
    }
}

/// The highest migration applied to the database, if any.
async fn applied_version(pool: &PgPool) -> Result<Option<i64>, StoreError> {
    let has_table: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await?;
    if !has_table {
        return Ok(None);
    }
    Ok(
        sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(pool)
            .await?,
    )
}

impl PgStore {
    pub async fn open(url: &str, opts: &StoreOptions) -> Result<PgStore, StoreError> {
        let connect = PgConnectOptions::from_str(url)?.application_name("hubsync");
        // No ping per acquire: a broken connection fails its query, which is
        // retried like any database error; the ping was a round trip per call.
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(60))
            .test_before_acquire(false)
            .connect_with(connect.clone())
            .await?;
        // Claims and attempt outcomes commit without waiting for the WAL
        // flush: a database crash can lose their last few hundred ms, which
        // only means those messages are sent again, with the same webhook-id
        // and body (at-least-once allows it). It takes a ~3.5 ms fsync out of
        // every worker round. Chunk commits keep full durability: a file is
        // archived once its last chunk has committed.
        let deliveries = PgPoolOptions::new()
            .max_connections(DELIVERY_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(60))
            .test_before_acquire(false)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::query("SET synchronous_commit = off")
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            })
            .connect_lazy_with(connect);
        // Refuse a newer schema before the migrator sees it: its own error
        // ("migration N was previously applied but is missing") hides the cause.
        let version = check_schema(applied_version(&pool).await?, &MIGRATOR)?;
        if version.applied < version.supported {
            // The migrator holds an advisory lock, so instances starting
            // together apply each migration once.
            MIGRATOR.run(&pool).await?;
        }
        Ok(PgStore {
            pool,
            deliveries,
            instance: super::instance_id(),
            lease_ms: opts.lease.as_millis() as i64,
        })
    }

    /// Connects without migrating (dry runs); `None` when the database has
    /// no hubsync schema yet.
    pub async fn open_read_only(url: &str) -> Result<Option<PgStore>, StoreError> {
        let connect = PgConnectOptions::from_str(url)?.application_name("hubsync");
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect_with(connect)
            .await?;
        match applied_version(&pool).await? {
            None => {
                pool.close().await;
                Ok(None)
            }
            Some(v) => {
                check_schema(Some(v), &MIGRATOR)?;
                Ok(Some(PgStore {
                    deliveries: pool.clone(),
                    pool,
                    instance: super::instance_id(),
                    lease_ms: StoreOptions::default().lease.as_millis() as i64,
                }))
            }
        }
    }

    /// State rows by key hash, outside any transaction.
    pub async fn state_rows(&self, hashes: &[u64]) -> Result<Vec<StateRow>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        fetch_state_rows(&mut conn, hashes).await
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub async fn close(&self) {
        self.deliveries.close().await;
        self.pool.close().await;
    }

    pub async fn schema_version(&self) -> Result<SchemaVersion, StoreError> {
        check_schema(applied_version(&self.pool).await?, &MIGRATOR)
    }

    /// One statement decides the claim, under the row lock the upsert takes:
    /// a new file, one whose lease is ours or expired, or a failed file that
    /// was dropped again becomes ours; anything else stays with its owner.
    pub async fn file_claim(&self, file: &FileArrival<'_>) -> Result<Claim, StoreError> {
        let now = now_ms();
        let row = sqlx::query(&format!(
            "INSERT INTO files AS f (connector, sha256, name, size, status, started_at, lease_owner, lease_until)
             VALUES ($1, $2, $3, $4, 'processing', $5, $6, $7)
             ON CONFLICT (connector, sha256) DO UPDATE SET
                status = CASE WHEN f.status = 'failed' THEN 'processing' ELSE f.status END,
                name = excluded.name, lease_owner = excluded.lease_owner, lease_until = excluded.lease_until
             WHERE (f.status = 'processing'
                    AND (f.lease_owner IS NULL OR f.lease_owner = $6 OR f.lease_until < $5))
                -- A failure only just recorded is a peer's: it is moving the
                -- file to the error folder, and this is the same drop.
                OR (f.status = 'failed' AND COALESCE(f.finished_at, 0) < $5 - $8)
             RETURNING {FILE_COLS}"
        ))
        .bind(file.connector)
        .bind(file.sha256)
        .bind(file.name)
        .bind(file.size as i64)
        .bind(now)
        .bind(&self.instance)
        .bind(now + self.lease_ms)
        .bind(self.lease_ms)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(r) = row {
            return Ok(Claim::Owned(rows::file_row(&r)?));
        }
        let (file, finished_at) = Sql::<Postgres>::file_by_key(&self.pool, file.connector, file.sha256)
            .await?
            .ok_or(sqlx::Error::RowNotFound)?;
        // Within a lease of its finish, a done file is still being archived by
        // the instance that finished it: moving it here too would race that.
        Ok(match file.status {
            FileStatus::Done if finished_at.unwrap_or(0) < now - self.lease_ms => Claim::Done(file),
            _ => Claim::Busy,
        })
    }

    pub async fn file_renew(&self, file_id: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE files SET lease_until = $1 WHERE id = $2 AND lease_owner = $3 AND status = 'processing'",
        )
        .bind(now_ms() + self.lease_ms)
        .bind(file_id)
        .bind(&self.instance)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn file_release(&self, file_id: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE files SET lease_owner = NULL, lease_until = NULL
             WHERE id = $1 AND lease_owner = $2 AND status = 'processing'",
        )
        .bind(file_id)
        .bind(&self.instance)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn state_generations(&self) -> Result<HashMap<String, i64>, StoreError> {
        let rows: Vec<(String, i64)> = sqlx::query_as("SELECT program, generation FROM programs")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().collect())
    }

    pub async fn begin(&self) -> Result<PgTx, StoreError> {
        Ok(PgTx {
            tx: self.pool.begin().await?,
            instance: self.instance.clone(),
            lease_ms: self.lease_ms,
        })
    }

    /// Claims due lane heads. The head test (the oldest pending message of its
    /// lane) counts leased messages as pending, so a lane another instance is
    /// sending is not due here; `SKIP LOCKED` lets instances claim side by side
    /// without waiting on each other's rows.
    pub async fn claim_due(&self, c: &DueClaim<'_>) -> Result<Vec<Due>, StoreError> {
        if c.limit == 0 {
            return Ok(Vec::new());
        }
        let lease_ms = (c.lease.as_millis() as i64).max(self.lease_ms);
        let rows = sqlx::query(
            "WITH heads AS (
                SELECT d.subscriber, d.pos FROM deliveries d
                WHERE d.subscriber = $1 AND d.status = 0 AND d.next_attempt_at <= $2
                  AND (d.lease_until IS NULL OR d.lease_until < $2)
                  -- The head test as a scalar subquery, not NOT EXISTS: the
                  -- planner may turn NOT EXISTS into an anti join that, on
                  -- stale statistics (a fresh backlog), scans the subscriber's
                  -- whole pending set per row (80 ms for 8k rows, measured);
                  -- this form is one index probe per row whatever the stats.
                  AND d.pos = (SELECT e.pos FROM deliveries e
                               WHERE e.subscriber = d.subscriber AND e.lane = d.lane AND e.status = 0
                               ORDER BY e.pos LIMIT 1)
                ORDER BY d.pos LIMIT $3
                FOR UPDATE OF d SKIP LOCKED
             )
             UPDATE deliveries d SET lease_owner = $4, lease_until = $5
             FROM heads JOIN outbox o ON o.pos = heads.pos
             WHERE d.subscriber = heads.subscriber AND d.pos = heads.pos
             RETURNING d.pos, d.lane, d.attempts, o.id, o.body, o.connector, o.program, o.case_id, o.milestone,
                       o.seq, o.created_at",
        )
        .bind(c.subscriber)
        .bind(c.now_ms)
        .bind(c.limit as i64)
        .bind(&self.instance)
        .bind(c.now_ms + lease_ms)
        .fetch_all(&self.deliveries)
        .await?;
        let mut due = all(&rows, rows::due)?;
        // A send that outlived its lease may be re-claimed by its own worker:
        // it is still in flight, and its result will settle it.
        due.retain(|d| !c.in_flight.contains(&d.pos));
        due.sort_by_key(|d| d.pos);
        Ok(due)
    }

    pub async fn next_due(&self, subscriber: &str) -> Result<Option<i64>, StoreError> {
        // A leased message is not due before its lease ends.
        Ok(sqlx::query_scalar(
            "SELECT MIN(GREATEST(next_attempt_at, COALESCE(lease_until, 0)))
             FROM deliveries WHERE subscriber = $1 AND status = 0",
        )
        .bind(subscriber)
        .fetch_one(&self.deliveries)
        .await?)
    }

    /// Outcome journals are kept for SQLite stores only (one process); a
    /// batch handed here is recorded as any other.
    pub async fn apply_journal(&self, results: &[AttemptResult]) -> Result<u64, StoreError> {
        self.record_attempts(results).await?;
        Ok(results.len() as u64)
    }

    /// Settles a batch of attempts. A success is a fact whoever recorded it;
    /// a retry or failure is applied only while this instance still holds the
    /// lease, so a late result never overrides a peer that took over.
    pub async fn record_attempts(&self, results: &[AttemptResult]) -> Result<(), StoreError> {
        if results.is_empty() {
            return Ok(());
        }
        let subs: Vec<&str> = results.iter().map(|r| r.subscriber.as_str()).collect();
        let pos: Vec<i64> = results.iter().map(|r| r.pos).collect();
        let attempt: Vec<i32> = results.iter().map(|r| r.attempt as i32).collect();
        let at: Vec<i64> = results.iter().map(|r| r.at_ms).collect();
        let dur: Vec<i64> = results.iter().map(|r| r.duration_ms).collect();
        let http: Vec<Option<i32>> = results.iter().map(|r| r.http_status.map(i32::from)).collect();
        let err: Vec<Option<&str>> = results.iter().map(|r| r.error.as_deref()).collect();
        let excerpt: Vec<Option<&str>> = results.iter().map(|r| r.excerpt.as_deref()).collect();
        // A held attempt (a breaker probe) is logged and noted, but neither
        // settles its delivery nor uses up one of its retries.
        let held: Vec<bool> = results
            .iter()
            .map(|r| r.outcome == AttemptOutcome::Held)
            .collect();
        let delivered: Vec<bool> = results
            .iter()
            .map(|r| r.outcome == AttemptOutcome::Delivered)
            .collect();
        // For retries, when; NULL for a final failure (a dead letter).
        let next_at: Vec<Option<i64>> = results
            .iter()
            .map(|r| match r.outcome {
                AttemptOutcome::RetryAt(t) => Some(t),
                AttemptOutcome::Failed | AttemptOutcome::Delivered | AttemptOutcome::Held => None,
            })
            .collect();
        // One statement (one round trip, atomic): the attempt rows, and the
        // settlement of each delivery. Pending is tested as `status < 1`, not
        // `= 0`, so the partial indexes (predicate `status = 0`) cannot serve
        // this primary-key lookup: on stale statistics (a fresh backlog) the
        // planner chose `deliveries_lane` and scanned the subscriber's whole
        // backlog per row (7 ms per batch at 30k pending, measured).
        sqlx::query(
            "WITH logged AS (
                INSERT INTO attempts (subscriber, pos, attempt, at, duration_ms, status, error, response_excerpt)
                SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::int[], $4::bigint[], $5::bigint[], $6::int[], $7::text[], $12::text[])
             )
             UPDATE deliveries d SET
                status = CASE WHEN u.held THEN d.status WHEN u.delivered THEN 1 WHEN u.next_at IS NULL THEN 2 ELSE 0 END,
                attempts = CASE WHEN u.held THEN d.attempts WHEN u.delivered THEN d.attempts + 1 ELSE u.attempt END,
                next_attempt_at = COALESCE(u.next_at, d.next_attempt_at),
                delivered_at = CASE WHEN u.delivered THEN $10 ELSE d.delivered_at END,
                last_status = CASE WHEN u.delivered THEN 200 ELSE u.http END,
                last_error = CASE WHEN u.delivered THEN NULL ELSE u.error END,
                lease_owner = NULL, lease_until = NULL
             FROM UNNEST($1::text[], $2::bigint[], $3::int[], $6::int[], $7::text[], $8::bigint[], $9::bool[], $13::bool[])
                  AS u(subscriber, pos, attempt, http, error, next_at, delivered, held)
             WHERE d.subscriber = u.subscriber AND d.pos = u.pos AND d.status < 1
               AND (u.delivered OR d.lease_owner = $11)",
        )
        .bind(&subs)
        .bind(&pos)
        .bind(&attempt)
        .bind(&at)
        .bind(&dur)
        .bind(&http)
        .bind(&err)
        .bind(&next_at)
        .bind(&delivered)
        .bind(now_ms())
        .bind(&self.instance)
        .bind(&excerpt)
        .bind(&held)
        .execute(&self.deliveries)
        .await?;
        Ok(())
    }

    pub async fn subscriber_stats(&self) -> Result<Vec<SubscriberStats>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.subscriber,
                    COUNT(*) FILTER (WHERE d.status = 0) AS pending,
                    COUNT(*) FILTER (WHERE d.status = 1) AS delivered,
                    COUNT(*) FILTER (WHERE d.status = 2) AS failed,
                    COUNT(*) FILTER (WHERE d.status = 3) AS coalesced,
                    COUNT(*) FILTER (WHERE d.status = 0 AND d.last_error IS NOT NULL) AS failing,
                    MIN(o.created_at) FILTER (WHERE d.status = 0) AS oldest
             FROM deliveries d JOIN outbox o ON o.pos = d.pos GROUP BY d.subscriber ORDER BY d.subscriber",
        )
        .fetch_all(&self.pool)
        .await?;
        let now = now_ms();
        all(&rows, |r| rows::subscriber_stats(r, now))
    }
}

async fn fetch_state_rows(
    conn: &mut sqlx::PgConnection,
    hashes: &[u64],
) -> Result<Vec<StateRow>, StoreError> {
    let keys: Vec<i64> = hashes.iter().map(|h| *h as i64).collect();
    let rows = sqlx::query(
        "SELECT program, case_id, milestone, occurrence, key_hash, content_hash, body
         FROM state WHERE key_hash = ANY($1)",
    )
    .bind(&keys)
    .fetch_all(&mut *conn)
    .await?;
    all(&rows, rows::state_row)
}

impl PgTx {
    pub async fn lock_program(&mut self, program: &str) -> Result<Generation, StoreError> {
        // The no-op update still takes the row lock, and creates the row for
        // a program's first chunk, all in one round trip.
        let g: i64 = sqlx::query_scalar(
            "INSERT INTO programs AS p (program, generation) VALUES ($1, 0)
             ON CONFLICT (program) DO UPDATE SET generation = p.generation
             RETURNING generation",
        )
        .bind(program)
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(Generation::Shared(g))
    }

    pub async fn bump_program(&mut self, program: &str) -> Result<Generation, StoreError> {
        let g: i64 = sqlx::query_scalar(
            "INSERT INTO programs AS p (program, generation) VALUES ($1, 1)
             ON CONFLICT (program) DO UPDATE SET generation = p.generation + 1
             RETURNING generation",
        )
        .bind(program)
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(Generation::Shared(g))
    }

    pub async fn state_hashes(&mut self, hashes: &[u64]) -> Result<Vec<(u64, u64)>, StoreError> {
        let keys: Vec<i64> = hashes.iter().map(|h| *h as i64).collect();
        let rows: Vec<(i64, i64)> =
            sqlx::query_as("SELECT key_hash, content_hash FROM state WHERE key_hash = ANY($1)")
                .bind(&keys)
                .fetch_all(&mut *self.tx)
                .await?;
        Ok(rows.into_iter().map(|(k, c)| (k as u64, c as u64)).collect())
    }

    pub async fn state_rows(&mut self, hashes: &[u64]) -> Result<Vec<StateRow>, StoreError> {
        fetch_state_rows(&mut self.tx, hashes).await
    }

    pub async fn bump_cases(&mut self, cases: &[(&str, &str, i64)]) -> Result<Vec<i64>, StoreError> {
        // Sorted input takes row locks in one global order: no deadlock with
        // another transaction bumping an overlapping set.
        let mut sorted: Vec<&(&str, &str, i64)> = cases.iter().collect();
        sorted.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let programs: Vec<&str> = sorted.iter().map(|c| c.0).collect();
        let ids: Vec<&str> = sorted.iter().map(|c| c.1).collect();
        let ns: Vec<i64> = sorted.iter().map(|c| c.2).collect();
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "INSERT INTO cases AS c (program, case_id, last_seq)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[])
             ON CONFLICT (program, case_id) DO UPDATE SET last_seq = c.last_seq + excluded.last_seq
             RETURNING program, case_id, last_seq",
        )
        .bind(&programs)
        .bind(&ids)
        .bind(&ns)
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(rows::seqs_in_order(cases, rows))
    }

    pub async fn upsert_state(&mut self, rows: &[StateRow], file_id: i64) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut sorted: Vec<&StateRow> = rows.iter().collect();
        sorted.sort_unstable_by(|a, b| {
            (&a.program, &a.case_id, &a.milestone, &a.occurrence).cmp(&(
                &b.program,
                &b.case_id,
                &b.milestone,
                &b.occurrence,
            ))
        });
        let program: Vec<&str> = sorted.iter().map(|r| r.program.as_str()).collect();
        let case_id: Vec<&str> = sorted.iter().map(|r| r.case_id.as_str()).collect();
        let milestone: Vec<&str> = sorted.iter().map(|r| r.milestone.as_str()).collect();
        let occurrence: Vec<&str> = sorted.iter().map(|r| r.occurrence.as_str()).collect();
        let key: Vec<i64> = sorted.iter().map(|r| r.key_hash as i64).collect();
        let content: Vec<i64> = sorted.iter().map(|r| r.content_hash as i64).collect();
        let body: Vec<&str> = sorted.iter().map(|r| r.body.as_str()).collect();
        sqlx::query(
            "INSERT INTO state (program, case_id, milestone, occurrence, key_hash, content_hash, body, file_id, updated_at)
             SELECT u.*, $8, $9 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[], $7::text[]) AS u
             ON CONFLICT (program, case_id, milestone, occurrence) DO UPDATE SET
                key_hash = excluded.key_hash, content_hash = excluded.content_hash, body = excluded.body,
                file_id = excluded.file_id, updated_at = excluded.updated_at",
        )
        .bind(&program)
        .bind(&case_id)
        .bind(&milestone)
        .bind(&occurrence)
        .bind(&key)
        .bind(&content)
        .bind(&body)
        .bind(file_id)
        .bind(now_ms())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    pub async fn insert_outbox(&mut self, rows: &[OutboxWrite], file_id: i64) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        // Reserve positions in one statement, then hand them out in file order:
        // within a case, position order must be sequence order (the lane FIFO).
        // Across transactions it is too, because a case's sequence bump holds
        // the case row's lock until commit, so a later transaction touching the
        // case reserves its positions after this one's.
        let mut positions: Vec<i64> =
            sqlx::query_scalar("SELECT nextval('outbox_pos') FROM generate_series(1, $1)")
                .bind(rows.len() as i64)
                .fetch_all(&mut *self.tx)
                .await?;
        positions.sort_unstable();
        let now = now_ms();
        let id: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        let connector: Vec<&str> = rows.iter().map(|r| r.connector.as_str()).collect();
        let program: Vec<&str> = rows.iter().map(|r| r.program.as_str()).collect();
        let case_id: Vec<&str> = rows.iter().map(|r| r.case_id.as_str()).collect();
        let milestone: Vec<&str> = rows.iter().map(|r| r.milestone.as_str()).collect();
        let seq: Vec<i64> = rows.iter().map(|r| r.seq).collect();
        let body: Vec<&str> = rows.iter().map(|r| r.body.as_str()).collect();
        let key_hash: Vec<i64> = rows.iter().map(|r| r.key_hash as i64).collect();
        sqlx::query(
            "INSERT INTO outbox (pos, id, connector, program, case_id, milestone, seq, body, key_hash, file_id, created_at)
             SELECT u.*, $10, $11 FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::text[], $9::bigint[]) AS u",
        )
        .bind(&positions)
        .bind(&id)
        .bind(&connector)
        .bind(&program)
        .bind(&case_id)
        .bind(&milestone)
        .bind(&seq)
        .bind(&body)
        .bind(&key_hash)
        .bind(file_id)
        .bind(now)
        .execute(&mut *self.tx)
        .await?;
        let mut d_sub: Vec<&str> = Vec::new();
        let mut d_pos: Vec<i64> = Vec::new();
        let mut d_lane: Vec<i64> = Vec::new();
        for (pos, r) in positions.iter().zip(rows) {
            for s in &r.subscribers {
                d_sub.push(s.as_str());
                d_pos.push(*pos);
                d_lane.push(r.lane as i64);
            }
        }
        if !d_sub.is_empty() {
            sqlx::query(
                "INSERT INTO deliveries (subscriber, pos, lane, status, next_attempt_at)
                 SELECT u.*, 0, $4 FROM UNNEST($1::text[], $2::bigint[], $3::bigint[]) AS u",
            )
            .bind(&d_sub)
            .bind(&d_pos)
            .bind(&d_lane)
            .bind(now)
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(())
    }

    pub async fn insert_rejects(&mut self, file_id: i64, rows: &[RejectRow]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let locator: Vec<&str> = rows.iter().map(|r| r.locator.as_str()).collect();
        let col: Vec<Option<&str>> = rows.iter().map(|r| r.column.as_deref()).collect();
        let reason: Vec<&str> = rows.iter().map(|r| r.reason.as_str()).collect();
        sqlx::query(
            "INSERT INTO rejects (file_id, locator, col, reason)
             SELECT $1, u.* FROM UNNEST($2::text[], $3::text[], $4::text[]) AS u",
        )
        .bind(file_id)
        .bind(&locator)
        .bind(&col)
        .bind(&reason)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Moves the checkpoint, renews the lease, and fences the whole chunk: if
    /// another instance took the file over, nothing of this chunk commits.
    pub async fn file_progress(&mut self, p: &Progress<'_>) -> Result<(), StoreError> {
        let fence = (self.instance.as_str(), now_ms() + self.lease_ms);
        if Sql::<Postgres>::file_progress(&mut self.tx, p, Some(fence)).await? != 1 {
            return Err(StoreError::LeaseLost { file_id: p.file_id });
        }
        Ok(())
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await?;
        Ok(())
    }
}

// ------------------------------------------------ delivery operations (issue 6)

impl PgStore {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lists bound as one array literal: every element quoted and escaped,
    /// so a comma, quote or backslash in a case id stays inside its element.
    #[test]
    fn list_literals_quote_and_escape_each_element() {
        assert_eq!(
            <Postgres as Dialect>::texts(&["a", "b\"c", "d\\e", "f,g", ""]),
            r#"{"a","b\"c","d\\e","f,g",""}"#
        );
        assert_eq!(<Postgres as Dialect>::texts(&[]), "{}");
        assert_eq!(
            <Postgres as Dialect>::ints(&[1, -2, i64::MAX]),
            "{1,-2,9223372036854775807}"
        );
        assert_eq!(<Postgres as Dialect>::ints(&[]), "{}");
    }
}
