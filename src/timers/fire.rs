//! Firing timers from the wall clock. A quiet case stalls on time: nothing
//! waits for a new file (the classic bug of stream engines whose timers
//! move only with events).
//!
//! The clock task keeps one number in memory, the next deadline, and sleeps
//! until it (or until a pipeline arms an earlier one, or a poll interval
//! for timers other instances armed). [`fire_due`] fires what is due in
//! batches: each batch is one transaction that locks the program (as chunk
//! commits do), claims due timers (`FOR UPDATE SKIP LOCKED` on PostgreSQL),
//! marks them stalled and writes their `journey.stalled` outbox rows. After
//! a crash, due timers are still armed in the store and fire once at start.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::subscribers;
use crate::journey::plan::local_rfc3339;
use crate::journey::timer::TimerStatus;
use crate::outbox::journey::render_stalled;
use crate::outbox::sequence::CaseSequences;
use crate::outbox::OutboxWrite;
use crate::setup::Config;
use crate::store::{Store, StoreError};

/// Timers per firing transaction: big enough to drain a backlog fast, small
/// enough that a chunk commit never waits long for the program lock.
pub const FIRE_BATCH: i64 = 2_000;

/// What one [`fire_due`] call did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Fired {
    /// Stalls recorded.
    pub stalled: u64,
    /// Of them, sent (an outbox row with subscribers).
    pub sent: u64,
    /// Recorded but not sent: found later than the horizon after their deadline.
    pub suppressed: u64,
    /// Timers whose rule is no longer configured: cancelled.
    pub orphaned: u64,
}

impl Fired {
    fn add(&mut self, o: Fired) {
        self.stalled += o.stalled;
        self.sent += o.sent;
        self.suppressed += o.suppressed;
        self.orphaned += o.orphaned;
    }
}

/// Fires every timer of every program due at `now_ms` (all batches).
pub async fn fire_due(store: &Store, config: &Config, now_ms: i64) -> Result<Fired, StoreError> {
    let mut total = Fired::default();
    for program in config.journeys.programs.keys() {
        loop {
            let (f, claimed) = fire_batch(store, config, program, now_ms, FIRE_BATCH).await?;
            total.add(f);
            if claimed < FIRE_BATCH as usize {
                break;
            }
        }
    }
    Ok(total)
}

/// The zone a timer's times are shown in: its connector's.
fn zone_of(config: &Config, connector: &str) -> Tz {
    config
        .connectors
        .iter()
        .find(|c| c.name == connector)
        .map_or(chrono_tz::UTC, |c| c.time.tz)
}

/// One transaction: up to `limit` due timers of `program`. Returns what was
/// fired and how many timers were claimed.
pub async fn fire_batch(
    store: &Store,
    config: &Config,
    program: &str,
    now_ms: i64,
    limit: i64,
) -> Result<(Fired, usize), StoreError> {
    let Some(rules) = config.journeys.program(program) else {
        return Ok((Fired::default(), 0));
    };
    let mut tx = store.begin().await?;
    // Chunk commits of this program take the same lock first: a stall is
    // decided against settled state, never beside a chunk that clears it.
    tx.lock_program(program).await?;
    let due = tx.journey_due(program, now_ms, limit).await?;
    if due.is_empty() {
        return Ok((Fired::default(), 0));
    }
    let horizon_ms = config.journeys.horizon.as_millis() as i64;
    let mut f = Fired::default();
    // Per-case sequence numbers for the stalls that are sent.
    let mut seqs = CaseSequences::default();
    let mut plans = Vec::with_capacity(due.len());
    for t in &due {
        let rule = rules.rule(&t.timer.rule);
        let subs = match rule {
            Some(_) if now_ms - t.timer.deadline_ms <= horizon_ms => {
                subscribers(config, &t.timer.connector, &t.timer.program, "journey.stalled")
            }
            _ => Vec::new(),
        };
        let send = rule.is_some() && !subs.is_empty();
        if send {
            seqs.count(&t.timer.program, &t.timer.case_id);
        }
        plans.push((t, rule, subs, send));
    }
    let last = if seqs.counts().is_empty() {
        Vec::new()
    } else {
        tx.bump_cases(seqs.counts()).await?
    };
    seqs.start(&last);
    let mut outbox = Vec::new();
    let mut marks = Vec::with_capacity(due.len());
    for (t, rule, subs, send) in plans {
        let Some(rule) = rule else {
            // The rule was removed or renamed since the timer armed.
            f.orphaned += 1;
            marks.push((t.id, TimerStatus::Cancelled, None));
            continue;
        };
        f.stalled += 1;
        if !send {
            if now_ms - t.timer.deadline_ms > horizon_ms {
                f.suppressed += 1;
            }
            marks.push((t.id, TimerStatus::Stalled, None));
            continue;
        }
        let seq = seqs.take(&t.timer.program, &t.timer.case_id);
        let id = crate::outbox::new_webhook_id();
        let body = render_stalled(
            rule,
            t,
            &local_rfc3339(t.timer.deadline_ms, zone_of(config, &t.timer.connector)),
            now_ms,
            seq,
        );
        marks.push((t.id, TimerStatus::Stalled, Some(id.clone())));
        outbox.push(OutboxWrite {
            key_hash: xxhash_rust::xxh3::xxh3_64(id.as_bytes()),
            id,
            connector: t.timer.connector.clone(),
            program: t.timer.program.clone(),
            case_id: t.timer.case_id.clone(),
            milestone: "journey.stalled".to_string(),
            seq,
            lane: crate::map::key_hash(&t.timer.program, &t.timer.case_id, "", "").1,
            body,
            subscribers: subs,
        });
        f.sent += 1;
    }
    tx.journey_fired(&marks, now_ms).await?;
    // file_id 0: not from a file, like feed events.
    tx.insert_outbox(&outbox, 0).await?;
    tx.commit().await?;
    crate::journey::TIMERS_FIRED.fetch_add(f.stalled, Relaxed);
    crate::journey::STALLS_SUPPRESSED.fetch_add(f.suppressed, Relaxed);
    if f.orphaned > 0 {
        crate::journey::TIMERS_CANCELLED.fetch_add(f.orphaned, Relaxed);
        tracing::warn!(
            program,
            cancelled = f.orphaned,
            "due journey timers of a rule no longer loaded: cancelled, not fired"
        );
    }
    if f.stalled > 0 {
        tracing::info!(
            program,
            stalled = f.stalled,
            sent = f.sent,
            suppressed = f.suppressed,
            "journey stalls found"
        );
    }
    Ok((f, due.len()))
}

