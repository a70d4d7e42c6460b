//! Journey rules: the milestone that did **not** happen. A rule says "after
//! a trigger milestone, one of these must follow within this deadline,
//! unless one of those cancels it"; a case that misses the deadline becomes
//! a `journey.stalled` event, and `journey.resumed` follows when the awaited
//! milestone arrives late.
//!
//! This module owns the rules (loaded from `journeys/*.toml`, validated with
//! `file:line:col`), deadline arithmetic (calendar hours, business days with
//! holidays in the connector's zone), what a chunk arms and settles
//! ([`plan`]) and the timer types ([`timer`]). It sits below the store:
//! applying a plan in a commit, firing durable timers from the wall clock
//! and the views and statistics over them are `crate::timers`, above it.
//! Timers live in the store (`store::journey`): only the next deadline is
//! in memory. See `docs/journeys.md`.

pub mod calendar;
pub mod plan;
pub mod timer;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::config::diag::{parse_toml, Diagnostic, Diagnostics, SourceFile};
use crate::map::expr::{self, Compiled, Env, Scope, Stop, Ty};
use crate::model::{is_known_attribute, Content, MilestoneCode};

/// Process-wide counters for `/metrics` (timers are armed by pipelines and
/// fired by the clock; both are in this process).
pub static TIMERS_ARMED: AtomicU64 = AtomicU64::new(0);
pub static TIMERS_FIRED: AtomicU64 = AtomicU64::new(0);
pub static TIMERS_CLEARED: AtomicU64 = AtomicU64::new(0);
pub static TIMERS_CANCELLED: AtomicU64 = AtomicU64::new(0);
pub static TIMERS_RESUMED: AtomicU64 = AtomicU64::new(0);
/// Stalls recorded but not sent (older than the horizon when found).
pub static STALLS_SUPPRESSED: AtomicU64 = AtomicU64::new(0);

/// How urgent a stall is; carried in the event for receivers to route on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    #[default]
    Warning,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// What a deadline is measured from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Anchor {
    /// The trigger's `occurred_at` (a date-only value counts from the end of
    /// that day in the connector's zone): the patient's actual wait, whatever
    /// the hub's reporting lag. The default.
    #[default]
    OccurredAt,
    /// When hubsync first stored the trigger.
    LearnedAt,
}

impl Anchor {
    pub fn as_str(self) -> &'static str {
        match self {
            Anchor::OccurredAt => "occurred_at",
            Anchor::LearnedAt => "learned_at",
        }
    }
}

/// How long a rule waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// Elapsed time, whatever the calendar says (`72h`, `3s`, `2d`).
    Calendar(Duration),
    /// Business days: weekends and the program's holidays do not count; the
    /// deadline is the anchor's local time of day on the Nth business day.
    BusinessDays(u32),
}

/// The most business days a rule may wait (about two years): more is a typo.
const MAX_BUSINESS_DAYS: u32 = 500;
/// The longest calendar deadline (two years).
const MAX_CALENDAR: Duration = Duration::from_secs(2 * 366 * 86400);

/// Parses `72h`, `3s`, `2d` or `5 business days` (`1 business day`).
pub fn parse_deadline(s: &str) -> Result<Deadline, String> {
    let t = s.trim();
    if let Some(n) = t
        .strip_suffix("business days")
        .or_else(|| t.strip_suffix("business day"))
    {
        let n: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("`{t}`: the number of business days must be a whole number"))?;
        if n == 0 {
            return Err("a deadline of 0 business days fires at once; give at least 1".into());
        }
        if n > MAX_BUSINESS_DAYS {
            return Err(format!(
                "{n} business days is more than {MAX_BUSINESS_DAYS}; is it a typo?"
            ));
        }
        return Ok(Deadline::BusinessDays(n));
    }
    let d = crate::config::duration::parse_duration(t).map_err(|e| format!("{e}; or `N business days`"))?;
    if d.is_zero() {
        return Err("a deadline of 0 fires at once; give a positive duration".into());
    }
    if d > MAX_CALENDAR {
        return Err(format!("`{t}` is longer than two years; is it a typo?"));
    }
    Ok(Deadline::Calendar(d))
}

