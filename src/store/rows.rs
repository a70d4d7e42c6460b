//! What both backends share below their SQL: reading a stored row into the
//! type it persists, and the bookkeeping around a query that does not
//! depend on the dialect (a replay's WHERE clause, a file's finish columns,
//! sequence numbers handed back in input order).
//!
//! Each backend keeps only its statements and how it binds them; what a
//! column means is said once, here.

use std::collections::HashMap;

use sqlx::postgres::{PgRow, Postgres};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Type, ValueRef};

use super::{
    AttemptRow, AttemptTally, AuditEntry, CaseRef, DeadLetter, DeliveryRow, FileQuery, FileRow, FileStatus,
    FileSummary, Latency, MessageRow, MissingDrop, RejectRow, ReplayCount, ReplayFilter, StoreError,
    SubscriberState, SubscriberStats,
};
use crate::diff::StateRow;
use crate::journey::timer::{ArmedCount, StallCount, StateBody, Timer, TimerRow, TimerStatus};
use crate::model::Counts;
use crate::outbox::{DeliveryStatus, Due};

/// A column of either backend's row, by name. Integers come back as `i64`
/// whatever their stored width: SQLite has one integer type, while the
/// PostgreSQL schema keeps attempt counts, statuses and HTTP codes in `int`
/// and `smallint`. One implementation per backend row type.
pub(crate) trait Columns {
    fn text(&self, col: &str) -> Result<String, sqlx::Error>;
    fn opt_text(&self, col: &str) -> Result<Option<String>, sqlx::Error>;
    fn opt_int(&self, col: &str) -> Result<Option<i64>, sqlx::Error>;

    fn int(&self, col: &str) -> Result<i64, sqlx::Error> {
        self.opt_int(col)?.ok_or_else(|| sqlx::Error::ColumnDecode {
            index: col.to_string(),
            source: "unexpected NULL".into(),
        })
    }
}

