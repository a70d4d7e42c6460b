//! Durable journey timers (issue 15): the types and the backend dispatch.
//! The SQL is in `sqlite/journey.rs` and `postgres/journey.rs`.
//!
//! A timer is a row in `journey_timers`. It is armed, cleared and cancelled
//! by the chunk transaction that stores the milestone causing it, and fired
//! by [`crate::journey::fire`] in a transaction that also writes the
//! `journey.stalled` outbox row; so a timer changes state exactly when the
//! state or the outbox does, and never otherwise.

use serde::Serialize;

use super::{Store, StoreError, Tx};

/// Where a timer stands. Stored as an integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TimerStatus {
    /// Waiting for an awaited milestone or its deadline.
    Armed,
    /// The deadline passed first: an open stall.
    Stalled,
    /// An awaited milestone arrived before the deadline.
    Cleared,
    /// A cancelling milestone arrived (before or after a stall).
    Cancelled,
    /// An awaited milestone arrived after the stall.
    Resumed,
}

impl TimerStatus {
    pub fn code(self) -> i64 {
        match self {
            TimerStatus::Armed => 0,
            TimerStatus::Stalled => 1,
            TimerStatus::Cleared => 2,
            TimerStatus::Cancelled => 3,
            TimerStatus::Resumed => 4,
        }
    }
    pub fn from_code(c: i64) -> TimerStatus {
        match c {
            1 => TimerStatus::Stalled,
            2 => TimerStatus::Cleared,
            3 => TimerStatus::Cancelled,
            4 => TimerStatus::Resumed,
            _ => TimerStatus::Armed,
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            TimerStatus::Armed => "armed",
            TimerStatus::Stalled => "stalled",
            TimerStatus::Cleared => "cleared",
            TimerStatus::Cancelled => "cancelled",
            TimerStatus::Resumed => "resumed",
        }
    }
}

/// A timer to arm (insert, or move the deadline of a still-armed one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerArm {
    pub program: String,
    pub case_id: String,
    pub rule: String,
    pub trigger_milestone: String,
    pub trigger_occurrence: String,
    pub trigger_occurred_at: String,
    pub connector: String,
    pub armed_at_ms: i64,
    pub deadline_ms: i64,
    /// A corrected trigger moves an armed timer's deadline (anchor
    /// `occurred_at`); with anchor `learned_at` the first sighting counts.
    pub rearm: bool,
}

/// Settle the open timers of a rule on a case: an awaited milestone (or a
/// cancelling one, per [`SettleKind`]) arrived.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimerSettle {
    pub program: String,
    pub case_id: String,
    pub rule: String,
    /// The milestone code that settles it.
    pub by: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettleKind {
    /// armed → cleared, stalled → resumed.
    Awaited,
    /// armed or stalled → cancelled.
    Cancel,
}

/// A stored timer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimerRow {
    #[serde(skip)]
    pub id: i64,
    pub program: String,
    pub case_id: String,
    pub rule: String,
    pub trigger_milestone: String,
    pub trigger_occurrence: String,
    pub trigger_occurred_at: String,
    pub connector: String,
    pub armed_at_ms: i64,
    pub deadline_ms: i64,
    pub status: TimerStatus,
    pub fired_at_ms: Option<i64>,
    pub settled_at_ms: Option<i64>,
    pub settled_by: Option<String>,
    pub stalled_webhook: Option<String>,
    pub resumed_webhook: Option<String>,
}

/// Open stalls of one rule of one program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StallCount {
    pub program: String,
    pub rule: String,
    pub open: i64,
    /// The earliest deadline among them (unix ms): the oldest stall.
    pub oldest_deadline_ms: i64,
}

/// Armed timers of one rule of one program (a gauge).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArmedCount {
    pub program: String,
    pub rule: String,
    pub armed: i64,
}

/// A stored milestone, for journey statistics: its case, code and body.
#[derive(Debug, Clone)]
pub struct StateBody {
    pub case_id: String,
    pub milestone: String,
    pub body: String,
}

impl Store {
    /// The earliest deadline of an armed timer, any program (unix ms).
    pub async fn journey_next_due(&self) -> Result<Option<i64>, StoreError> {
        match self {
            Store::Sqlite(s) => s.journey_next_due().await,
            Store::Postgres(s) => s.journey_next_due().await,
        }
    }

    /// Open stalls (of `program`, or all), oldest deadline first.
    pub async fn journey_open(&self, program: Option<&str>, limit: i64) -> Result<Vec<TimerRow>, StoreError> {
        match self {
            Store::Sqlite(s) => s.journey_open(program, limit).await,
            Store::Postgres(s) => s.journey_open(program, limit).await,
        }
    }

    /// Open stalls counted by program and rule, oldest first.
    pub async fn journey_open_counts(&self) -> Result<Vec<StallCount>, StoreError> {
        match self {
            Store::Sqlite(s) => s.journey_open_counts().await,
            Store::Postgres(s) => s.journey_open_counts().await,
        }
    }

    /// Armed timers counted by program and rule.
    pub async fn journey_armed_counts(&self) -> Result<Vec<ArmedCount>, StoreError> {
        match self {
            Store::Sqlite(s) => s.journey_armed_counts().await,
            Store::Postgres(s) => s.journey_armed_counts().await,
        }
    }

