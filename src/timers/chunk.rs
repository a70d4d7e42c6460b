//! Journey timers in a chunk's commit: [`on_chunk`] applies the journey
//! plan (`journey::plan`) inside the chunk transaction, and [`effects`]
//! shows what it would do against a read-only store (`hubsync map`).
//!
//! The cost is nothing for programs without rules, and otherwise one state
//! query, one upsert and at most two updates per chunk.

use std::collections::{HashMap, HashSet};

use chrono::Utc;

use super::subscribers;
use crate::diff::Delta;
use crate::journey::plan::{local_rfc3339, plan, trigger_cases};
use crate::journey::timer::{SettleKind, TimerStatus};
use crate::journey::{TIMERS_ARMED, TIMERS_CANCELLED, TIMERS_CLEARED, TIMERS_RESUMED};
use crate::model::Content;
use crate::outbox::journey::{render_resumed, ResumedByMilestone};
use crate::outbox::sequence::CaseSequences;
use crate::outbox::OutboxWrite;
use crate::setup::{Config, Connector};
use crate::store::journey::{Presence, Settle};
use crate::store::{Store, StoreError, Tx};

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
        .journey_present(&Presence {
            program: &connector.program,
            case_ids: &cases,
            codes: &codes,
        })
        .await?
        .into_iter()
        .collect();
    let now = Utc::now();
    let now_ms = now.timestamp_millis();
    let p = plan(
        rules,
        &connector.name,
        connector.time.tz,
        &contents,
        &present,
        now,
    );
    let settle = |settles, kind| Settle {
        settles,
        kind,
        now_ms,
    };
    let resumed = tx
        .journey_settle(&settle(&p.awaited, SettleKind::Awaited))
        .await?;
    let cancelled = tx.journey_settle(&settle(&p.cancels, SettleKind::Cancel)).await?;
    let armed = tx.journey_arm(&p.arms).await?;
    use std::sync::atomic::Ordering::Relaxed;
    TIMERS_ARMED.fetch_add(armed, Relaxed);
    TIMERS_CANCELLED.fetch_add(cancelled.len() as u64, Relaxed);
    let (late, in_time): (Vec<_>, Vec<_>) = resumed
        .into_iter()
        .partition(|t| t.status == TimerStatus::Resumed);
    TIMERS_CLEARED.fetch_add(in_time.len() as u64, Relaxed);
    TIMERS_RESUMED.fetch_add(late.len() as u64, Relaxed);
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
    let mut seqs = CaseSequences::default();
    for t in &late {
        seqs.count(&t.timer.program, &t.timer.case_id);
    }
    let last = tx.bump_cases(seqs.counts()).await?;
    seqs.start(&last);
    let mut out = Vec::with_capacity(late.len());
    let mut ids = Vec::with_capacity(late.len());
    for t in &late {
        let Some(rule) = rules.rule(&t.timer.rule) else {
            continue;
        };
        let Some(c) = by.get(&(t.timer.case_id.as_str(), t.timer.rule.as_str())) else {
            continue;
        };
        let seq = seqs.take(&t.timer.program, &t.timer.case_id);
        let body = render_resumed(
            rule,
            t,
            &local_rfc3339(t.timer.deadline_ms, connector.time.tz),
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
            program: t.timer.program.clone(),
            case_id: t.timer.case_id.clone(),
            milestone: "journey.resumed".to_string(),
            seq,
            lane: crate::map::key_hash(&t.timer.program, &t.timer.case_id, "", "").1,
            body,
            subscribers: subscribers(config, &connector.name, &t.timer.program, "journey.resumed"),
        });
    }
    tx.journey_resumed(&ids).await?;
    Ok(out)
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
    store: Option<&Store>,
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
        let mut visit = |r: crate::journey::timer::StateBody| {
            if cases.contains(r.case_id.as_str()) {
                present.insert((r.case_id, r.milestone));
            }
        };
        store
            .journey_state_each(&connector.program, &codes, &mut visit)
            .await?;
    }
    let now = Utc::now();
    let p = plan(rules, &connector.name, connector.time.tz, deltas, &present, now);
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
                        stalled.insert((t.timer.case_id, t.timer.rule));
                    }
                    TimerStatus::Armed => {
                        armed.insert((t.timer.case_id, t.timer.rule));
                    }
                    _ => {}
                }
            }
        }
    }
    let mut out = Vec::new();
    for a in &p.arms {
        let late = a.timer.deadline_ms <= now.timestamp_millis();
        out.push(Effect {
            case_id: a.timer.case_id.clone(),
            rule: a.timer.rule.clone(),
            action: if late { Action::Fire } else { Action::Arm },
            detail: format!(
                "{} → deadline {}{}",
                a.timer.trigger_milestone,
                local_rfc3339(a.timer.deadline_ms, connector.time.tz),
                if late
                    && now.timestamp_millis() - a.timer.deadline_ms
                        > config.journeys.horizon.as_millis() as i64
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
