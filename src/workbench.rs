//! The integration engineer's tools: a dry run of a real file against the
//! current state (`hubsync map`), and mapping tests (`hubsync test`).
//!
//! Both are built on `pipeline::dry_run`, the same producer the daemon runs,
//! so what the workbench shows is what the daemon would do. Neither writes:
//! the store is opened read-only, or not at all when there is none yet.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::diag::{parse_toml, Diagnostics, SourceFile};
use crate::map::{key_hash, Coverage};
use crate::model::{Content, Counts};
use crate::pipeline::{dry_run_with, DryRun, PipelineError};
use crate::setup::{Config, Connector};
use crate::store::{RejectRow, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum WorkbenchError {
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored state is corrupt: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Config(Diagnostics),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// A milestone compared with the stored state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    New,
    Changed,
    Unchanged,
}

#[derive(Debug, Clone, Serialize)]
pub struct FieldChange {
    pub field: String,
    pub old: serde_json::Value,
    pub new: serde_json::Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub status: Verdict,
    pub locator: String,
    pub milestone: Content,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<FieldChange>,
}

/// Value-map coverage of one map.
#[derive(Debug, Clone, Serialize)]
pub struct MapCoverage {
    /// The mapping the map belongs to (an Excel connector's sheets may each
    /// have their own).
    pub mapping: String,
    pub map: String,
    /// Entry → records that used it.
    pub used: BTreeMap<String, u64>,
    /// Entries no record used.
    pub unused: Vec<String>,
    /// Codes with no entry, masked by shape (`<3 letters>`: a shifted
    /// column can put a date of birth here) → records.
    pub unmapped: BTreeMap<String, u64>,
}

/// What `hubsync map` reports.
#[derive(Debug, Serialize)]
pub struct MapReport {
    pub file: String,
    pub compared_with_store: bool,
    pub entries: Vec<Entry>,
    pub rejects: Vec<RejectRow>,
    pub counts: Counts,
    pub failed: Option<String>,
    /// What the parser warned about (hidden sheets skipped, …).
    pub warnings: Vec<String>,
    pub coverage: Vec<MapCoverage>,
    /// What the file's deltas would do to journey timers.
    pub journeys: Vec<crate::timers::chunk::Effect>,
}

fn value_at<'a>(v: &'a serde_json::Value, field: &str) -> &'a serde_json::Value {
    field
        .split('.')
        .fold(v, |v, part| v.get(part).unwrap_or(&serde_json::Value::Null))
}