    /// Every timer of a case, by deadline.
    pub async fn journey_case(&self, program: &str, case_id: &str) -> Result<Vec<TimerRow>, StoreError> {
        match self {
            Store::Sqlite(s) => s.journey_case(program, case_id).await,
            Store::Postgres(s) => s.journey_case(program, case_id).await,
        }
    }

    /// Stored milestones of `program` with one of `codes` (for journey
    /// statistics), with their bodies.
    pub async fn journey_state(&self, program: &str, codes: &[&str]) -> Result<Vec<StateBody>, StoreError> {
        match self {
            Store::Sqlite(s) => s.journey_state(program, codes).await,
            Store::Postgres(s) => s.journey_state(program, codes).await,
        }
    }
}

impl Tx {
    /// `(case_id, milestone)` of stored milestones of `program` among
    /// `case_ids` whose code is one of `codes`: what stops a rule arming.
    pub async fn journey_present(
        &mut self,
        program: &str,
        case_ids: &[&str],
        codes: &[&str],
    ) -> Result<Vec<(String, String)>, StoreError> {
        if case_ids.is_empty() || codes.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            Tx::Sqlite(t) => t.journey_present(program, case_ids, codes).await,
            Tx::Postgres(t) => t.journey_present(program, case_ids, codes).await,
        }
    }

    /// Arms timers; returns how many rows were inserted or moved.
    pub async fn journey_arm(&mut self, arms: &[TimerArm]) -> Result<u64, StoreError> {
        if arms.is_empty() {
            return Ok(0);
        }
        match self {
            Tx::Sqlite(t) => t.journey_arm(arms).await,
            Tx::Postgres(t) => t.journey_arm(arms).await,
        }
    }

    /// Settles the armed or stalled timers matching `settles`; returns them
    /// with their new status (a stalled one that resumed, for its event).
    pub async fn journey_settle(
        &mut self,
        settles: &[TimerSettle],
        kind: SettleKind,
        now_ms: i64,
    ) -> Result<Vec<TimerRow>, StoreError> {
        if settles.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            Tx::Sqlite(t) => t.journey_settle(settles, kind, now_ms).await,
            Tx::Postgres(t) => t.journey_settle(settles, kind, now_ms).await,
        }
    }

    /// Claims up to `limit` armed timers of `program` due at `now_ms`,
    /// earliest first. On PostgreSQL the rows are locked `FOR UPDATE SKIP
    /// LOCKED`, so concurrent instances claim disjoint timers; the claim
    /// ends with this transaction.
    pub async fn journey_due(
        &mut self,
        program: &str,
        now_ms: i64,
        limit: i64,
    ) -> Result<Vec<TimerRow>, StoreError> {
        match self {
            Tx::Sqlite(t) => t.journey_due(program, now_ms, limit).await,
            Tx::Postgres(t) => t.journey_due(program, now_ms, limit).await,
        }
    }

    /// Marks claimed timers stalled at `now_ms`, each with its stall
    /// message's id (`None`: recorded, not sent), or cancelled when their
    /// rule is gone (`status`).
    pub async fn journey_fired(
        &mut self,
        fired: &[(i64, TimerStatus, Option<String>)],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        if fired.is_empty() {
            return Ok(());
        }
        match self {
            Tx::Sqlite(t) => t.journey_fired(fired, now_ms).await,
            Tx::Postgres(t) => t.journey_fired(fired, now_ms).await,
        }
    }

    /// Records the `journey.resumed` message ids of resumed timers.
    pub async fn journey_resumed(&mut self, resumed: &[(i64, String)]) -> Result<(), StoreError> {
        if resumed.is_empty() {
            return Ok(());
        }
        match self {
            Tx::Sqlite(t) => t.journey_resumed(resumed).await,
            Tx::Postgres(t) => t.journey_resumed(resumed).await,
        }
    }
}

/// The columns every timer query selects, in [`TimerRow`] order.
pub(crate) const TIMER_COLS: &str = "id, program, case_id, rule, trigger_milestone, trigger_occurrence, \
     trigger_occurred_at, connector, armed_at, deadline_at, status, fired_at, settled_at, settled_by, \
     stalled_webhook, resumed_webhook";

/// A [`TimerRow`] from a row of either backend (the same column names and
/// integer widths in both schemas).
macro_rules! timer_row {
    ($r:expr) => {{
        let r = $r;
        Ok::<_, sqlx::Error>($crate::store::journey::TimerRow {
            id: r.try_get("id")?,
            program: r.try_get("program")?,
            case_id: r.try_get("case_id")?,
            rule: r.try_get("rule")?,
            trigger_milestone: r.try_get("trigger_milestone")?,
            trigger_occurrence: r.try_get("trigger_occurrence")?,
            trigger_occurred_at: r.try_get("trigger_occurred_at")?,
            connector: r.try_get("connector")?,
            armed_at_ms: r.try_get("armed_at")?,
            deadline_ms: r.try_get("deadline_at")?,
            status: $crate::store::journey::TimerStatus::from_code(r.try_get("status")?),
            fired_at_ms: r.try_get("fired_at")?,
            settled_at_ms: r.try_get("settled_at")?,
            settled_by: r.try_get("settled_by")?,
            stalled_webhook: r.try_get("stalled_webhook")?,
            resumed_webhook: r.try_get("resumed_webhook")?,
        })
    }};
}
pub(crate) use timer_row;