/// One journey rule, compiled.
#[derive(Debug)]
pub struct Rule {
    pub name: String,
    pub program: String,
    pub severity: Severity,
    /// The pattern as written (`pa.approved`, `pa.*`).
    pub trigger: String,
    /// Codes the pattern matches.
    pub triggers: Vec<MilestoneCode>,
    pub condition: Option<Condition>,
    pub awaits: Vec<MilestoneCode>,
    pub cancels: Vec<MilestoneCode>,
    pub deadline: Deadline,
    /// The deadline as written, for events and listings.
    pub deadline_text: String,
    pub from: Anchor,
}

impl Rule {
    pub fn is_trigger(&self, code: MilestoneCode) -> bool {
        self.triggers.contains(&code)
    }
}

/// The rules of one program.
#[derive(Debug)]
pub struct ProgramRules {
    pub program: String,
    pub holidays: BTreeSet<NaiveDate>,
    pub rules: Vec<Arc<Rule>>,
    /// Every code a rule of this program awaits or is cancelled by: what
    /// the arming check looks up in the state.
    pub blockers: Vec<MilestoneCode>,
}

impl ProgramRules {
    pub fn rule(&self, name: &str) -> Option<&Arc<Rule>> {
        self.rules.iter().find(|r| r.name == name)
    }
}

/// Every program's rules, and how stalls found late are treated.
#[derive(Debug, Default)]
pub struct Journeys {
    pub dir: PathBuf,
    pub programs: BTreeMap<String, ProgramRules>,
    /// A stall found more than this long after its deadline (a backfill, a
    /// daemon that was down) is recorded but not sent.
    pub horizon: Duration,
}

impl Journeys {
    pub fn program(&self, program: &str) -> Option<&ProgramRules> {
        self.programs.get(program)
    }
    pub fn is_empty(&self) -> bool {
        self.programs.values().all(|p| p.rules.is_empty())
    }
    pub fn rule_count(&self) -> usize {
        self.programs.values().map(|p| p.rules.len()).sum()
    }
}

// ------------------------------------------------------------------ conditions

/// What a condition may read: the trigger's case status, sub-status,
/// occurrence and attributes (the same closed attribute set mappings use).
const FIXED_FIELDS: &[&str] = &["status", "sub_status", "occurrence"];

struct CondScope {
    /// `x_…` attribute names, added as conditions name them.
    extra: RefCell<Vec<String>>,
}

impl Scope for CondScope {
    fn column(&self, name: &str) -> Option<usize> {
        if let Some(i) = FIXED_FIELDS.iter().position(|f| *f == name) {
            return Some(i);
        }
        if let Some(i) = crate::model::KNOWN_ATTRIBUTES.iter().position(|a| *a == name) {
            return Some(FIXED_FIELDS.len() + i);
        }
        if is_known_attribute(name) {
            let mut extra = self.extra.borrow_mut();
            let i = extra.iter().position(|e| e == name).unwrap_or_else(|| {
                extra.push(name.to_string());
                extra.len() - 1
            });
            return Some(FIXED_FIELDS.len() + crate::model::KNOWN_ATTRIBUTES.len() + i);
        }
        None
    }
    fn column_names(&self) -> Vec<String> {
        FIXED_FIELDS
            .iter()
            .chain(crate::model::KNOWN_ATTRIBUTES)
            .map(|s| s.to_string())
            .collect()
    }
    fn value_map(&self, _name: &str) -> Option<usize> {
        None
    }
}

/// A rule's `when`, compiled: a bool expression over the trigger milestone.
#[derive(Debug)]
pub struct Condition {
    expr: Compiled,
    /// Field name per slot (fixed fields, attributes, then `x_…` names).
    slots: Vec<String>,
}

struct CondEnv<'a> {
    values: &'a [Option<String>],
}

