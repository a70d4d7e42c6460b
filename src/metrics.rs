//! Process metrics in the Prometheus text exposition format.
//!
//! Hand-rolled on atomics rather than the `metrics` + exporter crates: the set
//! is small and closed (a few counters and one histogram per subscriber), the
//! gauges that matter (backlog, oldest pending age, dead letters) are read
//! from the store at scrape time so they are right across restarts and other
//! processes (`hubsync replay`), and the format is a few lines of text. That
//! keeps ~20 crates out of the build. Labels are subscriber names only —
//! never a case, a patient reference or a URL.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::store::{SubscriberState, SubscriberStats};

/// Upper bounds (seconds) of the commit-to-receipt latency histogram.
const LATENCY_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 600.0, 3600.0,
];

/// One subscriber's counters, updated by its worker.
#[derive(Debug, Default)]
pub struct SubscriberMetrics {
    pub delivered: AtomicU64,
    pub retried: AtomicU64,
    pub failed: AtomicU64,
    pub held: AtomicU64,
    pub coalesced: AtomicU64,
    pub breaker_open: AtomicBool,
    pub disabled: AtomicBool,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_sum_ms: AtomicU64,
    latency_count: AtomicU64,
}

impl SubscriberMetrics {
    /// Records one delivery's latency from outbox commit to 2xx.
    pub fn observe_latency_ms(&self, ms: i64) {
        let ms = ms.max(0) as u64;
        let secs = ms as f64 / 1000.0;
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| secs <= *b) {
            self.latency_buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.latency_sum_ms.fetch_add(ms, Ordering::Relaxed);
        self.latency_count.fetch_add(1, Ordering::Relaxed);
    }
}

/// Every metric of the process.
#[derive(Debug, Default)]
pub struct Metrics {
    subscribers: BTreeMap<String, Arc<SubscriberMetrics>>,
    pub payloads_purged: AtomicU64,
}

impl Metrics {
    pub fn new<'a>(subscribers: impl IntoIterator<Item = &'a str>) -> Metrics {
        Metrics {
            subscribers: subscribers
                .into_iter()
                .map(|s| (s.to_string(), Arc::default()))
                .collect(),
            payloads_purged: AtomicU64::new(0),
        }
    }

    /// The counters of `subscriber` (a detached set for an unknown name).
    pub fn subscriber(&self, name: &str) -> Arc<SubscriberMetrics> {
        self.subscribers.get(name).cloned().unwrap_or_default()
    }

    /// The exposition text: process counters plus store-derived gauges.
    pub fn render(&self, stats: &[SubscriberStats], states: &[SubscriberState]) -> String {
        let mut out = String::with_capacity(4096);
        let c = |v: &AtomicU64| v.load(Ordering::Relaxed);
        header(
            &mut out,
            "hubsync_delivery_attempts_total",
            "counter",
            "HTTP attempts by result.",
        );
        for (name, m) in &self.subscribers {
            for (result, v) in [
                ("delivered", &m.delivered),
                ("retry", &m.retried),
                ("failed", &m.failed),
                ("held", &m.held),
            ] {
                let _ = writeln!(
                    out,
                    "hubsync_delivery_attempts_total{{subscriber=\"{}\",result=\"{result}\"}} {}",
                    esc(name),
                    c(v)
                );
            }
        }
        per_subscriber(
            &mut out,
            ("hubsync_delivery_coalesced_total", "counter"),
            "Deliveries collapsed into a later update of the same milestone.",
            self.subscribers
                .iter()
                .map(|(n, m)| (n.as_str(), c(&m.coalesced))),
        );
        header(
            &mut out,
            "hubsync_delivery_latency_seconds",
            "histogram",
            "From outbox commit to the receiver's 2xx.",
        );
        for (name, m) in &self.subscribers {
            let n = esc(name);
            let mut cumulative = 0;
            for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
                cumulative += c(&m.latency_buckets[i]);
                let _ = writeln!(
                    out,
                    "hubsync_delivery_latency_seconds_bucket{{subscriber=\"{n}\",le=\"{b}\"}} {cumulative}"
                );
            }
            let count = c(&m.latency_count);
            let _ = writeln!(
                out,
                "hubsync_delivery_latency_seconds_bucket{{subscriber=\"{n}\",le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(
                out,
                "hubsync_delivery_latency_seconds_sum{{subscriber=\"{n}\"}} {}",
                c(&m.latency_sum_ms) as f64 / 1000.0
            );
            let _ = writeln!(
                out,
                "hubsync_delivery_latency_seconds_count{{subscriber=\"{n}\"}} {count}"
            );
        }
        let flag = |f: &AtomicBool| u8::from(f.load(Ordering::Relaxed));
        per_subscriber(
            &mut out,
            ("hubsync_subscriber_breaker_open", "gauge"),
            "1 while the circuit breaker parks the subscriber.",
            self.subscribers
                .iter()
                .map(|(n, m)| (n.as_str(), flag(&m.breaker_open))),
        );
        let disabled = |name: &str| {
            states
                .iter()
                .any(|s| s.subscriber == name && s.disabled_at.is_some())
        };
        per_subscriber(
            &mut out,
            ("hubsync_subscriber_disabled", "gauge"),
            "1 while disabled by a 410 Gone.",
            self.subscribers
                .keys()
                .map(|n| (n.as_str(), u8::from(disabled(n)))),
        );
        // Store-derived gauges, one series per subscriber with stats.
        let gauge = |out: &mut String, name, help, v: &dyn Fn(&SubscriberStats) -> f64| {
            let rows = stats.iter().map(|s| (s.subscriber.as_str(), v(s)));
            per_subscriber(out, (name, "gauge"), help, rows);
        };
        gauge(
            &mut out,
            "hubsync_delivery_backlog",
            "Pending deliveries.",
            &|s| s.pending as f64,
        );
        gauge(
            &mut out,
            "hubsync_delivery_oldest_pending_age_seconds",
            "Age of the oldest pending delivery (0 when none).",
            &|s| s.oldest_pending_ms.unwrap_or(0) as f64 / 1000.0,
        );
        gauge(
            &mut out,
            "hubsync_delivery_failing",
            "Pending deliveries whose last attempt failed (being retried).",
            &|s| s.failing as f64,
        );
        gauge(
            &mut out,
            "hubsync_delivery_dead_letters",
            "Deliveries failed for good (replayable).",
            &|s| s.failed as f64,
        );
        gauge(
            &mut out,
            "hubsync_deliveries_delivered",
            "Deliveries settled as delivered (stored).",
            &|s| s.delivered as f64,
        );
        header(
            &mut out,
            "hubsync_payloads_purged_total",
            "counter",
            "Outbox bodies nulled by the retention cleaner.",
        );
        let _ = writeln!(out, "hubsync_payloads_purged_total {}", c(&self.payloads_purged));
        out
    }
}

