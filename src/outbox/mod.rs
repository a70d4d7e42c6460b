//! The outbox: each delta rendered once, at commit, into the exact webhook
//! body that will be signed and sent on every attempt.
//!
//! Rendering at commit time (not at send time) is what makes a `webhook-id`
//! name one payload forever: retries, restarts and replays re-send these bytes.

pub mod journey;

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