impl<'a> Env<'a> for CondEnv<'a> {
    fn field(&self, slot: usize) -> Result<Option<&'a str>, Stop> {
        Ok(self.values.get(slot).and_then(|v| v.as_deref()))
    }
    fn lookup(&self, _map: usize, _key: &str) -> Result<Option<&'a str>, Stop> {
        Ok(None)
    }
    fn localize(
        &self,
        _parsed: chrono::NaiveDateTime,
    ) -> Result<chrono::DateTime<chrono::FixedOffset>, String> {
        Err("a rule condition compares values; it does not place local times".into())
    }
}

impl Condition {
    /// Whether the trigger milestone `c` meets the condition. Evaluation
    /// errors (a bad date in an attribute) count as not met.
    pub fn holds(&self, c: &Content) -> bool {
        let values: Vec<Option<String>> = self
            .slots
            .iter()
            .map(|name| match name.as_str() {
                "status" => c.status.map(|s| s.as_str().to_string()),
                "sub_status" => c.sub_status.clone(),
                "occurrence" => Some(c.occurrence.clone()).filter(|o| !o.is_empty()),
                attr => c.attributes.get(attr).and_then(|v| match v {
                    serde_json::Value::String(s) => Some(s.clone()),
                    serde_json::Value::Null => None,
                    other => Some(other.to_string()),
                }),
            })
            .collect();
        let env = CondEnv { values: &values };
        expr::eval(&self.expr.expr, &env).is_ok_and(|v| expr::truthy(&v))
    }
}

// ------------------------------------------------------------------ loading

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JourneyFileSpec {
    /// The program these rules watch (a connector's `program`).
    program: Spanned<String>,
    /// Dates (`YYYY-MM-DD`) that are not business days.
    #[serde(default)]
    holidays: Vec<Spanned<String>>,
    #[serde(default, rename = "rule")]
    rules: Vec<RuleSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    name: Spanned<String>,
    #[serde(default)]
    severity: Severity,
    trigger: Spanned<String>,
    when: Option<Spanned<String>>,
    awaits: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    cancels: Vec<Spanned<String>>,
    deadline: Spanned<String>,
    #[serde(default)]
    from: Anchor,
}

/// A milestone code at `s`, or a diagnostic with a "did you mean".
fn code_at(
    src: &SourceFile,
    s: &Spanned<String>,
    what: &str,
    diags: &mut Diagnostics,
) -> Option<MilestoneCode> {
    match MilestoneCode::parse(s.get_ref()) {
        Some(c) => Some(c),
        None => {
            let known: Vec<String> = MilestoneCode::ALL
                .iter()
                .map(|c| c.as_str().to_string())
                .collect();
            let d = src.diag(
                s.span(),
                format!("unknown milestone code `{}` in {what}", s.get_ref()),
            );
            diags.push(match crate::text::closest(s.get_ref(), &known) {
                Some(c) => d.with_hint(format!("did you mean `{c}`? docs/milestones.md lists every code")),
                None => d.with_hint("docs/milestones.md lists every code"),
            });
            None
        }
    }
}

