//! A webhook subscriber as the delivery workers run it: its endpoint,
//! decoded signing keys, retry schedule, filters and transport options.
//! Built and checked at load by setup from `[[subscribers]]`.

use std::time::Duration;

use crate::config::{Envelope, PayloadMode};

/// A webhook subscriber.
#[derive(Debug)]
pub struct Subscriber {
    pub name: String,
    pub url: reqwest::Url,
    /// Decoded signing keys; every one signs each request.
    pub keys: Vec<Vec<u8>>,
    pub timeout: Duration,
    pub max_in_flight: usize,
    pub retry_schedule: Vec<Duration>,
    pub retry_after_max: Duration,
    pub milestones: Vec<globset::GlobMatcher>,
    pub programs: Vec<String>,
    pub connectors: Vec<String>,
    pub headers: Vec<(String, String)>,
    pub identity: Option<ClientIdentity>,
    pub payload: PayloadMode,
    /// Base of thin payloads' links (`<admin public url>/v1/messages/`).
    pub link_base: Option<String>,
    pub envelope: Envelope,
    pub coalesce: bool,
    pub breaker_failures: u32,
    pub breaker_probe_interval: Duration,
    pub feed_missing: bool,
    /// Whether link-local and metadata addresses may be connected to
    /// (`[delivery] allow_link_local`); checked after each DNS resolution.
    pub allow_link_local: bool,
}

impl Subscriber {
    /// Whether this subscriber asked for `feed.missing` events about `connector`.
    pub fn wants_feed_missing(&self, connector: &str, program: &str) -> bool {
        self.feed_missing
            && (self.programs.is_empty() || self.programs.iter().any(|p| p == program))
            && (self.connectors.is_empty() || self.connectors.iter().any(|c| c == connector))
    }

    /// Whether a message from `connector` about `program`/`code` goes to this subscriber.
    pub fn wants(&self, connector: &str, program: &str, code: &str) -> bool {
        (self.milestones.is_empty() || self.milestones.iter().any(|g| g.is_match(code)))
            && (self.programs.is_empty() || self.programs.iter().any(|p| p == program))
            && (self.connectors.is_empty() || self.connectors.iter().any(|c| c == connector))
    }
}

/// A client certificate and key for mTLS; never printed.
#[derive(Clone)]
pub struct ClientIdentity(pub reqwest::Identity);

impl std::fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientIdentity(<redacted>)")
    }
}
