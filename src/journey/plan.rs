//! What a chunk's milestones do to journey timers, applied inside the chunk
//! transaction ([`on_chunk`]) or only shown ([`plan`], for `hubsync map`).
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
//!
//! The cost is nothing for programs without rules, and otherwise one state
//! query, one upsert and at most two updates per chunk.

use std::collections::{BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::{calendar, ProgramRules, Rule};
use crate::diff::Delta;
use crate::model::Content;
use crate::outbox::journey::{render_resumed, ResumedByMilestone};
use crate::setup::{Config, Connector};
use crate::store::journey::{SettleKind, TimerArm, TimerSettle, TimerStatus};
use crate::store::{OutboxWrite, StoreError, Tx};

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

/// The plan for `contents` (one chunk's deltas, in file order), given the
/// `(case, code)` pairs already in the state among the blocking codes.
pub fn plan(
    rules: &ProgramRules,
    connector: &Connector,
    contents: &[&Content],
    present: &HashSet<(String, String)>,
    learned: DateTime<Utc>,
) -> Plan {
    let tz: Tz = connector.time.tz;
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
            program: c.program.clone(),
            case_id: c.case_id.clone(),
            rule: r.name.clone(),
            trigger_milestone: c.milestone.as_str().to_string(),
            trigger_occurrence: c.occurrence.clone(),
            trigger_occurred_at: c.occurred_at.clone(),
            connector: connector.name.clone(),
            armed_at_ms: learned.timestamp_millis(),
            deadline_ms: deadline.timestamp_millis(),
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

/// Applies a chunk's journey effects inside its transaction (after its
/// state rows are written): settles, arms, and `journey.resumed` outbox
/// rows, returned for the caller to insert with the chunk's own (with
/// sequence numbers already taken after the chunk's milestones). `seed`
/// arms and settles timers but writes no event.
pub async fn on_chunk(
    tx: &mut Tx,
    config: &Config,
    connector: &Connector,
    deltas: &[Delta],
    seed: bool,
) -> Result<Vec<OutboxWrite>, StoreError> {
    let Some(rules) = config.journeys.program(&connector.program) else {
        return Ok(Vec::new());
    };
    if deltas.is_empty() || rules.rules.is_empty() {
        return Ok(Vec::new());
    }
    let contents: Vec<&Content> = deltas.iter().map(|d| &d.candidate.content).collect();
    let cases = trigger_cases(rules, &contents);
    let codes: Vec<&str> = rules.blockers.iter().map(|c| c.as_str()).collect();
    let present: HashSet<(String, String)> = tx
        .journey_present(&connector.program, &cases, &codes)
        .await?
        .into_iter()
        .collect();
    let now = Utc::now();
    let now_ms = now.timestamp_millis();
    let p = plan(rules, connector, &contents, &present, now);
    let resumed = tx.journey_settle(&p.awaited, SettleKind::Awaited, now_ms).await?;
    let cancelled = tx.journey_settle(&p.cancels, SettleKind::Cancel, now_ms).await?;
    let armed = tx.journey_arm(&p.arms).await?;
    use std::sync::atomic::Ordering::Relaxed;
    super::TIMERS_ARMED.fetch_add(armed, Relaxed);
    super::TIMERS_CANCELLED.fetch_add(cancelled.len() as u64, Relaxed);
    let (late, in_time): (Vec<_>, Vec<_>) = resumed
        .into_iter()
        .partition(|t| t.status == TimerStatus::Resumed);
    super::TIMERS_CLEARED.fetch_add(in_time.len() as u64, Relaxed);
    super::TIMERS_RESUMED.fetch_add(late.len() as u64, Relaxed);
    // A stall that was never sent (past the horizon) resumes silently too:
    // receivers never heard of it.
    let late: Vec<_> = late.into_iter().filter(|t| t.stalled_webhook.is_some()).collect();
    if seed || late.is_empty() {
        return Ok(Vec::new());
    }
    // The milestone that resumed each: the first awaited one of the case in the chunk.
    let mut by: HashMap<(&str, &str), &Content> = HashMap::new();
    for c in &contents {
        for r in &rules.rules {
            if r.awaits.contains(&c.milestone) {
                by.entry((c.case_id.as_str(), r.name.as_str())).or_insert(c);
            }
        }
    }
    let mut per_case: Vec<(&str, &str, i64)> = Vec::new();
    let mut slot: HashMap<&str, usize> = HashMap::new();
    for t in &late {
        let i = *slot.entry(t.case_id.as_str()).or_insert_with(|| {
            per_case.push((t.program.as_str(), t.case_id.as_str(), 0));
            per_case.len() - 1
        });
        per_case[i].2 += 1;
    }
    let last = tx.bump_cases(&per_case).await?;
    let mut next: Vec<i64> = per_case
        .iter()
        .zip(&last)
        .map(|((_, _, n), l)| l - n + 1)
        .collect();
    let mut out = Vec::with_capacity(late.len());
    let mut ids = Vec::with_capacity(late.len());
    for t in &late {
        let Some(rule) = rules.rule(&t.rule) else { continue };
        let Some(c) = by.get(&(t.case_id.as_str(), t.rule.as_str())) else {
            continue;
        };
        let i = slot[t.case_id.as_str()];
        let seq = next[i];
        next[i] += 1;
        let body = render_resumed(
            rule,
            t,
            &local_rfc3339(t.deadline_ms, connector.time.tz),
            &ResumedByMilestone {
                milestone: c.milestone.as_str(),
                occurrence: &c.occurrence,
                occurred_at: &c.occurred_at,
                connector: &connector.name,
            },
            now_ms,
            seq,
        );
        let id = crate::outbox::new_webhook_id();
        ids.push((t.id, id.clone()));
        out.push(OutboxWrite {
            // Each journey event stands alone: never coalesced into another.
            key_hash: xxhash_rust::xxh3::xxh3_64(id.as_bytes()),
            id,
            connector: connector.name.clone(),
            program: t.program.clone(),
            case_id: t.case_id.clone(),
            milestone: "journey.resumed".to_string(),
            seq,
            lane: crate::map::key_hash(&t.program, &t.case_id, "", "").1,
            body,
            subscribers: subscribers(config, &connector.name, &t.program, "journey.resumed"),
        });
    }
    tx.journey_resumed(&ids).await?;
    Ok(out)
}

/// Subscribers that want `code` events of `program` from `connector`.
pub fn subscribers(config: &Config, connector: &str, program: &str, code: &str) -> Vec<String> {
    config
        .subscribers
        .iter()
        .filter(|s| s.wants(connector, program, code))
        .map(|s| s.name.clone())
        .collect()
}

/// What a file would do to one timer (`hubsync map`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Effect {
    pub case_id: String,
    pub rule: String,
    pub action: Action,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// A timer would be armed.
    Arm,
    /// Armed, with a deadline already past: it would fire at once.
    Fire,
    /// A trigger that would not arm: the journey already went on.
    Skip,
    /// An armed timer would be cleared (the awaited milestone, in time).
    Clear,
    /// A stalled timer would resume (`journey.resumed`).
    Resume,
    /// The rule would be cancelled on the case.
    Cancel,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Arm => "arm",
            Action::Fire => "fire",
            Action::Skip => "skip",
            Action::Clear => "clear",
            Action::Resume => "resume",
            Action::Cancel => "cancel",
        }
    }
}