/// Dry-runs `path` through `connector` and compares each milestone with the
/// stored state. Writes nothing.
pub async fn map_file(
    config: &Config,
    connector: &Connector,
    path: &Path,
) -> Result<MapReport, WorkbenchError> {
    let coverage = Coverage::default();
    let dry = dry_run_with(config, connector, path, Some(&coverage))?;
    let store = Store::open_read_only(&config.store_url).await?;
    let mut stored: BTreeMap<(String, String, String, String), Content> = BTreeMap::new();
    if let Some(store) = &store {
        let mut hashes: Vec<u64> = dry
            .milestones
            .iter()
            .map(|(_, c)| key_hash(&c.program, &c.case_id, c.milestone.as_str(), &c.occurrence).0)
            .collect();
        hashes.sort_unstable();
        hashes.dedup();
        for row in store.state_rows(&hashes).await? {
            stored.insert(
                (row.program, row.case_id, row.milestone, row.occurrence),
                serde_json::from_str(&row.body)?,
            );
        }
    }
    let mut entries = Vec::with_capacity(dry.milestones.len());
    for (locator, content) in dry.milestones {
        let key = (
            content.program.clone(),
            content.case_id.clone(),
            content.milestone.as_str().to_string(),
            content.occurrence.clone(),
        );
        let (status, changes) = match stored.get(&key) {
            None => (Verdict::New, Vec::new()),
            Some(old) if *old == content => (Verdict::Unchanged, Vec::new()),
            Some(old) => {
                let (o, n) = (serde_json::to_value(old)?, serde_json::to_value(&content)?);
                let changes = content
                    .changed_fields(old)
                    .into_iter()
                    .map(|f| FieldChange {
                        old: value_at(&o, &f).clone(),
                        new: value_at(&n, &f).clone(),
                        field: f,
                    })
                    .collect();
                (Verdict::Changed, changes)
            }
        };
        entries.push(Entry {
            status,
            locator,
            milestone: content,
            changes,
        });
    }
    let deltas: Vec<&Content> = entries
        .iter()
        .filter(|e| e.status != Verdict::Unchanged)
        .map(|e| &e.milestone)
        .collect();
    let journeys = crate::timers::chunk::effects(config, connector, store.as_ref(), &deltas).await?;
    if let Some(store) = &store {
        store.close().await;
    }
    // Reconcile against the store: a record is emitted only if one of its
    // milestones is new or changed.
    let mut counts = dry.counts;
    let mut by_record: BTreeMap<&str, bool> = BTreeMap::new();
    for e in &entries {
        *by_record.entry(e.locator.as_str()).or_default() |= e.status != Verdict::Unchanged;
    }
    let emitted = by_record.values().filter(|v| **v).count() as u64;
    counts.unchanged += by_record.len() as u64 - emitted;
    counts.emitted = emitted;
    counts.deltas = entries.iter().filter(|e| e.status != Verdict::Unchanged).count() as u64;
    let used = coverage.used.into_inner();
    let unmapped = coverage.unmapped.into_inner();
    // Every mapping the connector applies: its own, and each sheet rule's.
    let mut mappings: Vec<&crate::map::Mapping> = vec![&connector.mapping];
    if let crate::setup::Format::Excel(rules) = &connector.format {
        for (_, m) in rules {
            if !mappings.iter().any(|x| x.name == m.name) {
                mappings.push(m);
            }
        }
    }
    let mut coverage = Vec::new();
    for mapping in mappings {
        for m in &mapping.maps {
            let of_this = |((g, n, _), _): &(&(String, String, String), &(u64, u64))| {
                *g == mapping.name && *n == m.name
            };
            let used: BTreeMap<String, u64> = used
                .iter()
                .filter(of_this)
                .map(|((_, _, k), (c, _))| (k.clone(), *c))
                .collect();
            let mut unused: Vec<String> = m
                .keys()
                .filter(|k| !used.contains_key(*k))
                .map(str::to_string)
                .collect();
            unused.sort();
            let mut masked: BTreeMap<String, u64> = BTreeMap::new();
            for ((_, _, k), (c, _)) in unmapped.iter().filter(of_this) {
                *masked.entry(crate::map::expr::redact(k)).or_default() += c;
            }
            coverage.push(MapCoverage {
                mapping: mapping.name.clone(),
                map: m.name.clone(),
                unused,
                unmapped: masked,
                used,
            });
        }
    }
    Ok(MapReport {
        file: path.display().to_string(),
        compared_with_store: store.is_some(),
        entries,
        rejects: dry.rejects,
        counts,
        failed: dry.failed,
        warnings: dry.warnings,
        coverage,
        journeys,
    })
}

impl MapReport {
    /// JSON lines: one per milestone, reject and map, then a summary.
    pub fn to_json_lines(&self) -> String {
        let mut out = String::new();
        let mut line = |v: serde_json::Value| {
            out.push_str(&v.to_string());
            out.push('\n');
        };
        for e in &self.entries {
            line(serde_json::json!({"kind": "milestone", "entry": e}));
        }
        for r in &self.rejects {
            line(serde_json::json!({"kind": "reject", "reject": r}));
        }
        for c in &self.coverage {
            line(serde_json::json!({"kind": "coverage", "coverage": c}));
        }
        for j in &self.journeys {
            line(serde_json::json!({"kind": "journey", "journey": j}));
        }
        line(serde_json::json!({"kind": "summary", "summary": self.summary()}));
        out
    }

    fn summary(&self) -> serde_json::Value {
        let count = |v: Verdict| self.entries.iter().filter(|e| e.status == v).count();
        serde_json::json!({
            "file": self.file,
            "compared_with_store": self.compared_with_store,
            "milestones": {"new": count(Verdict::New), "changed": count(Verdict::Changed), "unchanged": count(Verdict::Unchanged)},
            "records": self.counts,
            "file_refused": self.failed,
            "warnings": self.warnings,
        })
    }

