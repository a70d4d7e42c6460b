//! The bodies of `journey.stalled` and `journey.resumed` events, rendered
//! once when the stall is found (or the late milestone stored) and kept as
//! the exact bytes every attempt signs, like milestone bodies.
//!
//! Same envelope as milestones, `{"type", "timestamp", "data"}`, and the
//! same case identity and `sequence`, so receivers order and de-duplicate
//! them like any event of the case. No patient identifier is carried.

use serde::Serialize;

use crate::journey::timer::TimerRow;
use crate::journey::Rule;

/// The rule, as the event names it.
#[derive(Debug, Clone, Serialize)]
pub struct RuleRef<'a> {
    pub name: &'a str,
    pub severity: &'static str,
    pub trigger: &'a str,
    pub awaits: Vec<&'static str>,
    pub cancels: Vec<&'static str>,
    /// As written: `5 business days`, `72h`.
    pub deadline: &'a str,
    /// `occurred_at` or `learned_at`.
    pub from: &'static str,
}

impl<'a> RuleRef<'a> {
    pub fn of(rule: &'a Rule) -> RuleRef<'a> {
        RuleRef {
            name: &rule.name,
            severity: rule.severity.as_str(),
            trigger: &rule.trigger,
            awaits: rule.awaits.iter().map(|c| c.as_str()).collect(),
            cancels: rule.cancels.iter().map(|c| c.as_str()).collect(),
            deadline: &rule.deadline_text,
            from: rule.from.as_str(),
        }
    }
}

/// The trigger milestone a stall is about.
#[derive(Debug, Clone, Serialize)]
pub struct TriggerRef<'a> {
    pub milestone: &'a str,
    pub occurrence: &'a str,
    pub occurred_at: &'a str,
    /// When hubsync stored it (RFC 3339, UTC).
    pub learned_at: String,
}

#[derive(Serialize)]
struct Envelope<'a, D: Serialize> {
    #[serde(rename = "type")]
    kind: &'static str,
    timestamp: &'a str,
    data: D,
}

#[derive(Serialize)]
struct Stalled<'a> {
    program: &'a str,
    case_id: &'a str,
    milestone: &'static str,
    /// The stall happened at the deadline.
    occurred_at: &'a str,
    rule: RuleRef<'a>,
    trigger: TriggerRef<'a>,
    deadline_at: &'a str,
    detected_at: &'a str,
    /// How late the case was when the stall was found, in seconds.
    late_by_seconds: i64,
    source: Source<'a>,
    sequence: i64,
}

#[derive(Serialize)]
struct Resumed<'a> {
    program: &'a str,
    case_id: &'a str,
    milestone: &'static str,
    /// When the awaited milestone says it happened.
    occurred_at: &'a str,
    rule: RuleRef<'a>,
    trigger: TriggerRef<'a>,
    deadline_at: &'a str,
    /// The `journey.stalled` event this ends.
    stalled_id: &'a str,
    stalled_at: String,
    resumed_by: ResumedBy<'a>,
    /// How long after the deadline the awaited milestone was stored, in seconds.
    late_by_seconds: i64,
    source: Source<'a>,
    sequence: i64,
}

#[derive(Serialize)]
struct ResumedBy<'a> {
    milestone: &'a str,
    occurrence: &'a str,
    occurred_at: &'a str,
}

#[derive(Serialize)]
struct Source<'a> {
    connector: &'a str,
}

/// RFC 3339 of unix ms, in UTC with milliseconds.
pub fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn trigger_of(t: &TimerRow) -> TriggerRef<'_> {
    TriggerRef {
        milestone: &t.timer.trigger_milestone,
        occurrence: &t.timer.trigger_occurrence,
        occurred_at: &t.timer.trigger_occurred_at,
        learned_at: rfc3339_ms(t.timer.armed_at_ms),
    }
}

/// The body of a `journey.stalled` event for timer `t`, found at `now_ms`.
pub fn render_stalled(rule: &Rule, t: &TimerRow, deadline_at: &str, now_ms: i64, sequence: i64) -> String {
    let detected = rfc3339_ms(now_ms);
    serde_json::to_string(&Envelope {
        kind: "journey.stalled",
        timestamp: &detected,
        data: Stalled {
            program: &t.timer.program,
            case_id: &t.timer.case_id,
            milestone: "journey.stalled",
            occurred_at: deadline_at,
            rule: RuleRef::of(rule),
            trigger: trigger_of(t),
            deadline_at,
            detected_at: &detected,
            late_by_seconds: (now_ms - t.timer.deadline_ms).max(0) / 1000,
            source: Source {
                connector: &t.timer.connector,
            },
            sequence,
        },
    })
    .expect("a body of strings and numbers always serializes")
}

/// What resumed a stalled timer.
pub struct ResumedByMilestone<'a> {
    pub milestone: &'a str,
    pub occurrence: &'a str,
    pub occurred_at: &'a str,
    pub connector: &'a str,
}

/// The body of a `journey.resumed` event: the awaited milestone `by`
/// arrived (was stored at `now_ms`) after timer `t` stalled.
pub fn render_resumed(
    rule: &Rule,
    t: &TimerRow,
    deadline_at: &str,
    by: &ResumedByMilestone<'_>,
    now_ms: i64,
    sequence: i64,
) -> String {
    let now = rfc3339_ms(now_ms);
    serde_json::to_string(&Envelope {
        kind: "journey.resumed",
        timestamp: &now,
        data: Resumed {
            program: &t.timer.program,
            case_id: &t.timer.case_id,
            milestone: "journey.resumed",
            occurred_at: by.occurred_at,
            rule: RuleRef::of(rule),
            trigger: trigger_of(t),
            deadline_at,
            stalled_id: t.stalled_webhook.as_deref().unwrap_or(""),
            stalled_at: t.fired_at_ms.map(rfc3339_ms).unwrap_or_default(),
            resumed_by: ResumedBy {
                milestone: by.milestone,
                occurrence: by.occurrence,
                occurred_at: by.occurred_at,
            },
            late_by_seconds: (now_ms - t.timer.deadline_ms).max(0) / 1000,
            source: Source {
                connector: by.connector,
            },
            sequence,
        },
    })
    .expect("a body of strings and numbers always serializes")
}
