//! The canonical milestone model: the one shape every hub's record becomes.
//!
//! A [`Milestone`] is one fact about one case (`program` + `case_id`). The set of
//! milestone codes and case statuses is closed (see `docs/milestones.md` and the
//! reference taxonomy), so both are enums: a mapping that names an unknown code
//! fails when it loads, not when a file arrives.
//!
//! The model separates what a milestone *says* ([`Content`], compared for deltas)
//! from where it *came from* ([`Provenance`], which changes every night and must
//! never by itself produce a delta).

use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::{Deserialize, Serialize};

macro_rules! milestone_codes {
    ($($variant:ident => $code:literal,)*) => {
        /// A milestone code from the patient-access taxonomy.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum MilestoneCode { $($variant,)* }

        impl MilestoneCode {
            /// Every code, in taxonomy order.
            pub const ALL: &'static [MilestoneCode] = &[$(MilestoneCode::$variant,)*];

            /// The dotted, lower-case wire form, e.g. `pa.approved`.
            pub fn as_str(self) -> &'static str {
                match self { $(MilestoneCode::$variant => $code,)* }
            }

            /// Parses the wire form; `None` for a code outside the taxonomy.
            pub fn parse(s: &str) -> Option<MilestoneCode> {
                match s { $($code => Some(MilestoneCode::$variant),)* _ => None }
            }
        }
    };
}

milestone_codes! {
    ReferralReceived => "referral.received",
    EnrollmentCompleted => "enrollment.completed",
    ConsentReceived => "consent.received",
    ConsentExpired => "consent.expired",
    IntakeIncomplete => "intake.incomplete",
    BvStarted => "bv.started",
    BvCompleted => "bv.completed",
    BvFailed => "bv.failed",
    PaRequired => "pa.required",
    PaNotRequired => "pa.not_required",
    PaSubmitted => "pa.submitted",
    PaPended => "pa.pended",
    PaInfoRequested => "pa.info_requested",
    PaInfoSubmitted => "pa.info_submitted",
    PaApproved => "pa.approved",
    PaDenied => "pa.denied",
    PaContactPayer => "pa.contact_payer",
    PaCancelled => "pa.cancelled",
    AppealSubmitted => "appeal.submitted",
    AppealApproved => "appeal.approved",
    AppealDenied => "appeal.denied",
    CopayEnrolled => "copay.enrolled",
    CopayIneligible => "copay.ineligible",
    PapEnrolled => "pap.enrolled",
    PapDenied => "pap.denied",
    BridgeShipped => "bridge.shipped",
    TriageAssigned => "triage.assigned",
    SpAccepted => "sp.accepted",
    SpTransferred => "sp.transferred",
    FillScheduled => "fill.scheduled",
    DispenseCompleted => "dispense.completed",
    DispenseShipped => "dispense.shipped",
    DispenseDelivered => "dispense.delivered",
    DispenseException => "dispense.exception",
    RefillDue => "refill.due",
    SiteOfCareScheduled => "site_of_care.scheduled",
    SiteOfCareAdministered => "site_of_care.administered",
    PatientUnreachable => "patient.unreachable",
    TherapyOnHold => "therapy.on_hold",
    TherapyDiscontinued => "therapy.discontinued",
    CaseCancelled => "case.cancelled",
    AdverseEventReported => "adverse_event.reported",
}

impl Serialize for MilestoneCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for MilestoneCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        MilestoneCode::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown milestone code `{s}`")))
    }
}

/// Case status after the milestone, in the specialty-pharmacy convention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CaseStatus {
    Pending,
    Active,
    OnHold,
    Cancelled,
    Discontinued,
    Closed,
}

impl CaseStatus {
    pub const ALL: &'static [CaseStatus] = &[
        CaseStatus::Pending,
        CaseStatus::Active,
        CaseStatus::OnHold,
        CaseStatus::Cancelled,
        CaseStatus::Discontinued,
        CaseStatus::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CaseStatus::Pending => "PENDING",
            CaseStatus::Active => "ACTIVE",
            CaseStatus::OnHold => "ON_HOLD",
            CaseStatus::Cancelled => "CANCELLED",
            CaseStatus::Discontinued => "DISCONTINUED",
            CaseStatus::Closed => "CLOSED",
        }
    }

    pub fn parse(s: &str) -> Option<CaseStatus> {
        CaseStatus::ALL.iter().copied().find(|c| c.as_str() == s)
    }
}

/// Attribute names a mapping may set. The set is closed so that a typo
/// (`tracking_nubmer`) fails at load; partner-specific extras use the `x_` prefix.
pub const KNOWN_ATTRIBUTES: &[&str] = &[
    "payer",
    "payer_id",
    "plan_type",
    "benefit_type",
    "coverage",
    "bin",
    "pcn",
    "group",
    "member_id_ref",
    "ndc11",
    "drug_name",
    "quantity",
    "days_supply",
    "fill_number",
    "refills_remaining",
    "rx_number",
    "carrier",
    "tracking_number",
    "ship_to",
    "cold_chain",
    "auth_number",
    "auth_start",
    "auth_end",
    "approved_quantity",
    "decision_partial",
    "pa_required",
    "pa_method",
    "appeal_level",
    "copay_id",
    "copay_amount",
    "coinsurance",
    "deductible",
    "out_of_pocket",
    "pharmacy_id",
    "pharmacy_name",
    "prescriber_npi",
    "referral_source",
    "missing_item",
    "site_of_care",
    "attempts",
    "trace_number",
    "hub_status",
];