/// Journey metrics: open stalls and armed timers per program and rule (from
/// the store, so right across restarts and instances), and this process's
/// timer counters. Labels are program and rule names, never a case.
pub fn render_journeys(
    open: &[crate::journey::timer::StallCount],
    armed: &[crate::journey::timer::ArmedCount],
) -> String {
    use crate::journey as j;
    let mut out = String::with_capacity(1024);
    per_rule(
        &mut out,
        "hubsync_journey_open_stalls",
        "Cases stalled on a journey rule and not yet resumed or cancelled.",
        open.iter().map(|s| (s.program.as_str(), s.rule.as_str(), s.open)),
    );
    per_rule(
        &mut out,
        "hubsync_journey_timers_armed",
        "Journey timers armed and waiting (in the store).",
        armed
            .iter()
            .map(|a| (a.program.as_str(), a.rule.as_str(), a.armed)),
    );
    header(
        &mut out,
        "hubsync_journey_timers_total",
        "counter",
        "Journey timer transitions made by this process.",
    );
    for (event, v) in [
        ("armed", &j::TIMERS_ARMED),
        ("fired", &j::TIMERS_FIRED),
        ("cleared", &j::TIMERS_CLEARED),
        ("cancelled", &j::TIMERS_CANCELLED),
        ("resumed", &j::TIMERS_RESUMED),
        ("suppressed", &j::STALLS_SUPPRESSED),
    ] {
        let _ = writeln!(
            out,
            "hubsync_journey_timers_total{{event=\"{event}\"}} {}",
            v.load(Ordering::Relaxed)
        );
    }
    out
}

/// One gauge with a sample per program and rule.
fn per_rule<'a>(
    out: &mut String,
    name: &str,
    help: &str,
    rows: impl Iterator<Item = (&'a str, &'a str, i64)>,
) {
    header(out, name, "gauge", help);
    for (program, rule, value) in rows {
        let _ = writeln!(
            out,
            "{name}{{program=\"{}\",rule=\"{}\"}} {value}",
            esc(program),
            esc(rule)
        );
    }
}

/// One metric (`name`, `kind`) with a sample per subscriber.
fn per_subscriber<'a, V: std::fmt::Display>(
    out: &mut String,
    (name, kind): (&str, &str),
    help: &str,
    rows: impl Iterator<Item = (&'a str, V)>,
) {
    header(out, name, kind, help);
    for (subscriber, value) in rows {
        let _ = writeln!(out, "{name}{{subscriber=\"{}\"}} {value}", esc(subscriber));
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Escapes a label value (backslash, quote, newline).
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let m = Metrics::new(["a"]);
        let s = m.subscriber("a");
        s.observe_latency_ms(3);
        s.observe_latency_ms(30);
        s.delivered.fetch_add(2, Ordering::Relaxed);
        let text = m.render(&[], &[]);
        assert!(text.contains("hubsync_delivery_latency_seconds_bucket{subscriber=\"a\",le=\"0.005\"} 1"));
        assert!(text.contains("hubsync_delivery_latency_seconds_bucket{subscriber=\"a\",le=\"0.05\"} 2"));
        assert!(text.contains("hubsync_delivery_latency_seconds_count{subscriber=\"a\"} 2"));
        assert!(text.contains("hubsync_delivery_attempts_total{subscriber=\"a\",result=\"delivered\"} 2"));
    }
}