    /// A compact table for terminals.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<10} {:<12} {:<14} {:<22} {:<6} {:<26} changes",
            "status", "locator", "case", "milestone", "occ", "occurred_at"
        );
        for e in &self.entries {
            let m = &e.milestone;
            let changes: Vec<String> = e
                .changes
                .iter()
                .map(|c| format!("{}: {} -> {}", c.field, c.old, c.new))
                .collect();
            let _ = writeln!(
                out,
                "{:<10} {:<12} {:<14} {:<22} {:<6} {:<26} {}",
                format!("{:?}", e.status).to_lowercase(),
                e.locator,
                m.case_id,
                m.milestone.as_str(),
                m.occurrence,
                m.occurred_at,
                changes.join("; ")
            );
        }
        section(&mut out, "REJECTED", &self.rejects, |r| {
            let column = r.column.as_deref().unwrap_or("-");
            format!("{:<12} {:<18} {}", r.locator, column, r.reason)
        });
        let title = "JOURNEY RULES (what this file would do to timers)";
        section(&mut out, title, &self.journeys, |j| {
            format!(
                "{:<8} {:<14} {:<32} {}",
                j.action.as_str(),
                j.case_id,
                j.rule,
                j.detail
            )
        });
        let _ = writeln!(out, "\nCOVERAGE");
        for c in &self.coverage {
            let used: Vec<String> = c.used.iter().map(|(k, n)| format!("{k}×{n}")).collect();
            let unmapped: Vec<String> = c.unmapped.iter().map(|(k, n)| format!("{k}×{n}")).collect();
            let _ = writeln!(
                out,
                "  map `{}` ({}): used {}; never used: {}",
                c.map,
                c.mapping,
                used.join(", "),
                if c.unused.is_empty() {
                    "-".to_string()
                } else {
                    c.unused.join(", ")
                }
            );
            if !unmapped.is_empty() {
                let _ = writeln!(out, "    unmapped codes: {}", unmapped.join(", "));
            }
        }
        let s = self.summary();
        let _ = writeln!(
            out,
            "\n{} new, {} changed, {} unchanged{}; records: {} read = {} emitted + {} unchanged + {} rejected + {} filtered",
            s["milestones"]["new"], s["milestones"]["changed"], s["milestones"]["unchanged"],
            if self.compared_with_store { "" } else { " (no store yet: everything is new)" },
            self.counts.read, self.counts.emitted, self.counts.unchanged, self.counts.rejected, self.counts.filtered
        );
        for w in &self.warnings {
            let _ = writeln!(out, "WARNING: {w}");
        }
        if let Some(f) = &self.failed {
            let _ = writeln!(
                out,
                "FILE WOULD BE REFUSED (nothing from it would be committed): {f}"
            );
        }
        out
    }
}

/// The canonical, diffable lines of a dry run: what mapping tests and golden
/// files compare.
pub fn golden_lines(dry: &DryRun) -> String {
    let mut out = String::new();
    for (locator, content) in &dry.milestones {
        out.push_str(&serde_json::json!({"locator": locator, "milestone": content}).to_string());
        out.push('\n');
    }
    for r in &dry.rejects {
        out.push_str(&serde_json::json!({"reject": r}).to_string());
        out.push('\n');
    }
    for w in &dry.warnings {
        out.push_str(&serde_json::json!({"warning": w}).to_string());
        out.push('\n');
    }
    if let Some(f) = &dry.failed {
        out.push_str(&serde_json::json!({"file_failed": f}).to_string());
        out.push('\n');
    }
    out
}

/// The key mapping tests pseudonymize with. Public on purpose.
pub const TEST_PSEUDONYM_KEY: &[u8] = b"hubsync mapping tests: not a secret";

/// A mapping test: an input fixture and its expected canonical output.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestSpec {
    connector: String,
    /// Paths relative to the test file.
    input: PathBuf,
    expected: PathBuf,
}

