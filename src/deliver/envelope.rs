//! The "prepare" stage: what goes on the wire for one subscriber — the body
//! (full or thin; Standard Webhooks framing or CloudEvents binary mode) and
//! the extra headers.
//!
//! Everything is derived from the outbox row alone, deterministically, so a
//! `webhook-id` names the same bytes on every attempt and every replay for a
//! given subscriber setting.

use super::Subscriber;
use crate::config::{Envelope, PayloadMode};
use crate::store::Due;

/// Why a message cannot be prepared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrepareError {
    #[error("payload purged by retention; only a thin subscriber can still receive it")]
    Purged,
    #[error("stored body is not a hubsync envelope")]
    Malformed,
}

/// A request ready to sign and send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub body: String,
    /// `ce-*` headers in CloudEvents mode; empty otherwise.
    pub headers: Vec<(&'static str, String)>,
}

/// RFC 3339 with milliseconds, UTC, of a unix-ms instant.
pub fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The `data` object of a stored body, as the exact bytes stored. The outbox
/// renders `{"type":…,"timestamp":…,"data":{…}}` with `data` last, and type
/// and timestamp are a milestone code and an RFC 3339 time (no quotes or
/// escapes inside), so the first `,"data":` is the field.
pub fn data_slice(body: &str) -> Option<&str> {
    if !body.starts_with("{\"type\":") || !body.ends_with('}') {
        return None;
    }
    let at = body.find(",\"data\":")?;
    Some(&body[at + ",\"data\":".len()..body.len() - 1])
}

/// The thin `data`: ids and a link to the full milestone.
fn thin_data(d: &Due, link_base: &str) -> String {
    serde_json::json!({
        "id": d.webhook_id,
        "program": d.program,
        "case_id": d.case_id,
        "milestone": d.milestone,
        "sequence": d.seq,
        "href": format!("{link_base}{}", d.webhook_id),
    })
    .to_string()
}

pub fn prepare(sub: &Subscriber, d: &Due) -> Result<Prepared, PrepareError> {
    let data: String = match sub.payload {
        PayloadMode::Full => {
            let body = d.body.as_deref().ok_or(PrepareError::Purged)?;
            match sub.envelope {
                // The stored bytes as they are: no re-serialization.
                Envelope::Standard => {
                    return Ok(Prepared {
                        body: body.to_string(),
                        headers: Vec::new(),
                    })
                }
                Envelope::Cloudevents => data_slice(body).ok_or(PrepareError::Malformed)?.to_string(),
            }
        }
        PayloadMode::Thin => thin_data(d, sub.link_base.as_deref().unwrap_or("/v1/messages/")),
    };
    let time = rfc3339_ms(d.created_at);
    Ok(match sub.envelope {
        Envelope::Standard => Prepared {
            body: format!(
                "{{\"type\":{},\"timestamp\":\"{time}\",\"data\":{data}}}",
                serde_json::Value::from(d.milestone.as_str())
            ),
            headers: Vec::new(),
        },
        Envelope::Cloudevents => Prepared {
            body: data,
            headers: vec![
                ("ce-specversion", "1.0".to_string()),
                ("ce-id", d.webhook_id.clone()),
                ("ce-source", format!("/hubsync/connectors/{}", d.connector)),
                ("ce-type", d.milestone.clone()),
                ("ce-time", time),
                ("ce-subject", d.case_id.clone()),
                ("ce-partitionkey", format!("{}/{}", d.program, d.case_id)),
                ("ce-sequence", d.seq.to_string()),
            ],
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_slice_is_the_stored_data() {
        let body = r#"{"type":"pa.approved","timestamp":"2026-11-23T00:00:00.000Z","data":{"a":{"data":1},"b":"x"}}"#;
        assert_eq!(data_slice(body), Some(r#"{"a":{"data":1},"b":"x"}"#));
        assert_eq!(data_slice("{}"), None);
    }

    #[test]
    fn rfc3339() {
        assert_eq!(rfc3339_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
