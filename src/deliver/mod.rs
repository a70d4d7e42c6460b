//! Delivery: signed POSTs of outbox messages to subscribers.
//!
//! One [`Worker`] per subscriber, written as explicit stages (as in Svix's
//! worker): **fetch** due lane heads → **call** (sign and POST) → **record**
//! (batch the outcomes into one transaction). A lane is a case: its next
//! message is not due until the previous one is settled, so deltas for one
//! case arrive in order while other cases flow in parallel; a failing case is
//! parked by its `next_attempt_at` without holding anyone else back.

pub mod retry;
pub mod sign;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Subscriber;
use crate::store::{now_ms, AttemptOutcome, AttemptResult, Due, Store, StoreError};
use retry::Verdict;

/// Builds the HTTP client every worker shares: no redirects, rustls.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true)
        .pool_max_idle_per_host(256)
        .user_agent(concat!("hubsync/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a client with static settings always builds")
}

pub struct Worker {
    pub store: Store,
    pub sub: Arc<Subscriber>,
    pub client: reqwest::Client,
    pub wake: Arc<Notify>,
    pub poll: Duration,
}

impl Worker {
    /// Runs until `shutdown`, then drains in-flight requests for up to `grace`.
    pub async fn run(self, shutdown: CancellationToken, grace: Duration) -> Result<(), StoreError> {
        let mut in_flight: JoinSet<AttemptResult> = JoinSet::new();
        // Positions sent but not yet recorded: they are still `pending` in the
        // store, so fetch must skip them.
        let mut unsettled: HashSet<i64> = HashSet::new();
        let mut draining: Option<tokio::time::Instant> = None;
        let max = self.sub.max_in_flight;
        loop {
            // Stage 1: fetch due lane heads and start calls.
            let mut next_wake = self.poll;
            if draining.is_none() && in_flight.len() < max {
                let room = max - in_flight.len();
                // On a shared store the claim leases each message to this
                // instance; the lease outlives any request (twice the timeout).
                let fresh: Vec<Due> = self
                    .store
                    .claim_due(&self.sub.name, now_ms(), room, self.sub.timeout * 2, &unsettled)
                    .await?;
                for d in fresh {
                    unsettled.insert(d.pos);
                    in_flight.spawn(call(self.client.clone(), self.sub.clone(), d));
                }
                if in_flight.is_empty() {
                    if let Some(at) = self.store.next_due(&self.sub.name).await? {
                        let ms = (at - now_ms()).clamp(0, self.poll.as_millis() as i64);
                        next_wake = Duration::from_millis(ms as u64);
                    }
                }
            }
            // Stage 2: wait for a result, new work, a timer or shutdown.
            let deadline = draining.unwrap_or_else(|| tokio::time::Instant::now() + next_wake);
            let mut results = Vec::new();
            tokio::select! {
                Some(r) = in_flight.join_next(), if !in_flight.is_empty() => {
                    if let Ok(r) = r { results.push(r) }
                    while let Some(r) = in_flight.try_join_next() {
                        if let Ok(r) = r { results.push(r) }
                    }
                }
                _ = self.wake.notified(), if draining.is_none() => {}
                _ = tokio::time::sleep_until(deadline) => {
                    if draining.is_some() {
                        tracing::warn!(subscriber = %self.sub.name, abandoned = in_flight.len(), "shutdown grace elapsed; unsettled deliveries stay pending");
                        in_flight.abort_all();
                        return Ok(());
                    }
                }
                _ = shutdown.cancelled(), if draining.is_none() => {
                    draining = Some(tokio::time::Instant::now() + grace);
                }
            }
            // Stage 3: record outcomes in one transaction.
            if !results.is_empty() {
                self.store.record_attempts(&results).await?;
                for r in &results {
                    unsettled.remove(&r.pos);
                    log_outcome(&self.sub.name, r);
                }
            }
            if draining.is_some() && in_flight.is_empty() {
                return Ok(());
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
    }
}

/// Stage "call": sign, POST, classify.
async fn call(client: reqwest::Client, sub: Arc<Subscriber>, d: Due) -> AttemptResult {
    let attempt = d.attempts + 1;
    let ts = chrono::Utc::now().timestamp();
    let signature = sign::sign(&sub.keys, &d.webhook_id, ts, d.body.as_bytes());
    let mut req = client
        .post(sub.url.clone())
        .timeout(sub.timeout)
        .header("content-type", "application/json")
        .header("webhook-id", &d.webhook_id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", signature);
    for (k, v) in &sub.headers {
        req = req.header(k, v);
    }
    let started = Instant::now();
    let at_ms = now_ms();
    let (verdict, http_status) = match req.body(d.body).send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            (
                retry::classify_status(status, retry_after.as_deref(), sub.retry_after_max),
                Some(status),
            )
        }
        Err(e) => (retry::classify_error(&e), None),
    };
    let duration_ms = started.elapsed().as_millis() as i64;
    let (outcome, error) = match verdict {
        Verdict::Delivered => (AttemptOutcome::Delivered, None),
        Verdict::Retry { min_wait, reason } => {
            match retry::next_delay(&sub.retry_schedule, attempt, min_wait) {
                Some(delay) => (
                    AttemptOutcome::RetryAt(now_ms() + delay.as_millis() as i64),
                    Some(reason),
                ),
                None => (
                    AttemptOutcome::Failed,
                    Some(format!("{reason}; retries exhausted")),
                ),
            }
        }
        Verdict::Permanent { reason, .. } => (AttemptOutcome::Failed, Some(reason)),
    };
    AttemptResult {
        subscriber: sub.name.clone(),
        pos: d.pos,
        attempt,
        at_ms,
        duration_ms,
        http_status,
        error,
        outcome,
    }
}
