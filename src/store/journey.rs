//! Durable journey timers (issue 15): the backend dispatch. The types are
//! journey's (`journey::timer`); the SQL is in `sqlite/journey.rs` and
//! `postgres/journey.rs`.
//!
//! A timer is a row in `journey_timers`. It is armed, cleared and cancelled
//! by the chunk transaction that stores the milestone causing it, and fired
//! by [`crate::timers::fire`] in a transaction that also writes the
//! `journey.stalled` outbox row; so a timer changes state exactly when the
//! state or the outbox does, and never otherwise.

use super::{Store, StoreError, Tx};
use crate::journey::timer::{
    ArmedCount, SettleKind, StallCount, StateBody, TimerArm, TimerRow, TimerSettle, TimerStatus,
};

/// Which stored milestones [`Tx::journey_present`] looks for: those of
/// `program` among `case_ids` whose code is one of `codes`.
#[derive(Debug, Clone, Copy)]
pub struct Presence<'a> {
    pub program: &'a str,
    pub case_ids: &'a [&'a str],
    pub codes: &'a [&'a str],
}

/// Open timers that [`Tx::journey_settle`] settles `kind`'s way at `now_ms`.
#[derive(Debug, Clone, Copy)]
pub struct Settle<'a> {
    pub settles: &'a [TimerSettle],
    pub kind: SettleKind,
    pub now_ms: i64,
}

dispatch! { Store;
    /// The earliest deadline of an armed timer, any program (unix ms).
    pub async fn journey_next_due(&self) -> Result<Option<i64>, StoreError>;

    /// Open stalls (of `program`, or all), oldest deadline first.
    pub async fn journey_open(&self, program: Option<&str>, limit: i64) -> Result<Vec<TimerRow>, StoreError>;

}

dispatch! { Tx;
    /// `(case_id, milestone)` of stored milestones of `program` among
    /// `case_ids` whose code is one of `codes`: what stops a rule arming.
    pub async fn journey_present(&mut self, q: &Presence<'_>) -> Result<Vec<(String, String)>, StoreError> {
        if q.case_ids.is_empty() || q.codes.is_empty() {
            return Ok(Vec::new());
        }
    };

    /// Arms timers; returns how many rows were inserted or moved.
    pub async fn journey_arm(&mut self, arms: &[TimerArm]) -> Result<u64, StoreError> {
        if arms.is_empty() {
            return Ok(0);
        }
    };

    /// Settles the armed or stalled timers matching `settles`; returns them
    /// with their new status (a stalled one that resumed, for its event).
    pub async fn journey_settle(&mut self, s: &Settle<'_>) -> Result<Vec<TimerRow>, StoreError> {
        if s.settles.is_empty() {
            return Ok(Vec::new());
        }
    };

    /// Marks claimed timers stalled at `now_ms`, each with its stall
    /// message's id (`None`: recorded, not sent), or cancelled when their
    /// rule is gone (`status`; settled by [`crate::journey::timer::RULE_REMOVED`]).
    pub async fn journey_fired(
        &mut self,
        fired: &[(i64, TimerStatus, Option<String>)],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        if fired.is_empty() {
            return Ok(());
        }
    };

    /// Records the `journey.resumed` message ids of resumed timers.
    pub async fn journey_resumed(&mut self, resumed: &[(i64, String)]) -> Result<(), StoreError> {
        if resumed.is_empty() {
            return Ok(());
        }
    };
}

shared! { Store;
    /// Hands `visit` each stored milestone of `program` with one of `codes`
    /// (for journey statistics and dry runs), with its body, in case order
    /// (all of a case's rows together). Streamed: a program of a million
    /// cases is read a row at a time, never held whole.
    pub async fn journey_state_each(
        &self,
        program: &str,
        codes: &[&str],
        visit: &mut (dyn FnMut(StateBody) + Send),
    ) -> Result<(), StoreError> => reader;

    /// Open stalls counted by program and rule, oldest first.
    pub async fn journey_open_counts(&self) -> Result<Vec<StallCount>, StoreError> => reader;

    /// Armed timers counted by program and rule.
    pub async fn journey_armed_counts(&self) -> Result<Vec<ArmedCount>, StoreError> => reader;

    /// Every timer of a case, by deadline.
    pub async fn journey_case(&self, program: &str, case_id: &str) -> Result<Vec<TimerRow>, StoreError> => reader;
}

shared! { Tx;
    /// Claims up to `limit` armed timers of `program` due at `now_ms`,
    /// earliest first. On PostgreSQL the rows are locked `FOR UPDATE SKIP
    /// LOCKED`, so concurrent instances claim disjoint timers; the claim
    /// ends with this transaction.
    pub async fn journey_due(&mut self, program: &str, now_ms: i64, limit: i64) -> Result<Vec<TimerRow>, StoreError> => tx;

    /// Retires the open timers of `rule` of `program`, a rule no longer
    /// loaded: armed and stalled ones become cancelled at `now_ms`, settled
    /// by [`crate::journey::timer::RULE_REMOVED`]. Returns how many were armed and how many stalled.
    pub async fn journey_retire(&mut self, program: &str, rule: &str, now_ms: i64) -> Result<(u64, u64), StoreError> => tx;
}