/// Timers of one rule that is no longer loaded, retired by [`retire_gone`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retired {
    pub program: String,
    pub rule: String,
    /// Armed timers cancelled: they will never fire.
    pub armed: u64,
    /// Open stalls closed: nothing could resume them any more.
    pub stalled: u64,
}

/// Retires the open timers (armed, or stalled and not yet resumed) whose
/// `(program, rule)` is not among the loaded journey rules: the rule file
/// was deleted, or the rule removed or renamed. Left alone they would stay
/// armed forever (nothing fires a program without rules, and a stall of a
/// gone rule would name a rule nobody can look up). Each becomes
/// `cancelled`, settled by [`crate::journey::timer::RULE_REMOVED`], in one transaction per rule
/// under the program lock, so it never races a chunk or a firing.
///
/// A missing rules folder retires nothing: an unmounted volume or a wrong
/// path must not cancel every timer in the store.
pub async fn retire_gone(store: &Store, config: &Config, now_ms: i64) -> Result<Vec<Retired>, StoreError> {
    if !config.journeys.dir.is_dir() {
        return Ok(Vec::new());
    }
    let loaded = |program: &str, rule: &str| {
        config
            .journeys
            .program(program)
            .is_some_and(|p| p.rule(rule).is_some())
    };
    // The gauges' queries name every (program, rule) with open timers.
    let mut gone: Vec<(String, String)> = store
        .journey_armed_counts()
        .await?
        .into_iter()
        .map(|a| (a.program, a.rule))
        .chain(
            store
                .journey_open_counts()
                .await?
                .into_iter()
                .map(|c| (c.program, c.rule)),
        )
        .filter(|(p, r)| !loaded(p, r))
        .collect();
    gone.sort();
    gone.dedup();
    let mut out = Vec::with_capacity(gone.len());
    for (program, rule) in gone {
        let mut tx = store.begin().await?;
        tx.lock_program(&program).await?;
        let (armed, stalled) = tx.journey_retire(&program, &rule, now_ms).await?;
        tx.commit().await?;
        crate::journey::TIMERS_CANCELLED.fetch_add(armed + stalled, Relaxed);
        // Program and rule are configuration, not patient data; no case ids.
        tracing::warn!(
            program = %program,
            rule = %rule,
            armed,
            stalled,
            "journey rule no longer loaded: its open timers are retired (cancelled, never fired)"
        );
        out.push(Retired {
            program,
            rule,
            armed,
            stalled,
        });
    }
    Ok(out)
}

/// How often the clock looks for timers armed by other processes (another
/// instance on PostgreSQL, `hubsync ingest`), at the latest.
const POLL: Duration = Duration::from_secs(1);

/// The clock task: fires due timers until shutdown. `armed` is notified by
/// pipelines after a commit that armed timers; `wakers` wake delivery.
pub async fn run(
    store: Store,
    config: Arc<Config>,
    armed: Arc<Notify>,
    wakers: Vec<Arc<Notify>>,
    shutdown: CancellationToken,
) {
    // Before the first firing: a rule removed since the last run must never
    // fire a stall. This runs even with no rules at all (every rule file
    // deleted), the case that would otherwise leave every timer armed.
    let mut retired = false;
    let mut backoff = Duration::from_secs(1);
    loop {
        // One indexed read per wake-up; the firing transaction (and its
        // program lock) only when something is due.
        let step = async {
            if !retired {
                retire_gone(&store, &config, crate::store::now_ms()).await?;
                retired = true;
                if config.journeys.is_empty() {
                    return Ok(None);
                }
            }
            let now = crate::store::now_ms();
            if store.journey_next_due().await?.is_some_and(|next| next <= now) {
                let f = fire_due(&store, &config, now).await?;
                if f.sent > 0 {
                    for w in &wakers {
                        w.notify_one();
                    }
                }
                // Still due after firing every loaded program: timers of a
                // rule this process does not know (armed by an instance with
                // other rules); retire them rather than wake on them forever.
                if store.journey_next_due().await?.is_some_and(|next| next <= now) {
                    retire_gone(&store, &config, now).await?;
                }
            }
            store.journey_next_due().await
        };
        let wait = match step.await {
            // No rules: nothing will ever fire; the retiring is done.
            Ok(None) if config.journeys.is_empty() => return,
            Ok(next) => {
                backoff = Duration::from_secs(1);
                // Still due after firing: armed by another process since;
                // look again at the poll interval, not at once.
                next.map_or(POLL, |next| {
                    let ms = next - crate::store::now_ms();
                    if ms <= 0 {
                        POLL
                    } else {
                        Duration::from_millis(ms as u64).min(POLL)
                    }
                })
            }
            Err(e) => {
                tracing::error!(error = %e, retry_in_s = backoff.as_secs(), "cannot fire journey timers; retrying");
                let b = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                b
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = armed.notified() => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
