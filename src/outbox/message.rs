//! The outbox's message types: the row a chunk commit writes ([`OutboxWrite`]),
//! the due message a delivery worker claims ([`Due`]), and what each
//! attempt did ([`AttemptResult`], [`AttemptOutcome`], [`DeliveryStatus`]).
//!
//! The outbox stage owns them; `store` persists them and `deliver` consumes
//! them, so neither needs the other's types to speak about a message.

use serde::Serialize;

/// An outbox message to insert.
#[derive(Debug, Clone)]
pub struct OutboxWrite {
    pub id: String,
    pub connector: String,
    pub program: String,
    pub case_id: String,
    pub milestone: String,
    pub seq: i64,
    pub lane: u64,
    pub body: String,
    /// The milestone key hash: later updates with the same key supersede
    /// earlier ones (what backlog coalescing collapses).
    pub key_hash: u64,
    /// Subscribers that receive it.
    pub subscribers: Vec<String>,
}

/// A delivery that is due, with the message metadata thin payloads and
/// CloudEvents headers are built from.
#[derive(Debug, Clone)]
pub struct Due {
    pub pos: i64,
    pub lane: i64,
    pub attempts: u32,
    pub webhook_id: String,
    /// `None` once the retention cleaner purged it.
    pub body: Option<String>,
    pub connector: String,
    pub program: String,
    pub case_id: String,
    pub milestone: String,
    pub seq: i64,
    /// Unix ms of the outbox commit.
    pub created_at: i64,
}

/// Where a (subscriber, message) delivery stands. Stored as an integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    /// Retries exhausted or a permanent error: a dead letter, replayable.
    Failed,
    /// Superseded by a later update of the same milestone key while the
    /// subscriber was down; never sent (the receiver sees a sequence gap).
    Coalesced,
}

impl DeliveryStatus {
    pub fn code(self) -> i64 {
        match self {
            DeliveryStatus::Pending => 0,
            DeliveryStatus::Delivered => 1,
            DeliveryStatus::Failed => 2,
            DeliveryStatus::Coalesced => 3,
        }
    }
    pub fn from_code(c: i64) -> DeliveryStatus {
        match c {
            1 => DeliveryStatus::Delivered,
            2 => DeliveryStatus::Failed,
            3 => DeliveryStatus::Coalesced,
            _ => DeliveryStatus::Pending,
        }
    }
}

/// What happened to one attempt; written in batches (and, on SQLite, to
/// the outcome journal first: `deliver::journal`).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct AttemptResult {
    pub subscriber: String,
    pub pos: i64,
    pub attempt: u32,
    pub at_ms: i64,
    pub duration_ms: i64,
    pub http_status: Option<u16>,
    pub error: Option<String>,
    /// A capped, redacted excerpt of a failed response's body.
    pub excerpt: Option<String>,
    pub outcome: AttemptOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum AttemptOutcome {
    Delivered,
    /// Try again at this unix-ms time.
    RetryAt(i64),
    /// Retries exhausted or a permanent error: kept as a dead letter.
    Failed,
    /// The attempt is logged but the delivery is left exactly as it was
    /// (pending, same schedule): a circuit-breaker probe that failed, or the
    /// 410 that disabled the subscriber. Neither may use up a message's retries.
    Held,
}
