//! Expected drops: a connector may say when its file is due (`[expect]`,
//! e.g. daily by 06:00 in its time zone). When a deadline passes with no
//! file in the 24 hours before it, the miss is logged, stored (`hubsync
//! status` lists it) and, for subscribers with `feed_missing = true`, a
//! `feed.missing` event goes into the outbox: signed, retried and recorded
//! like every other webhook.
//!
//! The watcher is its own task, apart from the connector's source task, so a
//! hub whose server is down still produces its alert.
//!
//! Only deadlines that pass while hubsync runs are judged: after a restart,
//! files that arrived on the server while hubsync was down are picked up
//! late, and judging the deadline then would raise false alarms.

use std::sync::Arc;

use chrono::{DateTime, Datelike, Duration as ChronoDuration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::connector::Expectation;
use crate::outbox::{self, FeedMissing};
use crate::setup::{Config, Connector};
use crate::store::{MissingDrop, OutboxWrite, Store, StoreError};

/// The instant a local date's deadline falls on. In a spring-forward gap the
/// deadline moves forward by the gap; an ambiguous time takes the earlier.
fn deadline_on(exp: &Expectation, tz: Tz, date: NaiveDate) -> Option<DateTime<Utc>> {
    let local = date.and_time(exp.daily_by);
    let at = tz.from_local_datetime(&local).earliest().or_else(|| {
        tz.from_local_datetime(&(local + ChronoDuration::hours(1)))
            .earliest()
    })?;
    Some(at.with_timezone(&Utc))
}

/// The first deadline strictly after `after`.
pub fn next_deadline(exp: &Expectation, tz: Tz, after: DateTime<Utc>) -> DateTime<Utc> {
    let today = after.with_timezone(&tz).date_naive();
    for offset in -1..=8 {
        let date = today + ChronoDuration::days(offset);
        if !exp.days.is_empty() && !exp.days.contains(&date.weekday()) {
            continue;
        }
        if let Some(at) = deadline_on(exp, tz, date) {
            if at > after {
                return at;
            }
        }
    }
    // Unreachable with at least one weekday in any 8-day span; a day later is
    // a safe fallback rather than a panic.
    after + ChronoDuration::days(1)
}

/// Judges one deadline: records (and announces) a miss if no file arrived
/// in the 24 hours before it. Returns whether a new miss was recorded.
pub async fn judge(
    store: &Store,
    config: &Config,
    connector: &Connector,
    deadline: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let tz = connector.time.tz;
    let window_start = deadline - ChronoDuration::hours(24);
    let last = store
        .last_arrival(&connector.name, deadline.timestamp_millis())
        .await?;
    if last.is_some_and(|t| t >= window_start.timestamp_millis()) {
        return Ok(false);
    }
    let now = Utc::now();
    let rfc = |t: DateTime<Utc>| {
        t.with_timezone(&tz)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let data = FeedMissing {
        connector: connector.name.clone(),
        program: connector.program.clone(),
        expected_by: rfc(deadline),
        time_zone: tz.name().to_string(),
        window_start: rfc(window_start),
        last_arrival_at: last.and_then(DateTime::from_timestamp_millis).map(rfc),
    };
    let subscribers: Vec<String> = config
        .subscribers
        .iter()
        .filter(|s| s.wants_feed_missing(&connector.name, &connector.program))
        .map(|s| s.name.clone())
        .collect();
    let lane_key = format!("feed.missing\u{1f}{}", connector.name);
    let id = outbox::new_webhook_id();
    let message = (!subscribers.is_empty()).then(|| OutboxWrite {
        // Each feed event stands alone: a key of its own, so backlog
        // coalescing never collapses one into another.
        key_hash: xxhash_rust::xxh3::xxh3_64(id.as_bytes()),
        id,
        connector: connector.name.clone(),
        program: connector.program.clone(),
        // Feed events belong to no case; a lane of their own per connector
        // keeps them from waiting behind (or holding up) case deliveries.
        case_id: String::new(),
        milestone: "feed.missing".to_string(),
        seq: 0,
        lane: xxhash_rust::xxh3::xxh3_64(lane_key.as_bytes()),
        body: outbox::render_feed_missing(&data, &now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        subscribers,
    });
    let drop = MissingDrop {
        connector: connector.name.clone(),
        expected_by_ms: deadline.timestamp_millis(),
        detected_at_ms: now.timestamp_millis(),
        last_arrival_ms: last,
        webhook_id: message.as_ref().map(|m| m.id.clone()),
    };
    let recorded = store.missing_drop(&drop, message.as_ref()).await?;
    if recorded {
        tracing::warn!(
            connector = %connector.name,
            expected_by = %data.expected_by,
            last_arrival_at = data.last_arrival_at.as_deref().unwrap_or("never"),
            notified = message.as_ref().map_or(0, |m| m.subscribers.len()),
            "feed missing: no file arrived by the deadline"
        );
    }
    Ok(recorded)
}

/// Waits for each deadline of `connector` and judges it, until shutdown.
pub async fn watch(
    store: Store,
    config: Arc<Config>,
    connector: Arc<Connector>,
    wakers: Vec<Arc<Notify>>,
    shutdown: CancellationToken,
) {
    let Some(exp) = connector.expect.clone() else {
        return;
    };
    let mut after = Utc::now();
    loop {
        let deadline = next_deadline(&exp, connector.time.tz, after);
        let wait = (deadline - Utc::now()).to_std().unwrap_or_default();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return,
        }
        // A store hiccup must not lose the deadline: retry it for a while.
        let mut tries = 0;
        loop {
            match judge(&store, &config, &connector, deadline).await {
                Ok(true) => {
                    for w in &wakers {
                        w.notify_one();
                    }
                    break;
                }
                Ok(false) => break,
                Err(e) if tries < 10 => {
                    tries += 1;
                    tracing::error!(connector = %connector.name, error = %e, "cannot judge a feed deadline; retrying in 30s");
                    tokio::select! {
                        _ = tokio::time::sleep(std::time::Duration::from_secs(30)) => {}
                        _ = shutdown.cancelled() => return,
                    }
                }
                Err(e) => {
                    tracing::error!(connector = %connector.name, error = %e, "gave up judging a feed deadline");
                    break;
                }
            }
        }
        after = deadline;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveTime, Weekday};

    fn exp(t: &str, days: &[Weekday]) -> Expectation {
        Expectation {
            daily_by: NaiveTime::parse_from_str(t, "%H:%M").expect("time"),
            days: days.to_vec(),
        }
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("rfc3339")
            .with_timezone(&Utc)
    }

    #[test]
    fn next_deadline_is_in_the_connector_zone() {
        let tz: Tz = "America/New_York".parse().expect("tz");
        let e = exp("06:00", &[]);
        assert_eq!(
            next_deadline(&e, tz, utc("2026-11-23T10:00:00Z")),
            utc("2026-11-23T11:00:00Z")
        );
        assert_eq!(
            next_deadline(&e, tz, utc("2026-11-23T11:00:00Z")),
            utc("2026-11-24T11:00:00Z"),
            "strictly after"
        );
    }

    #[test]
    fn weekdays_and_dst_are_respected() {
        let tz: Tz = "America/New_York".parse().expect("tz");
        // 2026-11-23 is a Monday; next Friday is the 27th.
        let e = exp("06:00", &[Weekday::Fri]);
        assert_eq!(
            next_deadline(&e, tz, utc("2026-11-23T12:00:00Z")),
            utc("2026-11-27T11:00:00Z")
        );
        // 2026-03-08 02:30 does not exist in New York: it moves to 03:30 EDT.
        let gap = exp("02:30", &[]);
        assert_eq!(
            next_deadline(&gap, tz, utc("2026-03-08T05:00:00Z")),
            utc("2026-03-08T07:30:00Z")
        );
    }
}
