//! Journey timers as data: what a chunk arms and settles, and a stored
//! timer as read back. The journey layer owns these types (its plan
//! produces them); `store` persists them and `timers` fires and shows them.

use serde::Serialize;

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

/// `settled_by` of a timer cancelled because its rule is no longer loaded
/// (its file deleted, or the rule removed or renamed). Not a milestone code,
/// so it cannot be mistaken for a cancelling milestone.
pub const RULE_REMOVED: &str = "rule removed";

/// What a timer waits for: the rule, the case and the milestone that
/// triggered it, and until when. Armed as is ([`TimerArm`]), stored with
/// its progress ([`TimerRow`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Timer {
    pub program: String,
    pub case_id: String,
    pub rule: String,
    pub trigger_milestone: String,
    pub trigger_occurrence: String,
    pub trigger_occurred_at: String,
    pub connector: String,
    pub armed_at_ms: i64,
    pub deadline_ms: i64,
}

/// A timer to arm (insert, or move the deadline of a still-armed one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerArm {
    pub timer: Timer,
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

impl SettleKind {
    /// The status an (armed, stalled) timer takes when settled this way.
    pub fn settles_to(self) -> (TimerStatus, TimerStatus) {
        match self {
            SettleKind::Awaited => (TimerStatus::Cleared, TimerStatus::Resumed),
            SettleKind::Cancel => (TimerStatus::Cancelled, TimerStatus::Cancelled),
        }
    }
}

/// A stored timer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimerRow {
    #[serde(skip)]
    pub id: i64,
    /// Flattened: the JSON of a stored timer lists these fields first.
    #[serde(flatten)]
    pub timer: Timer,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A stored timer's JSON lists what it waits for first, then its
    /// progress, as it did before [`Timer`] was split out of [`TimerRow`].
    #[test]
    fn a_stored_timer_serializes_flat() {
        let row = TimerRow {
            id: 7,
            timer: Timer {
                program: "P".into(),
                case_id: "C".into(),
                rule: "r".into(),
                trigger_milestone: "pa.approved".into(),
                trigger_occurrence: String::new(),
                trigger_occurred_at: "2026-11-30".into(),
                connector: "acme".into(),
                armed_at_ms: 1,
                deadline_ms: 2,
            },
            status: TimerStatus::Stalled,
            fired_at_ms: Some(3),
            settled_at_ms: None,
            settled_by: None,
            stalled_webhook: Some("msg_1".into()),
            resumed_webhook: None,
        };
        assert_eq!(
            serde_json::to_string(&row).expect("serializes"),
            r#"{"program":"P","case_id":"C","rule":"r","trigger_milestone":"pa.approved","trigger_occurrence":"","trigger_occurred_at":"2026-11-30","connector":"acme","armed_at_ms":1,"deadline_ms":2,"status":"stalled","fired_at_ms":3,"settled_at_ms":null,"settled_by":null,"stalled_webhook":"msg_1","resumed_webhook":null}"#
        );
    }
}
