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

/// The data of both journey events: the case, the rule, the trigger and the
/// deadline, then what is particular to the kind (`detail`, flattened in
/// place so the field order of the body stays as documented), then how late,
/// where from and the case sequence.
#[derive(Serialize)]
struct Event<'a, D: Serialize> {
    program: &'a str,
    case_id: &'a str,
    milestone: &'static str,
    /// `journey.stalled`: the deadline. `journey.resumed`: when the awaited
    /// milestone says it happened.
    occurred_at: &'a str,
    rule: RuleRef<'a>,
    trigger: TriggerRef<'a>,
    deadline_at: &'a str,
    #[serde(flatten)]
    detail: D,
    /// Stalled: how late the case was when the stall was found. Resumed: how
    /// long after the deadline the awaited milestone was stored. Seconds.
    late_by_seconds: i64,
    source: Source<'a>,
    sequence: i64,
}

#[derive(Serialize)]
struct Stalled<'a> {
    detected_at: &'a str,
}

#[derive(Serialize)]
struct Resumed<'a> {
    /// The `journey.stalled` event this ends.
    stalled_id: &'a str,
    stalled_at: String,
    resumed_by: ResumedBy<'a>,
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

/// What differs between the two kinds of journey event, besides `detail`.
struct Kind<'a, D> {
    kind: &'static str,
    occurred_at: &'a str,
    connector: &'a str,
    detail: D,
}

/// Renders one journey event about timer `t`, at `now_ms` (`now` in RFC 3339).
fn render<D: Serialize>(
    k: Kind<'_, D>,
    rule: &Rule,
    t: &TimerRow,
    deadline_at: &str,
    now_ms: i64,
    now: &str,
    sequence: i64,
) -> String {
    serde_json::to_string(&Envelope {
        kind: k.kind,
        timestamp: now,
        data: Event {
            program: &t.timer.program,
            case_id: &t.timer.case_id,
            milestone: k.kind,
            occurred_at: k.occurred_at,
            rule: RuleRef::of(rule),
            trigger: trigger_of(t),
            deadline_at,
            detail: k.detail,
            late_by_seconds: (now_ms - t.timer.deadline_ms).max(0) / 1000,
            source: Source {
                connector: k.connector,
            },
            sequence,
        },
    })
    .expect("a body of strings and numbers always serializes")
}

/// The body of a `journey.stalled` event for timer `t`, found at `now_ms`:
/// the stall happened at the deadline.
pub fn render_stalled(rule: &Rule, t: &TimerRow, deadline_at: &str, now_ms: i64, sequence: i64) -> String {
    let now = rfc3339_ms(now_ms);
    let kind = Kind {
        kind: "journey.stalled",
        occurred_at: deadline_at,
        connector: &t.timer.connector,
        detail: Stalled { detected_at: &now },
    };
    render(kind, rule, t, deadline_at, now_ms, &now, sequence)
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
    let kind = Kind {
        kind: "journey.resumed",
        occurred_at: by.occurred_at,
        connector: by.connector,
        detail: Resumed {
            stalled_id: t.stalled_webhook.as_deref().unwrap_or(""),
            stalled_at: t.fired_at_ms.map(rfc3339_ms).unwrap_or_default(),
            resumed_by: ResumedBy {
                milestone: by.milestone,
                occurrence: by.occurrence,
                occurred_at: by.occurred_at,
            },
        },
    };
    render(kind, rule, t, deadline_at, now_ms, &rfc3339_ms(now_ms), sequence)
}
