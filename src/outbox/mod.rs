//! The outbox: each delta rendered once, at commit, into the exact webhook
//! body that will be signed and sent on every attempt.
//!
//! Rendering at commit time (not at send time) is what makes a `webhook-id`
//! name one payload forever: retries, restarts and replays re-send these bytes.

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
}