fn load_file(path: &Path, diags: &mut Diagnostics) -> Option<ProgramRules> {
    let src = match SourceFile::read(path) {
        Ok(s) => s,
        Err(d) => {
            diags.push(d);
            return None;
        }
    };
    let spec: JourneyFileSpec = match parse_toml(&src) {
        Ok(s) => s,
        Err(d) => {
            diags.push(d.with_hint("docs/journeys.md lists every key of a rule file"));
            return None;
        }
    };
    let before = diags.0.len();
    let program = spec.program.get_ref().trim().to_string();
    if program.is_empty() {
        diags.push(src.diag(spec.program.span(), "program cannot be empty"));
    }
    let mut holidays = BTreeSet::new();
    for h in &spec.holidays {
        match NaiveDate::parse_from_str(h.get_ref(), "%Y-%m-%d") {
            Ok(d) => {
                holidays.insert(d);
            }
            Err(_) => diags.push(src.diag(
                h.span(),
                format!("holiday `{}` is not a date (YYYY-MM-DD)", h.get_ref()),
            )),
        }
    }
    let mut rules = Vec::new();
    let mut names = BTreeSet::new();
    for r in &spec.rules {
        let name = r.name.get_ref().trim().to_string();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            diags.push(
                src.diag(r.name.span(), "a rule name is letters, digits, `-`, `_` or `.`")
                    .with_hint("it appears in events, metrics labels and URLs"),
            );
        }
        if !names.insert(name.clone()) {
            diags.push(src.diag(
                r.name.span(),
                format!("two rules are named `{name}` in this program"),
            ));
        }
        // The trigger: a code or a pattern over codes.
        let triggers: Vec<MilestoneCode> = match globset::Glob::new(r.trigger.get_ref()) {
            Ok(g) => {
                let m = g.compile_matcher();
                let t: Vec<MilestoneCode> = MilestoneCode::ALL
                    .iter()
                    .copied()
                    .filter(|c| m.is_match(c.as_str()))
                    .collect();
                if t.is_empty() {
                    let known: Vec<String> = MilestoneCode::ALL
                        .iter()
                        .map(|c| c.as_str().to_string())
                        .collect();
                    let d = src.diag(
                        r.trigger.span(),
                        format!("trigger `{}` matches no milestone code", r.trigger.get_ref()),
                    );
                    diags.push(match crate::text::closest(r.trigger.get_ref(), &known) {
                        Some(c) => d.with_hint(format!("did you mean `{c}`?")),
                        None => d.with_hint("a code (`pa.approved`) or a pattern (`pa.*`); docs/milestones.md lists every code"),
                    });
                }
                t
            }
            Err(e) => {
                diags.push(src.diag(r.trigger.span(), format!("bad trigger pattern: {e}")));
                Vec::new()
            }
        };
        let awaits: Vec<MilestoneCode> = r
            .awaits
            .get_ref()
            .iter()
            .filter_map(|s| code_at(&src, s, "awaits", diags))
            .collect();
        if r.awaits.get_ref().is_empty() {
            diags.push(src.diag(
                r.awaits.span(),
                "`awaits` is empty: name the milestone(s) that must follow",
            ));
        }
        let cancels: Vec<MilestoneCode> = r
            .cancels
            .iter()
            .filter_map(|s| code_at(&src, s, "cancels", diags))
            .collect();
        for s in r.awaits.get_ref() {
            if let Some(c) = MilestoneCode::parse(s.get_ref()) {
                if triggers.contains(&c) {
                    diags.push(src.diag(
                        s.span(),
                        format!(
                            "`{}` is both the trigger and awaited: the rule could never stall",
                            s.get_ref()
                        ),
                    ));
                }
                if cancels.contains(&c) {
                    diags.push(src.diag(
                        s.span(),
                        format!("`{}` is both awaited and cancelling", s.get_ref()),
                    ));
                }
            }
        }
        for s in &r.cancels {
            if MilestoneCode::parse(s.get_ref()).is_some_and(|c| triggers.contains(&c)) {
                diags.push(src.diag(
                    s.span(),
                    format!("`{}` both triggers and cancels the rule", s.get_ref()),
                ));
            }
        }
        let deadline = match parse_deadline(r.deadline.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                diags.push(
                    src.diag(r.deadline.span(), format!("impossible deadline: {e}"))
                        .with_hint("e.g. \"72h\", \"48h\", \"3s\" or \"5 business days\""),
                );
                None
            }
        };
        let condition = r.when.as_ref().and_then(|w| {
            let scope = CondScope {
                extra: RefCell::new(Vec::new()),
            };
            let base = crate::map::content_offset(&src, &w.span());
            match expr::compile(w.get_ref(), &scope) {
                Ok(c) if c.ty == Ty::Bool => {
                    let slots = FIXED_FIELDS
                        .iter()
                        .chain(crate::model::KNOWN_ATTRIBUTES)
                        .map(|s| s.to_string())
                        .chain(scope.extra.into_inner())
                        .collect();
                    Some(Condition { expr: c, slots })
                }
                Ok(c) => {
                    diags.push(src.diag(
                        w.span(),
                        format!("`when` must be a condition (bool), but this expression is {}", c.ty.name()),
                    ));
                    None
                }
                Err(e) => {
                    let mut message = format!("in when: {}", e.message);
                    if message.contains("unknown column") {
                        message = message.replace("unknown column", "unknown attribute");
                    }
                    let d = src.diag(base + e.span.start..base + e.span.end, message);
                    diags.push(match e.hint {
                        Some(h) => d.with_hint(
                            h.replace("columns are declared in [columns]", "conditions read the trigger's attributes")
                                .replace("declared columns:", "fields:"),
                        ),
                        None => d.with_hint(
                            "a condition reads $status, $sub_status, $occurrence and the trigger's attributes ($payer, $plan_type, …)",
                        ),
                    });
                    None
                }
            }
        });
        if let Some(deadline) = deadline {
            rules.push(Arc::new(Rule {
                name,
                program: program.clone(),
                severity: r.severity,
                trigger: r.trigger.get_ref().clone(),
                triggers,
                condition,
                awaits,
                cancels,
                deadline,
                deadline_text: r.deadline.get_ref().trim().to_string(),
                from: r.from,
            }));
        }
    }
    if diags.0.len() > before {
        return None;
    }
    let mut blockers: Vec<MilestoneCode> = rules
        .iter()
        .flat_map(|r| r.awaits.iter().chain(&r.cancels).copied())
        .collect();
    blockers.sort();
    blockers.dedup();
    Some(ProgramRules {
        program,
        holidays,
        rules,
        blockers,
    })
}