/// Whether a mapping may set attribute `name`.
pub fn is_known_attribute(name: &str) -> bool {
    KNOWN_ATTRIBUTES.contains(&name)
        || (name.starts_with("x_")
            && name.len() > 2
            && name[2..]
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'))
}

/// When a milestone happened, with its precision kept explicit: a date-only
/// value never grows a made-up midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Occurred {
    Date(NaiveDate),
    DateTime(DateTime<FixedOffset>),
}

impl Occurred {
    pub fn precision(&self) -> &'static str {
        match self {
            Occurred::Date(_) => "date",
            Occurred::DateTime(_) => "datetime",
        }
    }

    /// RFC 3339 (`2026-11-22T14:30:00-05:00`) or a plain date (`2026-11-22`).
    pub fn to_wire(&self) -> String {
        match self {
            Occurred::Date(d) => d.format("%Y-%m-%d").to_string(),
            Occurred::DateTime(t) => t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false),
        }
    }
}

/// A typed attribute value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AttrValue {
    Bool(bool),
    Int(i64),
    Text(String),
}

/// A reason code, always with its code system (never flattened into text).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    pub system: String,
    pub code: String,
}

/// What a milestone says: the part compared between nights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Content {
    pub program: String,
    pub case_id: String,
    pub milestone: MilestoneCode,
    /// Distinguishes several milestones of one code in one case (a fill number,
    /// an authorization number). Empty when the case has only one.
    #[serde(default)]
    pub occurrence: String,
    pub occurred_at: String,
    pub occurred_precision: String,
    pub time_zone: String,
    pub patient_ref: Option<String>,
    pub status: Option<CaseStatus>,
    pub sub_status: Option<String>,
    pub reasons: Vec<Reason>,
    pub attributes: serde_json::Map<String, serde_json::Value>,
}

impl Content {
    /// Names of the fields that differ between `old` and `self`, attributes
    /// listed one by one (`attributes.tracking_number`) so that a receiver can
    /// tell a corrected date from a new tracking number.
    pub fn changed_fields(&self, old: &Content) -> Vec<String> {
        let mut fields = Vec::new();
        if self.occurred_at != old.occurred_at || self.occurred_precision != old.occurred_precision {
            fields.push("occurred_at".to_string());
        }
        if self.time_zone != old.time_zone {
            fields.push("time_zone".to_string());
        }
        if self.patient_ref != old.patient_ref {
            fields.push("patient_ref".to_string());
        }
        if self.status != old.status {
            fields.push("status".to_string());
        }
        if self.sub_status != old.sub_status {
            fields.push("sub_status".to_string());
        }
        if self.reasons != old.reasons {
            fields.push("reasons".to_string());
        }
        let mut names: Vec<&String> = self.attributes.keys().chain(old.attributes.keys()).collect();
        names.sort();
        names.dedup();
        for name in names {
            if self.attributes.get(name) != old.attributes.get(name) {
                fields.push(format!("attributes.{name}"));
            }
        }
        fields
    }
}

/// Where a milestone came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    pub connector: String,
    pub file: String,
    pub sha256: String,
    /// `line 14` for CSV, `Sheet1!14` for Excel, `ISA13/GS06/ST02#seg` for X12.
    pub locator: String,
}

/// Whether a delta is a first sighting or a correction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Created,
    Updated,
}

/// Reconciliation counts of a file: read = emitted + unchanged + rejected + filtered.
///
/// The pipeline produces them per chunk, the store adds them up in the
/// file's ledger row, and logs, `status` and dry runs report them. Here,
/// at the bottom, because each of those layers reads them and none of them
/// owns the others (telemetry sits below every stage).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub read: u64,
    pub emitted: u64,
    pub unchanged: u64,
    pub rejected: u64,
    pub filtered: u64,
    /// Milestones forwarded (a record can produce several).
    pub deltas: u64,
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.read += o.read;
        self.emitted += o.emitted;
        self.unchanged += o.unchanged;
        self.rejected += o.rejected;
        self.filtered += o.filtered;
        self.deltas += o.deltas;
    }
    pub fn reconciles(&self) -> bool {
        self.read == self.emitted + self.unchanged + self.rejected + self.filtered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for code in MilestoneCode::ALL {
            assert_eq!(MilestoneCode::parse(code.as_str()), Some(*code));
        }
        assert_eq!(MilestoneCode::parse("pa.aproved"), None);
    }

    #[test]
    fn attributes_are_closed_but_x_prefix_is_open() {
        assert!(is_known_attribute("tracking_number"));
        assert!(is_known_attribute("x_hub_flag"));
        assert!(!is_known_attribute("tracking_nubmer"));
        assert!(!is_known_attribute("x_"));
        assert!(!is_known_attribute("x_Bad"));
    }
}
