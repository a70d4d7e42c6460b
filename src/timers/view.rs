//! What `hubsync journeys`, the admin API and the console show: open stalls
//! by program and rule (oldest first, with counts), and pair statistics.

use serde::Serialize;

use crate::journey::timer::{StallCount, TimerRow};
use crate::outbox::journey::rfc3339_ms;
use crate::setup::Config;
use crate::store::{Store, StoreError};

/// One open stall, for listings.
#[derive(Debug, Clone, Serialize)]
pub struct OpenStall {
    pub program: String,
    pub rule: String,
    pub severity: Option<&'static str>,
    pub case_id: String,
    pub trigger: String,
    pub trigger_occurred_at: String,
    pub deadline_at: String,
    pub stalled_at: Option<String>,
    /// How long past the deadline the case is now, in seconds.
    pub overdue_seconds: i64,
    /// Whether a `journey.stalled` event was sent (no: past the horizon, or
    /// no subscriber wanted it).
    pub notified: bool,
    pub webhook_id: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StallsView {
    pub counts: Vec<StallCount>,
    pub stalls: Vec<OpenStall>,
}

/// A stored stall as listed at `now_ms`.
pub fn open_stall(config: &Config, t: &TimerRow, now_ms: i64) -> OpenStall {
    OpenStall {
        severity: config
            .journeys
            .program(&t.timer.program)
            .and_then(|p| p.rule(&t.timer.rule))
            .map(|r| r.severity.as_str()),
        program: t.timer.program.clone(),
        rule: t.timer.rule.clone(),
        case_id: t.timer.case_id.clone(),
        trigger: t.timer.trigger_milestone.clone(),
        trigger_occurred_at: t.timer.trigger_occurred_at.clone(),
        deadline_at: rfc3339_ms(t.timer.deadline_ms),
        stalled_at: t.fired_at_ms.map(rfc3339_ms),
        overdue_seconds: (now_ms - t.timer.deadline_ms).max(0) / 1000,
        notified: t.stalled_webhook.is_some(),
        webhook_id: t.stalled_webhook.clone(),
    }
}

/// Open stalls (of `program`, or all), oldest first, with counts per program and rule.
pub async fn stalls(
    store: &Store,
    config: &Config,
    program: Option<&str>,
    limit: i64,
) -> Result<StallsView, StoreError> {
    let now = crate::store::now_ms();
    let mut counts = store.journey_open_counts().await?;
    if let Some(p) = program {
        counts.retain(|c| c.program == p);
    }
    let stalls = store
        .journey_open(program, limit)
        .await?
        .iter()
        .map(|t| open_stall(config, t, now))
        .collect();
    Ok(StallsView { counts, stalls })
}

/// Pair statistics over the last `window` for every program a connector feeds.
pub async fn stats(
    store: &Store,
    config: &Config,
    window: std::time::Duration,
) -> Result<Vec<super::stats::PairStats>, StoreError> {
    let mut programs: Vec<(String, chrono_tz::Tz)> = Vec::new();
    for c in &config.connectors {
        if !programs.iter().any(|(p, _)| *p == c.program) {
            programs.push((c.program.clone(), c.time.tz));
        }
    }
    let since = chrono::Duration::from_std(window)
        .ok()
        .and_then(|w| chrono::Utc::now().checked_sub_signed(w))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
    super::stats::compute(store, &programs, since).await
}
