//! Delivery: signed POSTs of outbox messages to subscribers.
//!
//! One [`Worker`] per subscriber, written as explicit stages (as in Svix's
//! worker): **fetch** due lane heads → **prepare** ([`envelope`]) → **call**
//! (sign and POST) → **record** (batch the outcomes into one transaction). A
//! lane is a case: its next message is not due until the previous one is
//! settled, so deltas for one case arrive in order while other cases flow in
//! parallel; a failing case is parked by its `next_attempt_at` without
//! holding anyone else back.
//!
//! A message is *unsettled* from its send until its outcome's batch commits;
//! a crash sends the unsettled ones again (same id, same body). On SQLite,
//! whose one writer a chunk commit can hold for a while, each answer is
//! written to the outcome [`journal`] as it arrives and applied at the next
//! start, so a crash re-sends only what was in flight. On PostgreSQL a worker
//! keeps at most two windows (`2 × max_in_flight`) unsettled
//! (`docs/durability.md`).
//!
//! Around the stages, two subscriber-wide gates:
//!
//! - **Disabled** (persisted): a `410 Gone` stops all sending until an
//!   operator re-enables the subscriber (`hubsync enable`, the admin API, or
//!   a different URL in the config). The message that got the 410 stays
//!   pending; nothing is dropped.
//! - **Circuit breaker**: after `breaker_failures` consecutive failed
//!   attempts the subscriber is parked; every `breaker_probe_interval` one
//!   request (the oldest lane head, whatever its retry time) probes it. A 2xx
//!   closes the breaker. Probes never use up a message's retries, so parking
//!   drops nothing and exhausts nothing.
//!
//! With `coalesce` on, while a lane's head is failing (or the whole
//! subscriber is parked), never-attempted updates of a milestone that a later
//! pending update of the same milestone supersedes are marked `coalesced`.

pub mod envelope;
pub mod guard;
pub mod journal;
pub mod retry;
pub mod sign;
pub mod subscriber;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::metrics::SubscriberMetrics;
use crate::outbox::{AttemptOutcome, AttemptResult, Due};
use crate::store::{now_ms, DueClaim, Store, StoreError, SubscriberState};
use retry::Verdict;
pub use subscriber::{ClientIdentity, Subscriber};

/// Errors of the delivery stage.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot build the HTTP client for subscriber `{0}`: {1}")]
    Client(String, reqwest::Error),
}

/// Builds the HTTP client every worker shares: no redirects, rustls, and
/// no link-local or metadata addresses (see [`guard`]).
pub fn http_client() -> reqwest::Client {
    http_client_with(false)
}

/// [`http_client`], with `[delivery] allow_link_local`.
pub fn http_client_with(allow_link_local: bool) -> reqwest::Client {
    client_builder(allow_link_local)
        .build()
        .expect("a client with static settings always builds")
}

fn client_builder(allow_link_local: bool) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(std::sync::Arc::new(guard::GuardedResolver { allow_link_local }))
        .tcp_nodelay(true)
        .pool_max_idle_per_host(256)
        .user_agent(concat!("hubsync/", env!("CARGO_PKG_VERSION")))
}

/// The client for `sub`: the shared one, or its own when it presents a
/// client certificate (an identity belongs to a client, not a request).
pub fn client_for(sub: &Subscriber, shared: &reqwest::Client) -> Result<reqwest::Client, DeliverError> {
    match &sub.identity {
        None => Ok(shared.clone()),
        Some(id) => client_builder(sub.allow_link_local)
            .identity(id.0.clone())
            .build()
            .map_err(|e| DeliverError::Client(sub.name.clone(), e)),
    }
}

/// How long a response body excerpt may be, in bytes, before redaction.
pub const EXCERPT_CAP: usize = 256;

