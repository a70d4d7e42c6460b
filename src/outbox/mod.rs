//! The outbox: each delta rendered once, at commit, into the exact webhook
//! body that will be signed and sent on every attempt.
//!
//! Rendering at commit time (not at send time) is what makes a `webhook-id`
//! name one payload forever: retries, restarts and replays re-send these bytes.
//!
//! The outbox stage also owns its message types ([`message`]): the row a
//! commit writes, the due message a worker claims and an attempt's outcome.
//! `store` persists them and `deliver` consumes them.

pub mod journey;
pub mod message;
pub mod sequence;

pub use message::{AttemptOutcome, AttemptResult, DeliveryStatus, Due, OutboxWrite};

use serde::Serialize;

use crate::diff::Delta;
use crate::model::{ChangeKind, Content, Provenance};

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    timestamp: &'a str,
    data: Data<'a>,
}

#[derive(Serialize)]
struct Data<'a> {
    #[serde(flatten)]
    content: &'a Content,
    source: &'a Provenance,
    change: Change<'a>,
    sequence: i64,
}

#[derive(Serialize)]
struct Change<'a> {
    kind: ChangeKind,
    fields: &'a [String],
}

/// A new webhook id: `msg_` + a UUIDv7 (time-ordered, no `.`).
pub fn new_webhook_id() -> String {
    format!("msg_{}", uuid::Uuid::now_v7().simple())
}

/// The JSON body of a delta's webhook.
pub fn render(delta: &Delta, source: &Provenance, sequence: i64, timestamp: &str) -> String {
    let body = Body {
        kind: delta.candidate.content.milestone.as_str(),
        timestamp,
        data: Data {
            content: &delta.candidate.content,
            source,
            change: Change {
                kind: delta.kind,
                fields: &delta.fields,
            },
            sequence,
        },
    };
    serde_json::to_string(&body).expect("a body of strings, numbers and maps always serializes")
}

/// The `data` of a `feed.missing` event: a connector's file did not arrive
/// by its deadline. Carries no case and no patient: only the feed's identity
/// and times (RFC 3339; `expected_by` in the connector's own zone).
#[derive(Debug, Clone, Serialize)]
pub struct FeedMissing {
    pub connector: String,
    pub program: String,
    pub expected_by: String,
    pub time_zone: String,
    /// A file arriving at or after this instant, and by `expected_by`, would have counted.
    pub window_start: String,
    /// When the latest file of this feed arrived, if one ever did.
    pub last_arrival_at: Option<String>,
}

/// [`render`] from the content's canonical JSON (`serde_json::to_string` of
/// the delta's [`Content`], the state row's body), so that a first load
/// serializes each milestone once rather than twice. Byte-identical to
/// [`render`]: `data` is the content's fields followed by `source`, `change`
/// and `sequence`, which is what `#[serde(flatten)]` writes.
pub fn render_from_content_json(
    content_json: &str,
    delta: &Delta,
    source: &Provenance,
    sequence: i64,
    timestamp: &str,
) -> String {
    #[derive(Serialize)]
    struct Tail<'a> {
        source: &'a Provenance,
        change: Change<'a>,
        sequence: i64,
    }
    let tail = serde_json::to_string(&Tail {
        source,
        change: Change {
            kind: delta.kind,
            fields: &delta.fields,
        },
        sequence,
    })
    .expect("a body of strings, numbers and maps always serializes");
    let kind = serde_json::to_string(delta.candidate.content.milestone.as_str())
        .expect("a string always serializes");
    let ts = serde_json::to_string(timestamp).expect("a string always serializes");
    let inner = &content_json[1..content_json.len() - 1];
    let mut out = String::with_capacity(content_json.len() + tail.len() + kind.len() + ts.len() + 32);
    out.push_str("{\"type\":");
    out.push_str(&kind);
    out.push_str(",\"timestamp\":");
    out.push_str(&ts);
    out.push_str(",\"data\":{");
    out.push_str(inner);
    if !inner.is_empty() {
        out.push(',');
    }
    out.push_str(&tail[1..]);
    out.push('}');
    out
}

