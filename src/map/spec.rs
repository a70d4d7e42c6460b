//! The mapping file as written (TOML, with spans), before validation.
//!
//! Every string that holds an expression is `Spanned`, so a compile error
//! inside it can point at the exact character of the file.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MappingSpec {
    pub version: Spanned<u32>,
    #[serde(default)]
    pub description: Option<String>,
    /// How columns are addressed: `header` (CSV, Excel; the default), `x12`
    /// segment paths or `xml` element paths.
    #[serde(default)]
    pub syntax: Option<Spanned<Syntax>>,
    /// The X12 transaction set (ST01) an `x12` mapping reads, e.g. `"278"`:
    /// its paths are checked against that transaction's loop table.
    #[serde(default)]
    pub transaction: Option<Spanned<String>>,
    /// XML namespace prefixes used in `xml` paths: prefix → namespace URI.
    #[serde(default)]
    pub namespaces: BTreeMap<String, String>,
    pub columns: BTreeMap<Spanned<String>, ColumnSpec>,
    /// Headers the file is known to carry and the mapping deliberately does
    /// not read (names, dates of birth): not reported as header drift.
    #[serde(default)]
    pub ignored_headers: Vec<String>,
    #[serde(default)]
    pub maps: BTreeMap<Spanned<String>, MapSpec>,
    #[serde(default)]
    pub defaults: DefaultsSpec,
    #[serde(default)]
    pub milestones: Vec<MilestoneSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSpec {
    /// The header cell naming the column (CSV, Excel).
    pub header: Option<Spanned<String>>,
    /// Where the value sits in a structured record (`x12` and `xml` syntax):
    /// `NM1[01=IL]/NM109`, `Payer/@id`.
    pub path: Option<Spanned<String>>,
    #[serde(default)]
    pub aliases: Vec<Spanned<String>>,
    #[serde(default = "yes")]
    pub required: bool,
}

/// How a mapping's columns are addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Syntax {
    /// By header name (CSV, Excel).
    #[default]
    Header,
    /// By X12 path (`HCR01`, `NM1[01=IL]/NM109`, `UM04.1`, `EB03#*`).
    X12,
    /// By element path relative to the record element (`Status`, `Payer/@id`).
    Xml,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnUnmapped {
    /// The record is rejected and quarantined.
    #[default]
    Reject,
    /// The record is passed over and counted as filtered, with a warning.
    Skip,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapSpec {
    #[serde(default)]
    pub on_unmapped: OnUnmapped,
    #[serde(default)]
    pub ignore_case: bool,
    pub entries: BTreeMap<Spanned<String>, Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReasonSpec {
    pub system: Spanned<String>,
    pub code: Spanned<String>,
}

/// Fields shared by every milestone of the mapping; a milestone's own value wins.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DefaultsSpec {
    pub case_id: Option<Spanned<String>>,
    pub patient_id: Option<Spanned<String>>,
    pub status: Option<Spanned<String>>,
    pub sub_status: Option<Spanned<String>>,
    pub occurrence: Option<Spanned<String>>,
    pub occurred_at: Option<Spanned<String>>,
    pub reasons: Option<Vec<ReasonSpec>>,
    #[serde(default)]
    pub attributes: BTreeMap<Spanned<String>, Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MilestoneSpec {
    /// A label for coverage reports and diagnostics.
    pub name: Option<String>,
    pub when: Option<Spanned<String>>,
    pub code: Spanned<String>,
    pub case_id: Option<Spanned<String>>,
    pub patient_id: Option<Spanned<String>>,
    pub status: Option<Spanned<String>>,
    pub sub_status: Option<Spanned<String>>,
    pub occurrence: Option<Spanned<String>>,
    pub occurred_at: Option<Spanned<String>>,
    pub reasons: Option<Vec<ReasonSpec>>,
    #[serde(default)]
    pub attributes: BTreeMap<Spanned<String>, Spanned<String>>,
}
