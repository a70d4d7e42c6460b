//! The statements that read and write the same way on both backends, each
//! written once, generic over sqlx's [`Database`].
//!
//! sqlx's SQLite driver binds `$N` placeholders by number, as PostgreSQL
//! does, so a statement of standard SQL written with `$N` serves both. What
//! is left in `sqlite.rs` and `postgres.rs` is what really differs: index
//! hints, leases, `UNNEST` against multi-row `VALUES`, and the few places
//! where the two need different SQL ([`Dialect`]).
//!
//! The enums reach these through the `shared!` macro (`store/mod.rs`), which
//! hands each call the backend's connection for it.

use futures_util::{StreamExt, TryStreamExt};
use sqlx::database::HasStatementCache;
use sqlx::postgres::PgQueryResult;
use sqlx::query::Query;
use sqlx::sqlite::SqliteQueryResult;
use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Pool, Type};

use super::rows::{
    self, all, Clause, Columns, Value, DELIVERY_COLS, FILE_COLS, MESSAGE_SELECT, SUBSCRIBER_STATE_SELECT,
};
use super::{
    AttemptRow, AttemptTally, AuditEntry, CaseRef, DeadLetter, FileQuery, FileRow, FileSummary, Latency,
    MessageRow, MissingDrop, Progress, RejectRow, RemoteKey, RemoteStatus, ReplayCount, ReplayFilter,
    StoreError, SubscriberState,
};
use crate::journey::timer::{ArmedCount, StallCount, StateBody, TimerRow, TimerStatus, RULE_REMOVED};

/// A chunk's ledger update, before the fence (if any) and the row's id.
const PROGRESS: &str =
    "UPDATE files SET records_done = $1, records_read = records_read + $2, emitted = emitted + $3,
        unchanged = unchanged + $4, rejected = rejected + $5, filtered = filtered + $6, deltas = deltas + $7,
        status = $8, error = COALESCE($9, error), finished_at = COALESCE($10, finished_at)";

/// What the shared statements need of a backend beyond standard SQL.
pub(crate) trait Dialect: Database + HasStatementCache {
    /// What a replay also resets on each delivery it re-queues (by
    /// default nothing: no leases).
    const LEASE_RESET: &'static str = "";
    /// What else keeps a pending delivery from being coalesced away.
    const UNLEASED: &'static str = "";
    /// Index hints for the pending deliveries of a subscriber, and for a
    /// lane (by default none: the planner picks).
    const PENDING_INDEX: &'static str = "";
    const LANE_INDEX: &'static str = "";
    /// Index hint for a program's due timers.
    const TIMERS_DUE_INDEX: &'static str = "";
    /// How a claim of due timers keeps concurrent claimers off them (by
    /// default nothing: one writer).
    const CLAIM_LOCK: &'static str = "";

    /// `IN` a list of texts bound as one parameter (`param`), whatever its
    /// length; and that parameter's value for `values`.
    fn in_texts(param: &str) -> String;
    fn texts(values: &[&str]) -> String;
    /// The same for a list of integers.
    fn in_ints(param: &str) -> String;
    fn ints(values: &[i64]) -> String;
}

/// How many rows a statement changed: each driver has its own result type.
pub(crate) trait Affected {
    fn rows(&self) -> u64;
}

impl Affected for SqliteQueryResult {
    fn rows(&self) -> u64 {
        self.rows_affected()
    }
}

impl Affected for PgQueryResult {
    fn rows(&self) -> u64 {
        self.rows_affected()
    }
}

/// The shared statements of backend `DB`, on one of its pools; those of a
/// transaction are associated functions taking its connection.
pub(crate) struct Sql<'p, DB: Database>(pub &'p Pool<DB>);