/// The journey effects of `deltas` (a dry run's new and changed
/// milestones) against `store` (read-only; none: nothing stored yet).
pub async fn effects(
    config: &Config,
    connector: &Connector,
    store: Option<&crate::store::Store>,
    deltas: &[&Content],
) -> Result<Vec<Effect>, StoreError> {
    let Some(rules) = config.journeys.program(&connector.program) else {
        return Ok(Vec::new());
    };
    let cases: HashSet<&str> = trigger_cases(rules, deltas).into_iter().collect();
    let mut present = HashSet::new();
    let mut stalled: HashSet<(String, String)> = HashSet::new();
    let mut armed: HashSet<(String, String)> = HashSet::new();
    if let Some(store) = store {
        let codes: Vec<&str> = rules.blockers.iter().map(|c| c.as_str()).collect();
        for r in store.journey_state(&connector.program, &codes).await? {
            if cases.contains(r.case_id.as_str()) {
                present.insert((r.case_id, r.milestone));
            }
        }
    }
    let now = Utc::now();
    let p = plan(rules, connector, deltas, &present, now);
    if let Some(store) = store {
        // Only cases whose timers this file would settle: one query each.
        let mut settled: Vec<&str> = p
            .awaited
            .iter()
            .chain(&p.cancels)
            .map(|s| s.case_id.as_str())
            .collect();
        settled.sort_unstable();
        settled.dedup();
        for case in settled {
            for t in store.journey_case(&connector.program, case).await? {
                match t.status {
                    TimerStatus::Stalled => {
                        stalled.insert((t.case_id, t.rule));
                    }
                    TimerStatus::Armed => {
                        armed.insert((t.case_id, t.rule));
                    }
                    _ => {}
                }
            }
        }
    }
    let mut out = Vec::new();
    for a in &p.arms {
        let late = a.deadline_ms <= now.timestamp_millis();
        out.push(Effect {
            case_id: a.case_id.clone(),
            rule: a.rule.clone(),
            action: if late { Action::Fire } else { Action::Arm },
            detail: format!(
                "{} → deadline {}{}",
                a.trigger_milestone,
                local_rfc3339(a.deadline_ms, connector.time.tz),
                if late && now.timestamp_millis() - a.deadline_ms > config.journeys.horizon.as_millis() as i64
                {
                    " (already past the horizon: recorded, not sent)"
                } else {
                    ""
                }
            ),
        });
    }
    for (case_id, rule) in &p.skipped {
        out.push(Effect {
            case_id: case_id.clone(),
            rule: rule.clone(),
            action: Action::Skip,
            detail: "an awaited or cancelling milestone is already in the state (or in this file)".into(),
        });
    }
    for s in &p.awaited {
        let key = (s.case_id.clone(), s.rule.clone());
        let action = if stalled.contains(&key) {
            Action::Resume
        } else if armed.contains(&key) {
            Action::Clear
        } else {
            continue;
        };
        out.push(Effect {
            case_id: s.case_id.clone(),
            rule: s.rule.clone(),
            action,
            detail: format!("by {}", s.by),
        });
    }
    for s in &p.cancels {
        let key = (s.case_id.clone(), s.rule.clone());
        if stalled.contains(&key) || armed.contains(&key) {
            out.push(Effect {
                case_id: s.case_id.clone(),
                rule: s.rule.clone(),
                action: Action::Cancel,
                detail: format!("by {}", s.by),
            });
        }
    }
    Ok(out)
}