/// A response body made safe to keep: at most [`EXCERPT_CAP`] bytes, control
/// characters dropped, and every word that contains a digit replaced by `#`
/// (identifiers, dates, member numbers), so error words stay readable and
/// echoed identifiers do not.
pub fn redact_excerpt(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(&raw[..raw.len().min(EXCERPT_CAP)]);
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.chars().any(|c| c.is_ascii_digit()) {
            out.push('#');
        } else if word.contains('@') {
            out.push_str("***@***");
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for ch in text.chars() {
        if ch.is_alphanumeric() || matches!(ch, '@' | '.' | '_' | '-' | '+') {
            word.push(ch);
        } else {
            flush(&mut word, &mut out);
            if !ch.is_control() {
                out.push(ch);
            } else if ch == '\n' || ch == '\t' {
                out.push(' ');
            }
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Finished calls: the attempt, what it says about the subscriber, and the
/// message's commit time (for the latency histogram).
type Settled = Vec<(AttemptResult, Signal, i64)>;

/// The circuit breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Circuit {
    Closed {
        failures: u32,
    },
    /// Parked until the next probe.
    Open {
        probe_at: tokio::time::Instant,
    },
    /// One probe is in flight.
    Probing,
}

/// What a finished call means for the subscriber as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Success,
    Failure,
    /// 410 Gone: disable the subscriber.
    Gone,
    /// Says nothing about the subscriber (the message could not be prepared).
    Neutral,
}

#[derive(Clone)]
pub struct Worker {
    pub store: Store,
    pub sub: Arc<Subscriber>,
    pub client: reqwest::Client,
    pub wake: Arc<Notify>,
    pub poll: Duration,
    pub metrics: Arc<SubscriberMetrics>,
    /// The outcome journal's folder ([`journal::dir_for`]): SQLite stores.
    pub journal: Option<std::path::PathBuf>,
}

impl Worker {
    /// Runs until `shutdown`, then drains in-flight requests for up to `grace`.
    pub async fn run(self, shutdown: CancellationToken, grace: Duration) -> Result<(), StoreError> {
        let mut in_flight: JoinSet<(AttemptResult, Signal, i64)> = JoinSet::new();
        // At most one batch being committed, and the results waiting for it.
        let mut recorder: JoinSet<(Settled, Result<(), StoreError>)> = JoinSet::new();
        let mut to_record: Settled = Vec::new();
        // Positions sent but not yet recorded (still `pending` in the store,
        // so fetch must skip them), with their lane: a lane never has two
        // requests in flight, whatever coalescing did to its head meanwhile.
        let mut unsettled: HashMap<i64, i64> = HashMap::new();
        // Claimed lane heads whose lane was still busy here: a claim can see
        // a lane's previous message committed before this loop has taken
        // its recorded batch. They are leased to this instance (PostgreSQL),
        // so no one else sends them; dropping them would leave them waiting
        // out the lease (the long tail of a drain). Sent once the lane frees.
        let mut held: Vec<Due> = Vec::new();
        let mut draining: Option<tokio::time::Instant> = None;
        let max = self.sub.max_in_flight;
        let refill = (max / 4).max(1);
        // Answers written down before their batch commits (SQLite): a crash
        // then re-sends only what was in flight. The segment of the batch
        // being committed is removed when it returns.
        let mut journal = self.open_journal().await?;
        let mut recording_segment: Option<u64> = None;
        let mut state = self.initial_state().await?;
        let mut circuit = if state.parked_until.is_some() {
            // Parked before a restart: probe first rather than burst.
            Circuit::Open {
                probe_at: tokio::time::Instant::now(),
            }
        } else {
            Circuit::Closed { failures: 0 }
        };
        self.metrics
            .breaker_open
            .store(!matches!(circuit, Circuit::Closed { .. }), Ordering::Relaxed);
        let mut last_state_check = tokio::time::Instant::now();
        let mut last_coalesce: Option<tokio::time::Instant> = None;
        let mut coalesce_wanted = false;
        loop {
            let mut next_wake = self.poll;
            // Another process (CLI, admin API) may re-enable us.
            if state.disabled_at.is_some() && last_state_check.elapsed() >= self.poll {
                last_state_check = tokio::time::Instant::now();
                state = self.load_state().await?;
                if state.disabled_at.is_none() {
                    tracing::info!(subscriber = %self.sub.name, "subscriber re-enabled; resuming delivery");
                    circuit = Circuit::Closed { failures: 0 };
                }
                self.metrics
                    .disabled
                    .store(state.disabled_at.is_some(), Ordering::Relaxed);
            }
            // Stage 1: fetch due lane heads and start calls.
            let sending = draining.is_none() && state.disabled_at.is_none();
            // Without a journal, what is sent and not yet recorded (in
            // flight, or answered and waiting for its batch) is what a crash
            // sends again: at most two windows, so that a slow commit stops
            // new sends rather than pile up answers to repeat.
            let max_unsettled = if journal.is_some() { usize::MAX } else { 2 * max };
            let room = (max - in_flight.len()).min(max_unsettled.saturating_sub(unsettled.len()));
            match circuit {
                // Refill when a quarter of the window is free (or all of
                // it): one fetch per few answers, not one per answer.
                Circuit::Closed { .. } if sending && room > 0 && (in_flight.is_empty() || room >= refill) => {
                    // On a shared store the claim leases each message to this
                    // instance; the lease outlives any request (twice the timeout).
                    // Lanes with a request in flight or unrecorded: never two at once.
                    let mut busy: HashSet<i64> = unsettled.values().copied().collect();
                    let (mut ready, waiting): (Vec<Due>, Vec<Due>) = std::mem::take(&mut held)
                        .into_iter()
                        .partition(|d| busy.insert(d.lane));
                    held = waiting;
                    let wanted = room.saturating_sub(ready.len());
                    if wanted > 0 {
                        // Not again what is unsettled, held or about to be sent.
                        let skip: HashSet<i64> = unsettled
                            .keys()
                            .copied()
                            .chain(held.iter().chain(&ready).map(|d| d.pos))
                            .collect();
                        let due = self
                            .store
                            .claim_due(&DueClaim {
                                subscriber: &self.sub.name,
                                now_ms: now_ms(),
                                limit: wanted,
                                lease: self.sub.timeout * 2,
                                in_flight: &skip,
                            })
                            .await?;
                        for d in due {
                            if unsettled.contains_key(&d.pos) {
                                continue;
                            }
                            if busy.insert(d.lane) {
                                ready.push(d);
                            } else {
                                held.push(d);
                            }
                        }
                    }
                    // Send at most `room`; the rest wait, still leased.
                    held.extend(ready.drain(room.min(ready.len())..));
                    for d in ready {
                        unsettled.insert(d.pos, d.lane);
                        in_flight.spawn(call(self.client.clone(), self.sub.clone(), d, false));
                    }
                    // Idle: sleep until the next due message (at most a
                    // poll). Not while answers wait for their batch: its
                    // commit wakes this loop, and the query is a walk of
                    // every pending delivery (65 ms at a 100k backlog on
                    // PostgreSQL), not to be taken after every empty claim.
                    if in_flight.is_empty() && unsettled.is_empty() {
                        if let Some(at) = self.store.next_due(&self.sub.name).await? {
                            let ms = (at - now_ms()).clamp(0, self.poll.as_millis() as i64);
                            next_wake = Duration::from_millis(ms as u64);
                        }
                    }
                }
                Circuit::Open { probe_at } if sending => {
                    let now = tokio::time::Instant::now();
                    if now >= probe_at && in_flight.is_empty() && recorder.is_empty() && to_record.is_empty()
                    {
                        // Parked: what was held is let go (its lease runs
                        // out on a shared store), so coalescing may
                        // supersede it and the probe may pick it.
                        held.clear();
                        if self.sub.coalesce {
                            self.coalesce(true).await?;
                            last_coalesce = Some(now);
                        }
                        // The oldest lane head, whatever its retry time.
                        let skip = HashSet::new();
                        let probe = self
                            .store
                            .claim_due(&DueClaim {
                                subscriber: &self.sub.name,
                                now_ms: i64::MAX,
                                limit: 1,
                                lease: self.sub.timeout * 2,
                                in_flight: &skip,
                            })
                            .await?;
                        match probe.into_iter().next() {
                            Some(d) => {
                                tracing::info!(subscriber = %self.sub.name, "probing a parked subscriber");
                                unsettled.insert(d.pos, d.lane);
                                in_flight.spawn(call(self.client.clone(), self.sub.clone(), d, true));
                                circuit = Circuit::Probing;
                            }
                            // Nothing to send: nothing to protect either.
                            None => circuit = self.close_breaker(&mut state).await?,
                        }
                    } else if now < probe_at {
                        next_wake = next_wake.min(probe_at - now);
                    }
                }
                _ => {}
            }
            // Stage 2: wait for a result, a recorded batch, new work, a timer
            // or shutdown.
            let deadline = draining.unwrap_or_else(|| tokio::time::Instant::now() + next_wake);
            let mut recorded: Option<Settled> = None;
            let mut arrived: Settled = Vec::new();
            tokio::select! {
                Some(r) = in_flight.join_next(), if !in_flight.is_empty() => {
                    if let Ok(r) = r { arrived.push(r) }
                    while let Some(r) = in_flight.try_join_next() {
                        if let Ok(r) = r { arrived.push(r) }
                    }
                }
                Some(done) = recorder.join_next(), if !recorder.is_empty() => {
                    let (batch, res) = done.expect("the recording task does not panic");
                    res?;
                    recorded = Some(batch);
                }
                _ = self.wake.notified(), if draining.is_none() => {}
                _ = tokio::time::sleep_until(deadline) => {
                    if draining.is_some() {
                        tracing::warn!(subscriber = %self.sub.name, abandoned = in_flight.len(), "shutdown grace elapsed; unsettled deliveries stay pending");
                        in_flight.abort_all();
                        while let Some(done) = recorder.join_next().await {
                            done.expect("the recording task does not panic").1?;
                        }
                        to_record.extend(arrived);
                        let attempts: Vec<AttemptResult> = to_record.iter().map(|(a, _, _)| a.clone()).collect();
                        self.store.record_attempts(&attempts).await?;
                        self.journal_settled(journal.as_mut());
                        return Ok(());
                    }
                }
                _ = shutdown.cancelled(), if draining.is_none() => {
                    draining = Some(tokio::time::Instant::now() + grace);
                }
            }
            // A batch committed: its journal segment goes, before the next
            // batch closes a segment of its own (and before its positions
            // may be sent again).
            if recorded.is_some() {
                if let (Some(j), Some(n)) = (journal.as_mut(), recording_segment.take()) {
                    if let Err(e) = j.release(n) {
                        self.journal_lost(&e);
                        journal = None;
                    }
                }
            }
            // Stage 3: act at once on what the answers say about the
            // subscriber (a 410 or a breaker trip stops the next fetch).
            if !arrived.is_empty() {
                if let Some(j) = journal.as_mut() {
                    if let Err(e) = j.append(arrived.iter().map(|(a, _, _)| a)) {
                        self.journal_lost(&e);
                        journal = None;
                    }
                }
                let mut any_failure = false;
                for (r, signal, created_at) in &arrived {
                    log_outcome(&self.sub.name, r);
                    self.count(r, *created_at);
                    match signal {
                        Signal::Success => {
                            if circuit != (Circuit::Closed { failures: 0 }) {
                                if matches!(circuit, Circuit::Probing) {
                                    tracing::info!(subscriber = %self.sub.name, "probe succeeded; circuit closed, resuming");
                                }
                                circuit = self.close_breaker(&mut state).await?;
                            }
                        }
                        Signal::Gone => {
                            if state.disabled_at.is_none() {
                                tracing::warn!(subscriber = %self.sub.name, "the endpoint answered 410 Gone; subscriber DISABLED until re-enabled (hubsync enable, or a new url)");
                                state.disabled_at = Some(now_ms());
                                state.disabled_reason = Some("HTTP 410 Gone".into());
                                state.disabled_url = Some(self.sub.url.to_string());
                                // The disabled gate supersedes the breaker.
                                state.parked_until = None;
                                state.parked_reason = None;
                                self.store.set_subscriber_state(&state).await?;
                                self.metrics.disabled.store(true, Ordering::Relaxed);
                                self.metrics.breaker_open.store(false, Ordering::Relaxed);
                                last_state_check = tokio::time::Instant::now();
                            }
                            circuit = Circuit::Closed { failures: 0 };
                        }
                        Signal::Neutral => {}
                        Signal::Failure => {
                            any_failure = true;
                            circuit = match circuit {
                                Circuit::Closed { failures } => {
                                    let failures = failures + 1;
                                    if self.sub.breaker_failures > 0 && failures >= self.sub.breaker_failures
                                    {
                                        tracing::warn!(subscriber = %self.sub.name, failures, "circuit breaker open: subscriber parked; nothing is dropped");
                                        self.open_breaker(&mut state, "consecutive failures").await?
                                    } else {
                                        Circuit::Closed { failures }
                                    }
                                }
                                Circuit::Probing => {
                                    tracing::info!(subscriber = %self.sub.name, "probe failed; staying parked");
                                    self.open_breaker(&mut state, "probe failed").await?
                                }
                                open @ Circuit::Open { .. } => open,
                            };
                        }
                    }
                }
                coalesce_wanted |= any_failure && self.sub.coalesce;
                to_record.extend(arrived);
            }
            // Stage 4: record outcomes, one transaction per batch, in the
            // background: the fsync of one batch overlaps the calls of the
            // next instead of stalling every lane. Positions stay unsettled
            // (not fetched again) until their batch is committed.
            if recorder.is_empty() && !to_record.is_empty() {
                if let Some(j) = journal.as_mut() {
                    match j.rotate() {
                        Ok(n) => recording_segment = Some(n),
                        Err(e) => {
                            self.journal_lost(&e);
                            journal = None;
                        }
                    }
                }
                let batch = std::mem::take(&mut to_record);
                let store = self.store.clone();
                recorder.spawn(async move {
                    let attempts: Vec<AttemptResult> = batch.iter().map(|(a, _, _)| a.clone()).collect();
                    let res = store.record_attempts(&attempts).await;
                    (batch, res)
                });
            }
            if let Some(batch) = recorded {
                for (r, _, _) in &batch {
                    unsettled.remove(&r.pos);
                }
            }
            // A failing lane is a backlog in the making: collapse it, at most
            // once a second, and only when nothing is in flight or unrecorded
            // (an attempted message is never coalesced).
            if coalesce_wanted
                && held.is_empty()
                && in_flight.is_empty()
                && recorder.is_empty()
                && to_record.is_empty()
                && last_coalesce.is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
            {
                let open = matches!(circuit, Circuit::Open { .. });
                self.coalesce(open).await?;
                last_coalesce = Some(tokio::time::Instant::now());
                coalesce_wanted = false;
            }
            if circuit == Circuit::Probing && unsettled.is_empty() {
                // The probe settled without a verdict on the subscriber: probe again.
                circuit = Circuit::Open {
                    probe_at: tokio::time::Instant::now(),
                };
            }
            if draining.is_some() && in_flight.is_empty() && recorder.is_empty() && to_record.is_empty() {
                self.journal_settled(journal.as_mut());
                return Ok(());
            }
        }
    }

    /// Opens the outcome journal and records in the store what it kept from
    /// a run that crashed, before anything is sent: those messages were
    /// answered, and are not sent again. Without a usable journal the worker
    /// runs as on PostgreSQL (at most two windows unrecorded).
    async fn open_journal(&self) -> Result<Option<journal::Journal>, StoreError> {
        let Some(dir) = &self.journal else {
            return Ok(None);
        };
        let (mut j, kept) = match journal::Journal::open(dir) {
            Ok(opened) => opened,
            Err(e) => {
                self.journal_lost(&e);
                return Ok(None);
            }
        };
        if !kept.is_empty() {
            let settled = self.store.apply_journal(&kept).await?;
            tracing::info!(subscriber = %self.sub.name, answers = kept.len(), settled, "answers received before a crash recorded; not sent again");
        }
        if let Err(e) = j.release_all() {
            self.journal_lost(&e);
            return Ok(None);
        }
        Ok(Some(j))
    }

    /// Everything written to the journal is in the store: empty it.
    fn journal_settled(&self, journal: Option<&mut journal::Journal>) {
        if let Some(Err(e)) = journal.map(journal::Journal::release_all) {
            self.journal_lost(&e);
        }
    }

    fn journal_lost(&self, e: &std::io::Error) {
        tracing::warn!(subscriber = %self.sub.name, error = %e, "outcome journal unavailable; a crash may re-send up to twice max_in_flight messages");
    }

    /// The stored state; a disabled subscriber whose configured URL changed
    /// is re-enabled (the operator pointed it somewhere else).
    async fn initial_state(&self) -> Result<SubscriberState, StoreError> {
        let mut state = self.load_state().await?;
        if state.disabled_at.is_some() && state.disabled_url.as_deref() != Some(self.sub.url.as_str()) {
            tracing::info!(subscriber = %self.sub.name, "url changed since the 410; re-enabling");
            state.disabled_at = None;
            state.disabled_reason = None;
            state.disabled_url = None;
            self.store.set_subscriber_state(&state).await?;
        }
        if state.disabled_at.is_some() {
            tracing::warn!(subscriber = %self.sub.name, reason = state.disabled_reason.as_deref(), "subscriber is disabled; nothing will be sent until it is re-enabled");
        }
        self.metrics
            .disabled
            .store(state.disabled_at.is_some(), Ordering::Relaxed);
        Ok(state)
    }

    async fn load_state(&self) -> Result<SubscriberState, StoreError> {
        Ok(self
            .store
            .subscriber_states()
            .await?
            .into_iter()
            .find(|s| s.subscriber == self.sub.name)
            .unwrap_or_else(|| SubscriberState {
                subscriber: self.sub.name.clone(),
                ..Default::default()
            }))
    }

    async fn open_breaker(&self, state: &mut SubscriberState, why: &str) -> Result<Circuit, StoreError> {
        let wait = self.sub.breaker_probe_interval;
        state.parked_until = Some(now_ms() + wait.as_millis() as i64);
        state.parked_reason = Some(why.to_string());
        self.store.set_subscriber_state(state).await?;
        self.metrics.breaker_open.store(true, Ordering::Relaxed);
        Ok(Circuit::Open {
            probe_at: tokio::time::Instant::now() + wait,
        })
    }

    async fn close_breaker(&self, state: &mut SubscriberState) -> Result<Circuit, StoreError> {
        if state.parked_until.is_some() {
            state.parked_until = None;
            state.parked_reason = None;
            self.store.set_subscriber_state(state).await?;
        }
        self.metrics.breaker_open.store(false, Ordering::Relaxed);
        self.wake.notify_one();
        Ok(Circuit::Closed { failures: 0 })
    }

    async fn coalesce(&self, all_lanes: bool) -> Result<(), StoreError> {
        let n = self.store.coalesce(&self.sub.name, all_lanes).await?;
        if n > 0 {
            self.metrics.coalesced.fetch_add(n, Ordering::Relaxed);
            tracing::info!(subscriber = %self.sub.name, coalesced = n, "superseded updates collapsed into the latest");
        }
        Ok(())
    }

    fn count(&self, r: &AttemptResult, created_at: i64) {
        let m = &self.metrics;
        match r.outcome {
            AttemptOutcome::Delivered => {
                m.delivered.fetch_add(1, Ordering::Relaxed);
                m.observe_latency_ms(r.at_ms + r.duration_ms - created_at);
            }
            AttemptOutcome::RetryAt(_) => {
                m.retried.fetch_add(1, Ordering::Relaxed);
            }
            AttemptOutcome::Failed => {
                m.failed.fetch_add(1, Ordering::Relaxed);
            }
            AttemptOutcome::Held => {
                m.held.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn log_outcome(subscriber: &str, r: &AttemptResult) {
    match r.outcome {
        AttemptOutcome::Delivered => {
            tracing::debug!(subscriber, pos = r.pos, attempt = r.attempt, "delivered")
        }
        AttemptOutcome::RetryAt(at) => tracing::info!(
            subscriber,
            pos = r.pos,
            attempt = r.attempt,
            status = r.http_status,
            error = r.error.as_deref(),
            retry_in_ms = at - now_ms(),
            "delivery failed; will retry"
        ),
        AttemptOutcome::Failed => tracing::warn!(
            subscriber,
            pos = r.pos,
            attempt = r.attempt,
            status = r.http_status,
            error = r.error.as_deref(),
            "delivery failed permanently; kept as a dead letter"
        ),
        AttemptOutcome::Held => tracing::info!(
            subscriber,
            pos = r.pos,
            status = r.http_status,
            error = r.error.as_deref(),
            "attempt failed; message kept pending, retries untouched"
        ),
    }
}

/// Stages "prepare" and "call": build the request, sign, POST, classify.
/// Returns the attempt, what it means for the subscriber, and the message's
/// commit time (for the latency histogram).
async fn call(
    client: reqwest::Client,
    sub: Arc<Subscriber>,
    d: Due,
    probe: bool,
) -> (AttemptResult, Signal, i64) {
    let attempt = d.attempts + 1;
    let at_ms = now_ms();
    let created_at = d.created_at;
    let mut result = AttemptResult {
        subscriber: sub.name.clone(),
        pos: d.pos,
        attempt,
        at_ms,
        duration_ms: 0,
        http_status: None,
        error: None,
        excerpt: None,
        outcome: AttemptOutcome::Delivered,
    };
    let prepared = match envelope::prepare(&sub, &d) {
        Ok(p) => p,
        Err(e) => {
            // Nothing a retry could fix.
            result.outcome = AttemptOutcome::Failed;
            result.error = Some(e.to_string());
            return (result, Signal::Neutral, created_at);
        }
    };
    let ts = chrono::Utc::now().timestamp();
    let signature = sign::sign(&sub.keys, &d.webhook_id, ts, prepared.body.as_bytes());
    let mut req = client
        .post(sub.url.clone())
        .timeout(sub.timeout)
        .header("content-type", "application/json")
        .header("webhook-id", &d.webhook_id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", signature);
    for (k, v) in &prepared.headers {
        req = req.header(*k, v);
    }
    for (k, v) in &sub.headers {
        req = req.header(k, v);
    }
    let started = Instant::now();
    let (verdict, http_status, excerpt) = match req.body(prepared.body).send().await {
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let verdict = retry::classify_status(status, retry_after.as_deref(), sub.retry_after_max);
            // Only failures' bodies are worth keeping, and only a capped,
            // redacted excerpt of them.
            let excerpt = if verdict == Verdict::Delivered {
                None
            } else {
                let mut raw = Vec::new();
                while raw.len() < EXCERPT_CAP {
                    match resp.chunk().await {
                        Ok(Some(c)) => raw.extend_from_slice(&c),
                        _ => break,
                    }
                }
                Some(redact_excerpt(&raw)).filter(|e| !e.trim().is_empty())
            };
            (verdict, Some(status), excerpt)
        }
        Err(e) => (retry::classify_error(&e), None, None),
    };
    result.duration_ms = started.elapsed().as_millis() as i64;
    result.http_status = http_status;
    result.excerpt = excerpt;
    let (outcome, error, signal) = match verdict {
        Verdict::Delivered => (AttemptOutcome::Delivered, None, Signal::Success),
        // A probe's failure says the subscriber is still down; it is not the
        // message's fault and must not use up its retries.
        Verdict::Retry { reason, .. } if probe => (AttemptOutcome::Held, Some(reason), Signal::Failure),
        Verdict::Retry { min_wait, reason } => {
            match retry::next_delay(&sub.retry_schedule, attempt, min_wait) {
                Some(delay) => (
                    AttemptOutcome::RetryAt(now_ms() + delay.as_millis() as i64),
                    Some(reason),
                    Signal::Failure,
                ),
                None => (
                    AttemptOutcome::Failed,
                    Some(format!("{reason}; retries exhausted")),
                    Signal::Failure,
                ),
            }
        }
        // The message stays pending: the subscriber, not the message, is gone.
        Verdict::Permanent { reason, gone: true } => (AttemptOutcome::Held, Some(reason), Signal::Gone),
        Verdict::Permanent { reason, gone: false } => (AttemptOutcome::Failed, Some(reason), Signal::Failure),
    };
    result.outcome = outcome;
    result.error = error;
    (result, signal, created_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_capped_and_redacted() {
        let e = redact_excerpt(b"{\"error\":\"member 123456789 not found\",\"email\":\"jo@x.org\"}\n");
        assert!(!e.contains("123456789"), "{e}");
        assert!(!e.contains("jo@x.org"), "{e}");
        assert!(e.contains("not found"), "{e}");
        let long = vec![b'a'; 10_000];
        assert!(redact_excerpt(&long).len() <= EXCERPT_CAP);
    }
}