impl Columns for SqliteRow {
    fn text(&self, col: &str) -> Result<String, sqlx::Error> {
        self.try_get(col)
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>, sqlx::Error> {
        self.try_get(col)
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>, sqlx::Error> {
        self.try_get(col)
    }
}

impl Columns for PgRow {
    fn text(&self, col: &str) -> Result<String, sqlx::Error> {
        self.try_get(col)
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>, sqlx::Error> {
        self.try_get(col)
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>, sqlx::Error> {
        // The column's declared type picks the decoder (decoding an int4 as
        // an i64 is an error, not a widening).
        let ty = self.try_get_raw(col)?.type_info().into_owned();
        if <i32 as Type<Postgres>>::compatible(&ty) {
            Ok(self.try_get::<Option<i32>, _>(col)?.map(i64::from))
        } else if <i16 as Type<Postgres>>::compatible(&ty) {
            Ok(self.try_get::<Option<i16>, _>(col)?.map(i64::from))
        } else {
            self.try_get(col)
        }
    }
}

/// Every row of `rows` through `f`.
pub(crate) fn all<R, T>(rows: &[R], f: impl Fn(&R) -> Result<T, sqlx::Error>) -> Result<Vec<T>, StoreError> {
    rows.iter()
        .map(f)
        .collect::<Result<_, _>>()
        .map_err(StoreError::from)
}

/// The ledger columns [`file_row`] reads.
pub(crate) const FILE_COLS: &str =
    "id, connector, sha256, name, status, records_done, records_read, emitted, \
     unchanged, rejected, filtered, deltas, error";

pub(crate) fn file_row(r: &impl Columns) -> Result<FileRow, sqlx::Error> {
    let n = |c| r.int(c).map(|v| v as u64);
    Ok(FileRow {
        id: r.int("id")?,
        connector: r.text("connector")?,
        sha256: r.text("sha256")?,
        name: r.text("name")?,
        status: FileStatus::parse(&r.text("status")?),
        records_done: n("records_done")?,
        counts: Counts {
            read: n("records_read")?,
            emitted: n("emitted")?,
            unchanged: n("unchanged")?,
            rejected: n("rejected")?,
            filtered: n("filtered")?,
            deltas: n("deltas")?,
        },
        error: r.opt_text("error")?,
    })
}

/// A [`file_row`] with `size, started_at, finished_at` after [`FILE_COLS`].
pub(crate) fn file_summary(r: &impl Columns) -> Result<FileSummary, sqlx::Error> {
    Ok(FileSummary {
        file: file_row(r)?,
        size: r.int("size")? as u64,
        started_at_ms: r.int("started_at")?,
        finished_at_ms: r.opt_int("finished_at")?,
    })
}

/// One stored state, straight into diff's type: the strings are moved out
/// of the row's decode, nothing is copied twice.
pub(crate) fn state_row(r: &impl Columns) -> Result<StateRow, sqlx::Error> {
    Ok(StateRow {
        program: r.text("program")?,
        case_id: r.text("case_id")?,
        milestone: r.text("milestone")?,
        occurrence: r.text("occurrence")?,
        key_hash: r.int("key_hash")? as u64,
        content_hash: r.int("content_hash")? as u64,
        body: r.text("body")?,
    })
}

pub(crate) fn reject_row(r: &impl Columns) -> Result<RejectRow, sqlx::Error> {
    Ok(RejectRow {
        locator: r.text("locator")?,
        column: r.opt_text("col")?,
        reason: r.text("reason")?,
    })
}

pub(crate) fn due(r: &impl Columns) -> Result<Due, sqlx::Error> {
    Ok(Due {
        pos: r.int("pos")?,
        lane: r.int("lane")?,
        attempts: r.int("attempts")? as u32,
        webhook_id: r.text("id")?,
        body: r.opt_text("body")?,
        connector: r.text("connector")?,
        program: r.text("program")?,
        case_id: r.text("case_id")?,
        milestone: r.text("milestone")?,
        seq: r.int("seq")?,
        created_at: r.int("created_at")?,
    })
}

/// Per-subscriber counts, the oldest pending message's age taken at `now`.
pub(crate) fn subscriber_stats(r: &impl Columns, now: i64) -> Result<SubscriberStats, sqlx::Error> {
    Ok(SubscriberStats {
        subscriber: r.text("subscriber")?,
        pending: r.int("pending")?,
        delivered: r.int("delivered")?,
        failed: r.int("failed")?,
        coalesced: r.int("coalesced")?,
        failing: r.int("failing")?,
        oldest_pending_ms: r.opt_int("oldest")?.map(|t| now - t),
    })
}

pub(crate) const SUBSCRIBER_STATE_SELECT: &str =
    "SELECT subscriber, disabled_at, disabled_reason, disabled_url, parked_until, parked_reason
     FROM subscriber_state ORDER BY subscriber";

pub(crate) fn subscriber_state(r: &impl Columns) -> Result<SubscriberState, sqlx::Error> {
    Ok(SubscriberState {
        subscriber: r.text("subscriber")?,
        disabled_at: r.opt_int("disabled_at")?,
        disabled_reason: r.opt_text("disabled_reason")?,
        disabled_url: r.opt_text("disabled_url")?,
        parked_until: r.opt_int("parked_until")?,
        parked_reason: r.opt_text("parked_reason")?,
    })
}

/// The outbox columns (`outbox o` left-joined with `files f`) [`message_row`] reads.
pub(crate) const MESSAGE_SELECT: &str =
    "SELECT o.pos, o.id, o.connector, o.program, o.case_id, o.milestone, o.seq, o.created_at, o.body,
            f.name AS file, f.sha256
     FROM outbox o LEFT JOIN files f ON f.id = o.file_id WHERE";

/// A message without its deliveries (see [`attach_deliveries`]).
pub(crate) fn message_row(r: &impl Columns) -> Result<MessageRow, sqlx::Error> {
    Ok(MessageRow {
        pos: r.int("pos")?,
        id: r.text("id")?,
        connector: r.text("connector")?,
        program: r.text("program")?,
        case_id: r.text("case_id")?,
        milestone: r.text("milestone")?,
        sequence: r.int("seq")?,
        created_at_ms: r.int("created_at")?,
        file: r.opt_text("file")?,
        sha256: r.opt_text("sha256")?,
        body: r.opt_text("body")?,
        deliveries: Vec::new(),
    })
}

/// The delivery columns [`attach_deliveries`] reads.
pub(crate) const DELIVERY_COLS: &str =
    "pos, subscriber, status, attempts, last_status, last_error, delivered_at";

/// Hands each delivery row to its message, by position, in row order.
pub(crate) fn attach_deliveries(out: &mut [MessageRow], rows: &[impl Columns]) -> Result<(), StoreError> {
    let slot: HashMap<i64, usize> = out.iter().enumerate().map(|(i, m)| (m.pos, i)).collect();
    for r in rows {
        if let Some(i) = slot.get(&r.int("pos")?) {
            out[*i].deliveries.push(DeliveryRow {
                subscriber: r.text("subscriber")?,
                status: DeliveryStatus::from_code(r.int("status")?),
                attempts: r.int("attempts")?,
                last_status: r.opt_int("last_status")?,
                last_error: r.opt_text("last_error")?,
                delivered_at_ms: r.opt_int("delivered_at")?,
            });
        }
    }
    Ok(())
}

pub(crate) fn attempt_row(r: &impl Columns) -> Result<AttemptRow, sqlx::Error> {
    Ok(AttemptRow {
        subscriber: r.text("subscriber")?,
        attempt: r.int("attempt")?,
        at_ms: r.int("at")?,
        duration_ms: r.int("duration_ms")?,
        status: r.opt_int("status")?,
        error: r.opt_text("error")?,
        response_excerpt: r.opt_text("response_excerpt")?,
    })
}

pub(crate) fn dead_letter(r: &impl Columns) -> Result<DeadLetter, sqlx::Error> {
    Ok(DeadLetter {
        id: r.text("id")?,
        program: r.text("program")?,
        case_id: r.text("case_id")?,
        milestone: r.text("milestone")?,
        sequence: r.int("seq")?,
        created_at_ms: r.int("created_at")?,
        attempts: r.int("attempts")?,
        last_status: r.opt_int("last_status")?,
        last_error: r.opt_text("last_error")?,
    })
}

pub(crate) fn missing_drop(r: &impl Columns) -> Result<MissingDrop, sqlx::Error> {
    Ok(MissingDrop {
        connector: r.text("connector")?,
        expected_by_ms: r.int("expected_by")?,
        detected_at_ms: r.int("detected_at")?,
        last_arrival_ms: r.opt_int("last_arrival")?,
        webhook_id: r.opt_text("webhook_id")?,
    })
}

pub(crate) fn attempt_tally(r: &impl Columns) -> Result<AttemptTally, sqlx::Error> {
    Ok(AttemptTally {
        subscriber: r.text("subscriber")?,
        attempts: r.int("attempts")?,
        failed: r.int("failed")?,
    })
}

pub(crate) fn latency(r: &impl Columns) -> Result<Latency, sqlx::Error> {
    Ok(Latency {
        delivered_at_ms: r.int("delivered_at")?,
        latency_ms: r.int("latency")?,
    })
}

pub(crate) fn case_ref(r: &impl Columns) -> Result<CaseRef, sqlx::Error> {
    Ok(CaseRef {
        program: r.text("program")?,
        case_id: r.text("case_id")?,
        milestone: r.text("milestone")?,
        created_at_ms: r.int("created_at")?,
    })
}

pub(crate) fn audit_entry(r: &impl Columns) -> Result<AuditEntry, sqlx::Error> {
    Ok(AuditEntry {
        at_ms: r.int("at")?,
        operator: r.text("operator")?,
        action: r.text("action")?,
        target: r.text("target")?,
        detail: r.text("detail")?,
    })
}

/// The columns every timer query selects, in [`TimerRow`] order.
pub(crate) const TIMER_COLS: &str = "id, program, case_id, rule, trigger_milestone, trigger_occurrence, \
     trigger_occurred_at, connector, armed_at, deadline_at, status, fired_at, settled_at, settled_by, \
     stalled_webhook, resumed_webhook";

/// [`TIMER_COLS`], each qualified by `table` (an UPDATE … FROM's RETURNING).
pub(crate) fn timer_cols_of(table: &str) -> String {
    TIMER_COLS
        .split(", ")
        .map(|c| format!("{table}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How arming meets a timer of the same trigger: a rearm moves a still-armed
/// one's deadline; a settled timer stays settled, so the same trigger again
/// (a re-sent snapshot) arms nothing.
pub(crate) fn arm_conflict(rearm: bool) -> &'static str {
    if rearm {
        "ON CONFLICT (program, case_id, rule, trigger_milestone, trigger_occurrence) DO UPDATE SET
            trigger_occurred_at = excluded.trigger_occurred_at, deadline_at = excluded.deadline_at
         WHERE journey_timers.status = 0"
    } else {
        "ON CONFLICT (program, case_id, rule, trigger_milestone, trigger_occurrence) DO NOTHING"
    }
}

pub(crate) fn timer_row(r: &impl Columns) -> Result<TimerRow, sqlx::Error> {
    Ok(TimerRow {
        id: r.int("id")?,
        timer: Timer {
            program: r.text("program")?,
            case_id: r.text("case_id")?,
            rule: r.text("rule")?,
            trigger_milestone: r.text("trigger_milestone")?,
            trigger_occurrence: r.text("trigger_occurrence")?,
            trigger_occurred_at: r.text("trigger_occurred_at")?,
            connector: r.text("connector")?,
            armed_at_ms: r.int("armed_at")?,
            deadline_ms: r.int("deadline_at")?,
        },
        status: TimerStatus::from_code(r.int("status")?),
        fired_at_ms: r.opt_int("fired_at")?,
        settled_at_ms: r.opt_int("settled_at")?,
        settled_by: r.opt_text("settled_by")?,
        stalled_webhook: r.opt_text("stalled_webhook")?,
        resumed_webhook: r.opt_text("resumed_webhook")?,
    })
}

pub(crate) fn state_body(r: &impl Columns) -> Result<StateBody, sqlx::Error> {
    Ok(StateBody {
        case_id: r.text("case_id")?,
        milestone: r.text("milestone")?,
        body: r.text("body")?,
    })
}

/// Open stalls per program and rule (walks `journey_timers_open`).
pub(crate) const OPEN_COUNTS: &str =
    "SELECT program, rule, COUNT(*) AS open, MIN(deadline_at) AS oldest FROM journey_timers WHERE status = 1
     GROUP BY program, rule ORDER BY MIN(deadline_at)";

pub(crate) fn stall_count(r: &impl Columns) -> Result<StallCount, sqlx::Error> {
    Ok(StallCount {
        program: r.text("program")?,
        rule: r.text("rule")?,
        open: r.int("open")?,
        oldest_deadline_ms: r.int("oldest")?,
    })
}

/// Armed timers per program and rule (walks `journey_timers_armed`).
pub(crate) const ARMED_COUNTS: &str =
    "SELECT program, rule, COUNT(*) AS armed FROM journey_timers WHERE status = 0
     GROUP BY program, rule ORDER BY program, rule";

pub(crate) fn armed_count(r: &impl Columns) -> Result<ArmedCount, sqlx::Error> {
    Ok(ArmedCount {
        program: r.text("program")?,
        rule: r.text("rule")?,
        armed: r.int("armed")?,
    })
}

// ------------------------------------------------ bookkeeping

/// The ledger columns a chunk's progress sets besides its counts: the
/// status, an error to keep and the finish time (`None`: still processing).
pub(crate) fn finish_cols(
    finish: Option<(FileStatus, Option<&str>)>,
    now: i64,
) -> (&'static str, Option<&str>, Option<i64>) {
    match finish {
        Some((s, e)) => (s.as_str(), e, Some(now)),
        None => (FileStatus::Processing.as_str(), None, None),
    }
}

/// Each case's last sequence, in the order of `cases`, from what the
/// upsert returned (a case it did not return has 0).
pub(crate) fn seqs_in_order(
    cases: &[(&str, &str, i64)],
    returned: impl IntoIterator<Item = (String, String, i64)>,
) -> Vec<i64> {
    let seqs: HashMap<(String, String), i64> = returned.into_iter().map(|(p, c, s)| ((p, c), s)).collect();
    cases
        .iter()
        .map(|(p, c, _)| seqs.get(&(p.to_string(), c.to_string())).copied().unwrap_or(0))
        .collect()
}

/// What a replay preview reports from the (body kept, body purged) counts
/// of the deliveries it matched.
pub(crate) fn replay_count(kept: i64, purged: i64, allow_purged: bool) -> ReplayCount {
    if allow_purged {
        ReplayCount {
            replayed: (kept + purged) as u64,
            purged: 0,
        }
    } else {
        ReplayCount {
            replayed: kept as u64,
            purged: purged as u64,
        }
    }
}

/// A value bound to a numbered placeholder of a [`Clause`].
pub(crate) enum Value {
    Text(String),
    Int(i64),
}

/// A statement built from optional criteria, each value bound to the next
/// numbered placeholder (`$N`), so one text serves both backends.
pub(crate) struct Clause {
    pub sql: String,
    pub values: Vec<Value>,
}

impl Clause {
    pub fn new(sql: impl Into<String>) -> Clause {
        Clause {
            sql: sql.into(),
            values: Vec::new(),
        }
    }

    pub fn push(&mut self, sql: &str) -> &mut Clause {
        self.sql.push_str(sql);
        self
    }

    /// Appends `sql` and a placeholder for `v`.
    pub fn bind(&mut self, sql: &str, v: Value) -> &mut Clause {
        self.values.push(v);
        let n = self.values.len();
        self.sql.push_str(sql);
        self.sql.push_str(&format!("${n}"));
        self
    }
}

/// The WHERE clause of a replay (over `deliveries d JOIN outbox o`): every
/// given criterion must hold; settled deliveries only.
pub(crate) fn replay_where(q: &mut Clause, f: &ReplayFilter) {
    q.bind(" WHERE d.subscriber = ", Value::Text(f.subscriber.clone()));
    if f.failed_only {
        q.push(" AND d.status = 2");
    } else {
        q.push(" AND d.status <> 0");
    }
    if let Some(t) = f.since_ms {
        q.bind(" AND o.created_at >= ", Value::Int(t));
    }
    if let Some(t) = f.until_ms {
        q.bind(" AND o.created_at < ", Value::Int(t));
    }
    if let Some(p) = &f.program {
        q.bind(" AND o.program = ", Value::Text(p.clone()));
    }
    if let Some(c) = &f.case_id {
        q.bind(" AND o.case_id = ", Value::Text(c.clone()));
    }
    if let Some(m) = &f.message_id {
        q.bind(" AND o.id = ", Value::Text(m.clone()));
    }
}

/// The console's ledger query: [`file_summary`] rows matching `fq`, newest first.
pub(crate) fn file_summaries_query(fq: &FileQuery) -> Clause {
    let mut q = Clause::new(format!(
        "SELECT {FILE_COLS}, size, started_at, finished_at FROM files WHERE 1 = 1"
    ));
    if let Some(c) = &fq.connector {
        q.bind(" AND connector = ", Value::Text(c.clone()));
    }
    if let Some(t) = fq.since_ms {
        q.bind(" AND started_at >= ", Value::Int(t));
    }
    if fq.failed_only {
        q.push(" AND status = 'failed'");
    }
    q.bind(" ORDER BY id DESC LIMIT ", Value::Int(fq.limit));
    q
}