/// Loads every `*.toml` in `dir` (a missing folder has no rules). `programs`
/// are the programs connectors feed: a rule file for another program is a
/// typo that would never fire.
///
/// `programs` is `None` when the connectors did not load: a program would
/// then look unfed only because its connector has errors of its own.
pub fn load(dir: &Path, horizon: Duration, programs: Option<&[&str]>) -> Result<Journeys, Diagnostics> {
    let mut diags = Diagnostics::default();
    let mut out = Journeys {
        dir: dir.to_path_buf(),
        programs: BTreeMap::new(),
        horizon,
    };
    for file in crate::config::toml_files(dir) {
        let Some(p) = load_file(&file, &mut diags) else {
            continue;
        };
        if let Some(programs) = programs.filter(|ps| !ps.contains(&p.program.as_str())) {
            let d = Diagnostic::file_level(
                &file,
                format!(
                    "no connector feeds program `{}`: these rules would never arm",
                    p.program
                ),
            );
            diags.push(d.with_hint(format!("connectors feed: {}", programs.join(", "))));
            continue;
        }
        if out.programs.contains_key(&p.program) {
            diags.push(Diagnostic::file_level(
                &file,
                format!(
                    "program `{}` already has a rule file; keep one file per program",
                    p.program
                ),
            ));
            continue;
        }
        out.programs.insert(p.program.clone(), p);
    }
    if diags.is_empty() {
        Ok(out)
    } else {
        Err(diags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write rule file");
        p
    }

    const GOOD: &str = r#"program = "P"
holidays = ["2026-11-26"]

[[rule]]
name = "approved-not-shipped"
severity = "high"
trigger = "pa.approved"
when = "$plan_type == 'Commercial'"
awaits = ["dispense.shipped", "dispense.completed"]
cancels = ["case.cancelled"]
deadline = "5 business days"
"#;

    #[test]
    fn a_good_file_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "p.toml", GOOD);
        let j = load(dir.path(), Duration::from_secs(86400), Some(&["P"])).expect("loads");
        let p = j.program("P").expect("program");
        let r = &p.rules[0];
        assert_eq!(r.deadline, Deadline::BusinessDays(5));
        assert_eq!(r.from, Anchor::OccurredAt);
        assert_eq!(r.severity, Severity::High);
        assert_eq!(r.triggers, vec![MilestoneCode::PaApproved]);
        assert_eq!(p.holidays.len(), 1);
        assert_eq!(
            p.blockers,
            vec![
                MilestoneCode::DispenseCompleted,
                MilestoneCode::DispenseShipped,
                MilestoneCode::CaseCancelled
            ]
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
        );
        let mut c = Content {
            program: "P".into(),
            case_id: "C".into(),
            milestone: MilestoneCode::PaApproved,
            occurrence: String::new(),
            occurred_at: "2026-11-20".into(),
            occurred_precision: "date".into(),
            time_zone: "America/New_York".into(),
            patient_ref: None,
            status: None,
            sub_status: None,
            reasons: vec![],
            attributes: Default::default(),
        };
        let cond = r.condition.as_ref().expect("condition");
        assert!(!cond.holds(&c), "no plan type: not met");
        c.attributes.insert("plan_type".into(), "Commercial".into());
        assert!(cond.holds(&c));
        c.attributes.insert("plan_type".into(), "Medicare".into());
        assert!(!cond.holds(&c));
    }

    fn first_error(text: &str) -> Diagnostic {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "p.toml", text);
        load(dir.path(), Duration::ZERO, Some(&["P"]))
            .expect_err("must fail")
            .0
            .remove(0)
    }

    #[test]
    fn broken_rules_fail_with_their_position() {
        let d = first_error(&GOOD.replace("\"dispense.completed\"", "\"dispense.complete\""));
        assert_eq!((d.line, d.col), (9, 31), "{d}");
        assert!(
            d.message.contains("unknown milestone code `dispense.complete`"),
            "{d}"
        );
        assert!(d.to_string().contains("did you mean `dispense.completed`"), "{d}");

        let d = first_error(&GOOD.replace("$plan_type", "$plan_typ"));
        assert_eq!(d.line, 8, "{d}");
        assert_eq!(d.col, 9, "{d}");
        assert!(d.message.contains("unknown attribute"), "{d}");

        let d = first_error(&GOOD.replace("5 business days", "0 business days"));
        assert_eq!(d.line, 11, "{d}");
        assert!(d.message.contains("impossible deadline"), "{d}");

        let d = first_error(&GOOD.replace("deadline = \"5 business days\"", "deadline = \"5 fortnights\""));
        assert!(d.message.contains("impossible deadline"), "{d}");

        let d = first_error(&GOOD.replace("severity = \"high\"", "severity = \"urgent\""));
        assert_eq!(d.line, 6, "{d}");

        let d = first_error(&GOOD.replace("trigger = \"pa.approved\"", "trigger = \"pa.aproved\""));
        assert_eq!(d.line, 7, "{d}");
        assert!(d.to_string().contains("did you mean `pa.approved`"), "{d}");

        let d = first_error(&GOOD.replace("cancels", "cancelz"));
        assert!(d.message.contains("unknown field"), "{d}");

        let d = first_error(&GOOD.replace("\"dispense.shipped\", ", "\"pa.approved\", "));
        assert!(d.message.contains("both the trigger and awaited"), "{d}");
    }

    #[test]
    fn a_file_for_an_unfed_program_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "p.toml", GOOD);
        let e = load(dir.path(), Duration::ZERO, Some(&["Q"])).expect_err("unfed program");
        assert!(e.0[0].message.contains("no connector feeds program `P`"), "{e}");
    }

    #[test]
    fn deadlines_parse() {
        assert_eq!(
            parse_deadline("72h"),
            Ok(Deadline::Calendar(Duration::from_secs(72 * 3600)))
        );
        assert_eq!(
            parse_deadline("3s"),
            Ok(Deadline::Calendar(Duration::from_secs(3)))
        );
        assert_eq!(parse_deadline("1 business day"), Ok(Deadline::BusinessDays(1)));
        assert!(parse_deadline("0s").is_err());
        assert!(parse_deadline("-3h").is_err());
        assert!(parse_deadline("5000 business days").is_err());
        assert!(parse_deadline("3y").is_err());
    }
}
