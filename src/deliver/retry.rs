//! What an attempt's result means: delivered, retry (when), or give up.
//!
//! The rules follow the Standard Webhooks conventions: retry timeouts,
//! connection errors, 408, 429 and 5xx (but 501); other 4xx are permanent;
//! redirects are not followed; `Retry-After` is honoured within a clamp; 429
//! and timeouts wait at least 60 s.

use std::time::Duration;

use rand::Rng;

/// The typed result of one HTTP attempt (Vector's Retry / DontRetry / Successful).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    Retry {
        min_wait: Option<Duration>,
        reason: String,
    },
    Permanent {
        reason: String,
        gone: bool,
    },
}

const SLOW_DOWN: Duration = Duration::from_secs(60);

/// Classifies an HTTP response.
pub fn classify_status(status: u16, retry_after: Option<&str>, clamp: Duration) -> Verdict {
    let after = retry_after.and_then(parse_retry_after).map(|d| d.min(clamp));
    match status {
        200..=299 => Verdict::Delivered,
        429 => Verdict::Retry {
            min_wait: Some(after.unwrap_or(SLOW_DOWN).max(SLOW_DOWN)),
            reason: "HTTP 429".into(),
        },
        408 => Verdict::Retry {
            min_wait: after,
            reason: "HTTP 408".into(),
        },
        501 => Verdict::Permanent {
            reason: "HTTP 501".into(),
            gone: false,
        },
        500..=599 => Verdict::Retry {
            min_wait: after,
            reason: format!("HTTP {status}"),
        },
        410 => Verdict::Permanent {
            reason: "HTTP 410 Gone: the endpoint asked to stop".into(),
            gone: true,
        },
        300..=399 => Verdict::Permanent {
            reason: format!("HTTP {status}: redirects are not followed"),
            gone: false,
        },
        _ => Verdict::Permanent {
            reason: format!("HTTP {status}"),
            gone: false,
        },
    }
}

/// Classifies a transport error.
pub fn classify_error(e: &reqwest::Error) -> Verdict {
    if e.is_timeout() {
        Verdict::Retry {
            min_wait: Some(SLOW_DOWN),
            reason: "timeout".into(),
        }
    } else if e.is_connect() {
        Verdict::Retry {
            min_wait: None,
            reason: "connection refused or unreachable".into(),
        }
    } else {
        Verdict::Retry {
            min_wait: None,
            reason: "transport error".into(),
        }
    }
}

/// `Retry-After` as delay-seconds or an HTTP date.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let t = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let secs = (t.timestamp() - chrono::Utc::now().timestamp()).max(0);
    Some(Duration::from_secs(secs as u64))
}

/// The delay before attempt `attempts + 1`, given `attempts` made so far, or
/// `None` when the schedule is exhausted. Jitter is ±20%.
pub fn next_delay(schedule: &[Duration], attempts: u32, min_wait: Option<Duration>) -> Option<Duration> {
    let base = *schedule.get(attempts.checked_sub(1)? as usize)?;
    let jitter = rand::rng().random_range(0.8..=1.2);
    let d = base.mul_f64(jitter);
    Some(match min_wait {
        Some(m) if m > d => m,
        _ => d,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        let clamp = Duration::from_secs(3600);
        assert_eq!(classify_status(204, None, clamp), Verdict::Delivered);
        assert!(
            matches!(classify_status(503, Some("7"), clamp), Verdict::Retry { min_wait: Some(d), .. } if d == Duration::from_secs(7))
        );
        assert!(
            matches!(classify_status(429, Some("1"), clamp), Verdict::Retry { min_wait: Some(d), .. } if d == Duration::from_secs(60))
        );
        assert!(
            matches!(classify_status(503, Some("999999"), clamp), Verdict::Retry { min_wait: Some(d), .. } if d == clamp)
        );
        assert!(matches!(
            classify_status(410, None, clamp),
            Verdict::Permanent { gone: true, .. }
        ));
        assert!(matches!(
            classify_status(400, None, clamp),
            Verdict::Permanent { gone: false, .. }
        ));
        assert!(matches!(
            classify_status(501, None, clamp),
            Verdict::Permanent { .. }
        ));
        assert!(matches!(
            classify_status(302, None, clamp),
            Verdict::Permanent { .. }
        ));
    }

    #[test]
    fn schedule_with_jitter_and_exhaustion() {
        let s = [Duration::from_secs(5), Duration::from_secs(300)];
        for _ in 0..100 {
            let d = next_delay(&s, 1, None).expect("first retry exists");
            assert!(
                d >= Duration::from_secs(4) && d <= Duration::from_secs(6),
                "{d:?}"
            );
        }
        assert!(next_delay(&s, 3, None).is_none());
        assert_eq!(
            next_delay(&s, 1, Some(Duration::from_secs(60))),
            Some(Duration::from_secs(60))
        );
    }
}