/// The JSON body of a `feed.missing` event: the same envelope as milestone
/// webhooks, `{"type":"feed.missing","timestamp":…,"data":{…}}`.
pub fn render_feed_missing(data: &FeedMissing, timestamp: &str) -> String {
    #[derive(Serialize)]
    struct Envelope<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        timestamp: &'a str,
        data: &'a FeedMissing,
    }
    serde_json::to_string(&Envelope {
        kind: "feed.missing",
        timestamp,
        data,
    })
    .expect("a body of strings always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::Candidate;
    use crate::map::Fingerprint;
    use crate::model::MilestoneCode;

    #[test]
    fn body_has_the_contract_fields() {
        let content = Content {
            program: "P".into(),
            case_id: "C1".into(),
            milestone: MilestoneCode::DispenseShipped,
            occurrence: "1".into(),
            occurred_at: "2026-11-22".into(),
            occurred_precision: "date".into(),
            time_zone: "America/New_York".into(),
            patient_ref: Some("pt_00".into()),
            status: None,
            sub_status: None,
            reasons: vec![],
            attributes: Default::default(),
        };
        let delta = Delta {
            candidate: Candidate {
                record: 1,
                locator: "line 2".into(),
                fp: Fingerprint::default(),
                content,
            },
            kind: ChangeKind::Updated,
            fields: vec!["attributes.tracking_number".into()],
        };
        let src = Provenance {
            connector: "c".into(),
            file: "f.csv".into(),
            sha256: "ab".into(),
            locator: "line 2".into(),
        };
        let body: serde_json::Value =
            serde_json::from_str(&render(&delta, &src, 7, "2026-11-23T00:00:00Z")).expect("json");
        assert_eq!(body["type"], "dispense.shipped");
        let d = &body["data"];
        for f in [
            "program",
            "case_id",
            "milestone",
            "occurred_at",
            "patient_ref",
            "status",
            "sub_status",
            "reasons",
            "attributes",
            "source",
            "change",
            "sequence",
        ] {
            assert!(d.get(f).is_some(), "missing {f}");
        }
        assert_eq!(d["sequence"], 7);
        assert_eq!(d["change"]["kind"], "updated");
        assert_eq!(d["source"]["locator"], "line 2");
        assert!(new_webhook_id().starts_with("msg_") && !new_webhook_id().contains('.'));
    }

    #[test]
    fn rendering_from_the_content_json_gives_the_same_bytes() {
        let mut attributes = serde_json::Map::new();
        attributes.insert("carrier".into(), "U\"PS\\ é".into());
        attributes.insert("days_supply".into(), 30.into());
        let content = Content {
            program: "P".into(),
            case_id: "C1".into(),
            milestone: MilestoneCode::PaDenied,
            occurrence: String::new(),
            occurred_at: "2026-11-22".into(),
            occurred_precision: "date".into(),
            time_zone: "America/New_York".into(),
            patient_ref: None,
            status: Some(crate::model::CaseStatus::Active),
            sub_status: Some("On \"Therapy\"".into()),
            reasons: vec![crate::model::Reason {
                system: "x12:HCR03".into(),
                code: "R1".into(),
            }],
            attributes,
        };
        for (kind, fields) in [
            (ChangeKind::Created, vec![]),
            (
                ChangeKind::Updated,
                vec!["occurred_at".to_string(), "attributes.carrier".into()],
            ),
        ] {
            let delta = Delta {
                candidate: Candidate {
                    record: 1,
                    locator: "line 2".into(),
                    fp: Fingerprint::default(),
                    content: content.clone(),
                },
                kind,
                fields,
            };
            let src = Provenance {
                connector: "c".into(),
                file: "f \"x\".csv".into(),
                sha256: "ab".into(),
                locator: "line 2".into(),
            };
            let json = serde_json::to_string(&delta.candidate.content).expect("content serializes");
            assert_eq!(
                render_from_content_json(&json, &delta, &src, 3, "2026-11-23T00:00:00.000Z"),
                render(&delta, &src, 3, "2026-11-23T00:00:00.000Z")
            );
        }
    }

    #[test]
    fn feed_missing_has_the_envelope() {
        let data = FeedMissing {
            connector: "acme".into(),
            program: "P".into(),
            expected_by: "2026-11-23T06:00:00-05:00".into(),
            time_zone: "America/New_York".into(),
            window_start: "2026-11-22T06:00:00-05:00".into(),
            last_arrival_at: None,
        };
        let body: serde_json::Value =
            serde_json::from_str(&render_feed_missing(&data, "2026-11-23T11:00:00.000Z")).expect("json");
        assert_eq!(body["type"], "feed.missing");
        assert_eq!(body["timestamp"], "2026-11-23T11:00:00.000Z");
        assert_eq!(body["data"]["connector"], "acme");
        assert_eq!(body["data"]["expected_by"], "2026-11-23T06:00:00-05:00");
        assert!(body["data"]["last_arrival_at"].is_null());
    }
}