impl<DB> Sql<'_, DB>
where
    DB: Dialect,
    DB::QueryResult: Affected,
    DB::Row: Columns,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Type<DB>,
    for<'r> (i64, i64): FromRow<'r, DB::Row>,
{
    /// `c`'s statement with its values bound.
    fn query(c: &Clause) -> Query<'_, DB, DB::Arguments<'_>> {
        c.values.iter().fold(sqlx::query(&c.sql), |q, v| match v {
            Value::Text(s) => q.bind(s.as_str()),
            Value::Int(n) => q.bind(*n),
        })
    }

    /// Every row `q` returns, through `f`.
    async fn all_of<'q, T>(
        &self,
        q: Query<'q, DB, DB::Arguments<'q>>,
        f: fn(&DB::Row) -> Result<T, sqlx::Error>,
    ) -> Result<Vec<T>, StoreError> {
        all(&q.fetch_all(self.0).await?, f)
    }

    // -------------------------------------------- the file ledger

    /// A ledger row by its identity, with its finish time (unix ms).
    pub async fn file_by_key<'e>(
        ex: impl Executor<'e, Database = DB>,
        connector: &str,
        sha256: &str,
    ) -> Result<Option<(FileRow, Option<i64>)>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {FILE_COLS}, finished_at FROM files WHERE connector = $1 AND sha256 = $2"
        ))
        .bind(connector)
        .bind(sha256)
        .fetch_optional(ex)
        .await?;
        Ok(row
            .map(|r| Ok::<_, sqlx::Error>((rows::file_row(&r)?, r.opt_int("finished_at")?)))
            .transpose()?)
    }

    pub async fn file_get(&self, connector: &str, sha256: &str) -> Result<Option<FileRow>, StoreError> {
        Ok(Self::file_by_key(self.0, connector, sha256)
            .await?
            .map(|(f, _)| f))
    }

    pub async fn file_fail(&self, file_id: i64, reason: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE files SET status = 'failed', error = $1, finished_at = $2 WHERE id = $3")
            .bind(reason)
            .bind(super::now_ms())
            .bind(file_id)
            .execute(self.0)
            .await?;
        Ok(())
    }

    pub async fn files(&self, limit: i64) -> Result<Vec<FileRow>, StoreError> {
        let sql = format!("SELECT {FILE_COLS} FROM files ORDER BY id DESC LIMIT $1");
        let q = sqlx::query(&sql).bind(limit);
        self.all_of(q, rows::file_row).await
    }

    pub async fn rejects(&self, file_id: i64) -> Result<Vec<RejectRow>, StoreError> {
        let q = sqlx::query("SELECT locator, col, reason FROM rejects WHERE file_id = $1 ORDER BY id")
            .bind(file_id);
        self.all_of(q, rows::reject_row).await
    }

    /// Moves a file's checkpoint and adds a chunk's counts. With `fence`
    /// (this instance's name and its renewed lease end), only while this
    /// instance holds the file's lease, renewing it. Returns how many rows
    /// it updated: 0 when fenced out.
    pub async fn file_progress(
        conn: &mut DB::Connection,
        p: &Progress<'_>,
        fence: Option<(&str, i64)>,
    ) -> Result<u64, StoreError> {
        let (status, error, finished_at) = rows::finish_cols(p.finish, super::now_ms());
        let sql = match fence {
            Some(_) => format!("{PROGRESS}, lease_until = $11 WHERE id = $12 AND lease_owner = $13"),
            None => format!("{PROGRESS} WHERE id = $11"),
        };
        let c = p.counts;
        let q = sqlx::query(&sql)
            .bind(p.records_done as i64)
            .bind(c.read as i64)
            .bind(c.emitted as i64)
            .bind(c.unchanged as i64)
            .bind(c.rejected as i64)
            .bind(c.filtered as i64)
            .bind(c.deltas as i64)
            .bind(status)
            .bind(error)
            .bind(finished_at);
        let q = match fence {
            Some((owner, lease_until)) => q.bind(lease_until).bind(p.file_id).bind(owner),
            None => q.bind(p.file_id),
        };
        Ok(q.execute(&mut *conn).await?.rows())
    }

    /// Every (key hash, content hash) in the state, unless there are more than `cap`.
    pub async fn state_index(&self, cap: usize) -> Result<Option<Vec<(u64, u64)>>, StoreError> {
        let n = sqlx::query("SELECT COUNT(*) AS n FROM state")
            .fetch_one(self.0)
            .await?
            .int("n")?;
        if n as usize > cap {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(n as usize);
        let mut rows =
            sqlx::query_as::<_, (i64, i64)>("SELECT key_hash, content_hash FROM state").fetch(self.0);
        while let Some(r) = rows.next().await {
            let (k, c) = r?;
            out.push((k as u64, c as u64));
        }
        Ok(Some(out))
    }

    // -------------------------------------------- remote files, expectations

    pub async fn remote_file_status(&self, key: &RemoteKey<'_>) -> Result<Option<RemoteStatus>, StoreError> {
        let row = sqlx::query(
            "SELECT status FROM remote_files WHERE connector = $1 AND path = $2 AND size = $3 AND mtime = $4",
        )
        .bind(key.connector)
        .bind(key.path)
        .bind(key.size as i64)
        .bind(i64::from(key.mtime))
        .fetch_optional(self.0)
        .await?;
        Ok(row
            .map(|r| r.text("status"))
            .transpose()?
            .as_deref()
            .map(RemoteStatus::parse))
    }

    pub async fn remote_file_record(
        &self,
        key: &RemoteKey<'_>,
        sha256: &str,
        status: RemoteStatus,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO remote_files (connector, path, size, mtime, sha256, status, recorded_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (connector, path, size, mtime) DO UPDATE SET
                sha256 = excluded.sha256, status = excluded.status",
        )
        .bind(key.connector)
        .bind(key.path)
        .bind(key.size as i64)
        .bind(i64::from(key.mtime))
        .bind(sha256)
        .bind(status.as_str())
        .bind(super::now_ms())
        .execute(self.0)
        .await?;
        Ok(())
    }

    pub async fn last_arrival(&self, connector: &str, until_ms: i64) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query(
            "SELECT MAX(t) AS last FROM (
                SELECT MAX(started_at) AS t FROM files WHERE connector = $1 AND started_at <= $2
                UNION ALL
                SELECT MAX(recorded_at) AS t FROM remote_files WHERE connector = $1 AND recorded_at <= $2) AS a",
        )
        .bind(connector)
        .bind(until_ms)
        .fetch_one(self.0)
        .await?;
        Ok(row.opt_int("last")?)
    }

    pub async fn missing_drops(&self, limit: i64) -> Result<Vec<MissingDrop>, StoreError> {
        let q = sqlx::query(
            "SELECT connector, expected_by, detected_at, last_arrival, webhook_id FROM missing_drops
             ORDER BY expected_by DESC LIMIT $1",
        )
        .bind(limit);
        self.all_of(q, rows::missing_drop).await
    }

    /// See `Store::missing_drop`: the deadline's row, once. On a shared
    /// store the primary key makes the event once-only across instances:
    /// the instance whose insert wins writes the outbox row in the same commit.
    pub async fn record_missing_drop(
        conn: &mut DB::Connection,
        drop: &MissingDrop,
        webhook_id: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO missing_drops (connector, expected_by, detected_at, last_arrival, webhook_id)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (connector, expected_by) DO NOTHING",
        )
        .bind(drop.connector.as_str())
        .bind(drop.expected_by_ms)
        .bind(drop.detected_at_ms)
        .bind(drop.last_arrival_ms)
        .bind(webhook_id)
        .execute(&mut *conn)
        .await?;
        Ok(done.rows() == 1)
    }

    // -------------------------------------------- delivery operations (issue 6)

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(self.0).await?;
        Ok(())
    }

    pub async fn subscriber_states(&self) -> Result<Vec<SubscriberState>, StoreError> {
        self.all_of(sqlx::query(SUBSCRIBER_STATE_SELECT), rows::subscriber_state)
            .await
    }

    pub async fn set_subscriber_state(&self, st: &SubscriberState) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO subscriber_state (subscriber, disabled_at, disabled_reason, disabled_url, parked_until, parked_reason)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (subscriber) DO UPDATE SET disabled_at = excluded.disabled_at,
                disabled_reason = excluded.disabled_reason, disabled_url = excluded.disabled_url,
                parked_until = excluded.parked_until, parked_reason = excluded.parked_reason",
        )
        .bind(st.subscriber.as_str())
        .bind(st.disabled_at)
        .bind(st.disabled_reason.as_deref())
        .bind(st.disabled_url.as_deref())
        .bind(st.parked_until)
        .bind(st.parked_reason.as_deref())
        .execute(self.0)
        .await?;
        Ok(())
    }

    /// Never-attempted deliveries only (no attempt of any kind: not even a
    /// probe, which leaves `attempts` alone but sets `last_error`): one that
    /// was attempted may have been processed by the receiver despite the
    /// error it answered.
    pub async fn coalesce(&self, subscriber: &str, all_lanes: bool) -> Result<u64, StoreError> {
        let (pending, lane, unleased) = (DB::PENDING_INDEX, DB::LANE_INDEX, DB::UNLEASED);
        let sql = format!(
            "UPDATE deliveries SET status = 3 WHERE subscriber = $1 AND status = 0 AND pos IN (
                SELECT d.pos FROM deliveries d {pending} JOIN outbox o ON o.pos = d.pos
                WHERE d.subscriber = $1 AND d.status = 0 AND o.key_hash IS NOT NULL{unleased}
                  AND d.attempts = 0 AND d.last_status IS NULL AND d.last_error IS NULL
                  AND ($2 OR EXISTS (SELECT 1 FROM deliveries h {lane} WHERE h.subscriber = $1 AND h.lane = d.lane
                                     AND h.status = 0 AND (h.attempts > 0 OR h.last_error IS NOT NULL)))
                  AND EXISTS (SELECT 1 FROM deliveries e {lane} JOIN outbox p ON p.pos = e.pos
                              WHERE e.subscriber = $1 AND e.lane = d.lane AND e.status = 0 AND e.pos > d.pos
                                AND p.key_hash = o.key_hash AND p.program = o.program AND p.case_id = o.case_id
                                AND p.milestone = o.milestone))"
        );
        let done = sqlx::query(&sql)
            .bind(subscriber)
            .bind(all_lanes)
            .execute(self.0)
            .await?;
        Ok(done.rows())
    }

    pub async fn replay(&self, f: &ReplayFilter) -> Result<ReplayCount, StoreError> {
        let mut tx = self.0.begin().await?;
        let mut count = ReplayCount::default();
        let mut q = Clause::new("UPDATE deliveries SET status = 0, attempts = 0");
        q.push(DB::LEASE_RESET);
        q.bind(", next_attempt_at = ", Value::Int(super::now_ms()));
        q.bind(
            ", delivered_at = NULL WHERE subscriber = ",
            Value::Text(f.subscriber.clone()),
        );
        q.push(" AND pos IN (SELECT d.pos FROM deliveries d JOIN outbox o ON o.pos = d.pos");
        rows::replay_where(&mut q, f);
        if !f.allow_purged {
            q.push(" AND o.body IS NOT NULL");
        }
        q.push(")");
        count.replayed = Self::query(&q).persistent(false).execute(&mut *tx).await?.rows();
        // Counted after the update, not before: a SQLite transaction that
        // starts with a read and then writes fails at once with SQLITE_BUSY
        // when another connection (the daemon, beside `hubsync replay` or a
        // second store handle) committed in between; one that starts with
        // the write waits its turn. The purged rows are not among the
        // updated ones, so the order does not change the count.
        if !f.allow_purged {
            let mut q = Clause::new("SELECT COUNT(*) AS n FROM deliveries d JOIN outbox o ON o.pos = d.pos");
            rows::replay_where(&mut q, f);
            q.push(" AND o.body IS NULL");
            count.purged = Self::query(&q)
                .persistent(false)
                .fetch_one(&mut *tx)
                .await?
                .int("n")? as u64;
        }
        tx.commit().await?;
        Ok(count)
    }

    /// Dead letters and pending messages keep their body: they may still be
    /// sent. Bundled SQLite has no UPDATE … LIMIT, hence the subquery.
    pub async fn purge_payloads(&self, cutoff_ms: i64, limit: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE outbox SET body = NULL WHERE pos IN (
                SELECT o.pos FROM outbox o
                WHERE o.created_at < $1 AND o.body IS NOT NULL
                  AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.pos = o.pos AND d.status IN (0, 2))
                LIMIT $2)",
        )
        .bind(cutoff_ms)
        .bind(limit)
        .execute(self.0)
        .await?;
        Ok(done.rows())
    }

    /// Messages matching `clause` (after [`MESSAGE_SELECT`]'s WHERE), with
    /// their deliveries.
    async fn messages_where(&self, clause: &str, binds: &[&str]) -> Result<Vec<MessageRow>, StoreError> {
        let sql = format!("{MESSAGE_SELECT} {clause}");
        let mut q = sqlx::query(&sql);
        for b in binds {
            q = q.bind(*b);
        }
        let mut out = all(&q.fetch_all(self.0).await?, rows::message_row)?;
        if out.is_empty() {
            return Ok(out);
        }
        let positions: Vec<i64> = out.iter().map(|m| m.pos).collect();
        let sql = format!(
            "SELECT {DELIVERY_COLS} FROM deliveries WHERE pos {} ORDER BY subscriber",
            DB::in_ints("$1")
        );
        let q = sqlx::query(&sql).bind(DB::ints(&positions));
        rows::attach_deliveries(&mut out, &q.fetch_all(self.0).await?)?;
        Ok(out)
    }

    pub async fn message(&self, id: &str) -> Result<Option<MessageRow>, StoreError> {
        Ok(self.messages_where("o.id = $1", &[id]).await?.into_iter().next())
    }

    pub async fn case_timeline(&self, program: &str, case_id: &str) -> Result<Vec<MessageRow>, StoreError> {
        self.messages_where(
            "o.program = $1 AND o.case_id = $2 ORDER BY o.seq, o.pos",
            &[program, case_id],
        )
        .await
    }

    pub async fn file_messages(&self, file_id: i64, limit: i64) -> Result<Vec<MessageRow>, StoreError> {
        let (id, limit) = (file_id.to_string(), limit.to_string());
        self.messages_where(
            "o.file_id = CAST($1 AS BIGINT) ORDER BY o.pos LIMIT CAST($2 AS BIGINT)",
            &[&id, &limit],
        )
        .await
    }

    pub async fn attempts(&self, message_id: &str) -> Result<Vec<AttemptRow>, StoreError> {
        let q = sqlx::query(
            "SELECT a.subscriber, a.attempt, a.at, a.duration_ms, a.status, a.error, a.response_excerpt
             FROM attempts a JOIN outbox o ON o.pos = a.pos WHERE o.id = $1 ORDER BY a.id",
        )
        .bind(message_id);
        self.all_of(q, rows::attempt_row).await
    }

    pub async fn dead_letters(&self, subscriber: &str, limit: i64) -> Result<Vec<DeadLetter>, StoreError> {
        let q = sqlx::query(
            "SELECT o.id, o.program, o.case_id, o.milestone, o.seq, o.created_at, d.attempts, d.last_status, d.last_error
             FROM deliveries d JOIN outbox o ON o.pos = d.pos
             WHERE d.subscriber = $1 AND d.status = 2 ORDER BY d.pos LIMIT $2",
        ).bind(subscriber).bind(limit);
        self.all_of(q, rows::dead_letter).await
    }

    // -------------------------------------------- operator console (issue 17)

    pub async fn file_summaries(&self, fq: &FileQuery) -> Result<Vec<FileSummary>, StoreError> {
        let q = rows::file_summaries_query(fq);
        all(
            &Self::query(&q).persistent(false).fetch_all(self.0).await?,
            rows::file_summary,
        )
    }

    pub async fn file_summary(&self, file_id: i64) -> Result<Option<FileSummary>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {FILE_COLS}, size, started_at, finished_at FROM files WHERE id = $1"
        ))
        .bind(file_id)
        .fetch_optional(self.0)
        .await?;
        Ok(row.as_ref().map(rows::file_summary).transpose()?)
    }

    pub async fn attempt_tallies(&self, since_ms: i64) -> Result<Vec<AttemptTally>, StoreError> {
        let q = sqlx::query(
            "SELECT subscriber, COUNT(*) AS attempts,
                    COALESCE(SUM(CASE WHEN status BETWEEN 200 AND 299 THEN 0 ELSE 1 END), 0) AS failed
             FROM attempts WHERE at >= $1 GROUP BY subscriber ORDER BY subscriber",
        )
        .bind(since_ms);
        self.all_of(q, rows::attempt_tally).await
    }

    pub async fn delivery_latencies(
        &self,
        subscriber: &str,
        since_ms: i64,
        limit: i64,
    ) -> Result<Vec<Latency>, StoreError> {
        let q = sqlx::query(
            "SELECT d.delivered_at, d.delivered_at - o.created_at AS latency
             FROM deliveries d JOIN outbox o ON o.pos = d.pos
             WHERE d.subscriber = $1 AND d.status = 1 AND d.delivered_at >= $2
             ORDER BY d.pos DESC LIMIT $3",
        )
        .bind(subscriber)
        .bind(since_ms)
        .bind(limit);
        self.all_of(q, rows::latency).await
    }

    /// Latest file-borne outbox rows (feed events have file id 0), newest first.
    pub async fn recent_case_rows(&self, limit: i64) -> Result<Vec<CaseRef>, StoreError> {
        let q = sqlx::query(
            "SELECT program, case_id, milestone, created_at FROM outbox WHERE file_id <> 0
             ORDER BY pos DESC LIMIT $1",
        )
        .bind(limit);
        self.all_of(q, rows::case_ref).await
    }

    pub async fn replay_preview(&self, f: &ReplayFilter) -> Result<ReplayCount, StoreError> {
        let mut q = Clause::new(
            "SELECT COALESCE(SUM(CASE WHEN o.body IS NULL THEN 0 ELSE 1 END), 0) AS kept,
                    COALESCE(SUM(CASE WHEN o.body IS NULL THEN 1 ELSE 0 END), 0) AS purged
             FROM deliveries d JOIN outbox o ON o.pos = d.pos",
        );
        rows::replay_where(&mut q, f);
        let row = Self::query(&q).persistent(false).fetch_one(self.0).await?;
        Ok(rows::replay_count(
            row.int("kept")?,
            row.int("purged")?,
            f.allow_purged,
        ))
    }

    pub async fn audit_record(&self, e: &AuditEntry) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO console_audit (at, operator, action, target, detail) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(e.at_ms)
        .bind(e.operator.as_str())
        .bind(e.action.as_str())
        .bind(e.target.as_str())
        .bind(e.detail.as_str())
        .execute(self.0)
        .await?;
        Ok(())
    }

    pub async fn audit_recent(&self, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        let q = sqlx::query(
            "SELECT at, operator, action, target, detail FROM console_audit ORDER BY id DESC LIMIT $1",
        )
        .bind(limit);
        self.all_of(q, rows::audit_entry).await
    }

    // -------------------------------------------- journey timers (issue 15)

    /// Open stalls per program and rule.
    pub async fn journey_open_counts(&self) -> Result<Vec<StallCount>, StoreError> {
        let q = sqlx::query(rows::OPEN_COUNTS);
        self.all_of(q, rows::stall_count).await
    }

    /// Armed timers per program and rule.
    pub async fn journey_armed_counts(&self) -> Result<Vec<ArmedCount>, StoreError> {
        let q = sqlx::query(rows::ARMED_COUNTS);
        self.all_of(q, rows::armed_count).await
    }

    pub async fn journey_case(&self, program: &str, case_id: &str) -> Result<Vec<TimerRow>, StoreError> {
        let sql = format!(
            "SELECT {} FROM journey_timers WHERE program = $1 AND case_id = $2 ORDER BY deadline_at, id",
            rows::TIMER_COLS
        );
        let q = sqlx::query(&sql).bind(program).bind(case_id);
        self.all_of(q, rows::timer_row).await
    }

    pub async fn journey_due(
        conn: &mut DB::Connection,
        program: &str,
        now_ms: i64,
        limit: i64,
    ) -> Result<Vec<TimerRow>, StoreError> {
        let sql = format!(
            "SELECT {} FROM journey_timers {}
             WHERE program = $1 AND status = 0 AND deadline_at <= $2 ORDER BY deadline_at, id LIMIT $3{}",
            rows::TIMER_COLS,
            DB::TIMERS_DUE_INDEX,
            DB::CLAIM_LOCK
        );
        let q = sqlx::query(&sql).bind(program).bind(now_ms).bind(limit);
        all(&q.fetch_all(&mut *conn).await?, rows::timer_row)
    }

    /// Streamed in the primary key's order (program, case_id, …): case
    /// order without a sort.
    pub async fn journey_state_each(
        &self,
        program: &str,
        codes: &[&str],
        visit: &mut (dyn FnMut(StateBody) + Send),
    ) -> Result<(), StoreError> {
        let sql = format!(
            "SELECT case_id, milestone, body FROM state WHERE program = $1 AND milestone {}
             ORDER BY program, case_id",
            DB::in_texts("$2")
        );
        let mut rs = sqlx::query(&sql)
            .bind(program)
            .bind(DB::texts(codes))
            .fetch(self.0);
        while let Some(r) = rs.try_next().await? {
            visit(rows::state_body(&r)?);
        }
        Ok(())
    }

    /// One statement per former status, so the caller can tell timers that
    /// never fired from open stalls that will now never resume.
    pub async fn journey_retire(
        conn: &mut DB::Connection,
        program: &str,
        rule: &str,
        now_ms: i64,
    ) -> Result<(u64, u64), StoreError> {
        let mut n = [0u64; 2];
        for (i, from) in [TimerStatus::Armed, TimerStatus::Stalled].into_iter().enumerate() {
            let done = sqlx::query(
                "UPDATE journey_timers SET status = $1, settled_at = $2, settled_by = $3
                 WHERE program = $4 AND rule = $5 AND status = $6",
            )
            .bind(TimerStatus::Cancelled.code())
            .bind(now_ms)
            .bind(RULE_REMOVED)
            .bind(program)
            .bind(rule)
            .bind(from.code())
            .execute(&mut *conn)
            .await?;
            n[i] = done.rows();
        }
        Ok((n[0], n[1]))
    }
}
