//! What a chunk's milestones do to journey timers ([`plan`]), as data: the
//! arms and settles that `timers::chunk` applies inside the chunk
//! transaction, or shows for `hubsync map`.
//!
//! Per delta, in file order:
//!
//! - a code a rule **awaits** settles that rule's timers on the case: an
//!   armed one is cleared, a stalled one resumes (a `journey.resumed` event
//!   is written to the outbox in the same transaction);
//! - a code that **cancels** a rule cancels its timers on the case;
//! - a **trigger** (matching the pattern and the condition) arms a timer,
//!   unless an awaited or cancelling milestone of the rule is already in
//!   the state of the case (a backfill of a journey that went on never
//!   arms), or arrives in the same chunk.

use std::collections::{BTreeSet, HashSet};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::timer::{Timer, TimerArm, TimerSettle};
use super::{calendar, ProgramRules, Rule};
use crate::model::Content;

/// What one chunk does to timers.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    pub arms: Vec<TimerArm>,
    pub awaited: Vec<TimerSettle>,
    pub cancels: Vec<TimerSettle>,
    /// Triggers that did not arm because the journey already went on: (case, rule).
    pub skipped: Vec<(String, String)>,
}

/// Triggers of `rules` among `contents` (and their condition holds): (index, rule).
fn triggers<'a>(rules: &'a ProgramRules, contents: &[&Content]) -> Vec<(usize, &'a std::sync::Arc<Rule>)> {
    let mut out = Vec::new();
    for (i, c) in contents.iter().enumerate() {
        for r in &rules.rules {
            if r.is_trigger(c.milestone) && r.condition.as_ref().is_none_or(|k| k.holds(c)) {
                out.push((i, r));
            }
        }
    }
    out
}

/// Cases of `contents` that hold a trigger: the ones whose state matters.
pub fn trigger_cases<'a>(rules: &ProgramRules, contents: &[&'a Content]) -> Vec<&'a str> {
    let mut cases: Vec<&str> = triggers(rules, contents)
        .into_iter()
        .map(|(i, _)| contents[i].case_id.as_str())
        .collect();
    cases.sort_unstable();
    cases.dedup();
    cases
}

/// The plan for `contents` (one chunk's deltas, in file order, from
/// `connector`, whose zone is `tz`), given the `(case, code)` pairs already
/// in the state among the blocking codes.
pub fn plan(
    rules: &ProgramRules,
    connector: &str,
    tz: Tz,
    contents: &[&Content],
    present: &HashSet<(String, String)>,
    learned: DateTime<Utc>,
) -> Plan {
    let mut out = Plan::default();
    // This chunk's own codes per case: an awaited milestone anywhere in the
    // chunk counts as present (it is stored by the same commit).
    let mut here: HashSet<(&str, &str)> = HashSet::new();
    for c in contents {
        here.insert((c.case_id.as_str(), c.milestone.as_str()));
    }
    let mut settled: BTreeSet<(String, String, bool)> = BTreeSet::new();
    for c in contents {
        for r in &rules.rules {
            let kind = if r.awaits.contains(&c.milestone) {
                Some(true)
            } else if r.cancels.contains(&c.milestone) {
                Some(false)
            } else {
                None
            };
            if let Some(awaited) = kind {
                if settled.insert((c.case_id.clone(), r.name.clone(), awaited)) {
                    let s = TimerSettle {
                        program: c.program.clone(),
                        case_id: c.case_id.clone(),
                        rule: r.name.clone(),
                        by: c.milestone.as_str().to_string(),
                    };
                    if awaited {
                        out.awaited.push(s);
                    } else {
                        out.cancels.push(s);
                    }
                }
            }
        }
    }
    for (i, r) in triggers(rules, contents) {
        let c = contents[i];
        let blocked = r.awaits.iter().chain(&r.cancels).any(|b| {
            here.contains(&(c.case_id.as_str(), b.as_str()))
                || present.contains(&(c.case_id.clone(), b.as_str().to_string()))
        });
        if blocked {
            out.skipped.push((c.case_id.clone(), r.name.clone()));
            continue;
        }
        let from = calendar::anchor(c, r.from, learned, tz);
        let deadline = calendar::deadline_from(from, r.deadline, tz, &rules.holidays);
        out.arms.push(TimerArm {
            timer: Timer {
                program: c.program.clone(),
                case_id: c.case_id.clone(),
                rule: r.name.clone(),
                trigger_milestone: c.milestone.as_str().to_string(),
                trigger_occurrence: c.occurrence.clone(),
                trigger_occurred_at: c.occurred_at.clone(),
                connector: connector.to_string(),
                armed_at_ms: learned.timestamp_millis(),
                deadline_ms: deadline.timestamp_millis(),
            },
            rearm: r.from == super::Anchor::OccurredAt,
        });
    }
    out
}

/// The deadline of a timer in the connector's zone, RFC 3339.
pub fn local_rfc3339(ms: i64, tz: Tz) -> String {
    DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .with_timezone(&tz)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