/// The result of one mapping test.
#[derive(Debug)]
pub struct TestResult {
    pub name: String,
    /// `None` when it passed; otherwise a readable diff.
    pub failure: Option<String>,
    /// The input was refused as a whole (expected or not), and why.
    pub refused: Option<String>,
}

/// Runs every `<mappings_dir>/tests/*.toml`. With `update`, rewrites the
/// expected files instead of comparing.
pub fn run_mapping_tests(config: &Config, update: bool) -> Result<Vec<TestResult>, WorkbenchError> {
    // Expected outputs must not depend on a deployment's secret: tests
    // pseudonymize with a fixed, public key.
    let mut config = config.clone();
    config.pseudonymizer = std::sync::Arc::new(crate::map::Pseudonymizer::new(TEST_PSEUDONYM_KEY));
    let config = &config;
    let dir = config.mappings_dir.join("tests");
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(rd) => rd
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    let mut results = Vec::new();
    for file in files {
        let src = SourceFile::read(&file).map_err(|d| WorkbenchError::Config(d.into()))?;
        let spec: TestSpec = parse_toml(&src).map_err(|d| WorkbenchError::Config(d.into()))?;
        let name = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let base = file.parent().unwrap_or(Path::new("."));
        let Some(connector) = config.connectors.iter().find(|c| c.name == spec.connector) else {
            results.push(TestResult {
                name,
                failure: Some(format!("no connector named `{}`", spec.connector)),
                refused: None,
            });
            continue;
        };
        let dry = crate::pipeline::dry_run(config, connector, &base.join(&spec.input))?;
        let actual = golden_lines(&dry);
        let expected_path = base.join(&spec.expected);
        if update {
            std::fs::write(&expected_path, &actual).map_err(|e| WorkbenchError::Io {
                path: expected_path.display().to_string(),
                source: e,
            })?;
            results.push(TestResult {
                name,
                failure: None,
                refused: dry.failed,
            });
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        let failure = (expected != actual).then(|| diff_lines(&expected, &actual));
        results.push(TestResult {
            name,
            failure,
            refused: dry.failed,
        });
    }
    Ok(results)
}

/// A readable diff of two golden outputs: per differing line, the locator
/// and each field that differs.
pub fn diff_lines(expected: &str, actual: &str) -> String {
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let mut out = String::new();
    let mut shown = 0;
    for i in 0..e.len().max(a.len()) {
        let (el, al) = (e.get(i).copied(), a.get(i).copied());
        if el == al {
            continue;
        }
        shown += 1;
        if shown > 20 {
            let _ = writeln!(out, "  … more differences");
            break;
        }
        match (el, al) {
            (Some(el), Some(al)) => {
                let (ev, av): (serde_json::Value, serde_json::Value) = (
                    serde_json::from_str(el).unwrap_or_default(),
                    serde_json::from_str(al).unwrap_or_default(),
                );
                let where_ = av
                    .get("locator")
                    .or_else(|| ev.get("locator"))
                    .cloned()
                    .unwrap_or_default();
                let _ = writeln!(out, "  output line {} ({where_}):", i + 1);
                let mut fields = Vec::new();
                json_diff("", &ev, &av, &mut fields);
                for (path, x, y) in fields {
                    let _ = writeln!(out, "    {path}: expected {x}, got {y}");
                }
            }
            (Some(el), None) => {
                let _ = writeln!(out, "  output line {}: missing: {el}", i + 1);
            }
            (None, Some(al)) => {
                let _ = writeln!(out, "  output line {}: unexpected: {al}", i + 1);
            }
            (None, None) => {}
        }
    }
    out
}

fn json_diff(
    path: &str,
    a: &serde_json::Value,
    b: &serde_json::Value,
    out: &mut Vec<(String, String, String)>,
) {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                json_diff(
                    &p,
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        _ if a != b => out.push((path.to_string(), a.to_string(), b.to_string())),
        _ => {}
    }
}

/// A titled block of the terminal table, one indented line per item; nothing
/// when there are no items.
fn section<T>(out: &mut String, title: &str, items: &[T], line: impl Fn(&T) -> String) {
    if items.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n{title}");
    for item in items {
        let _ = writeln!(out, "  {}", line(item));
    }
}
