//! Declarative mappings: a hub's record becomes zero or more canonical
//! milestones.
//!
//! A mapping file is compiled once, at load, into a [`Mapping`]: every column
//! reference resolved, every expression type-checked, every value-map target
//! checked against the taxonomy. Per file, the mapping is bound to the actual
//! header ([`Mapping::bind`]); per record, each rule is walked twice at most:
//! once into a [`HashSink`] (no allocation: the fingerprint the diff stage
//! compares) and, only for records that changed, once more into a
//! [`ContentSink`] that builds the owned [`Content`].

pub mod expr;
pub mod spec;

use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::ops::Range;
use std::path::{Path, PathBuf};

use chrono::{DateTime, FixedOffset, LocalResult, NaiveDateTime, Offset, TimeZone};
use chrono_tz::Tz;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use toml::Spanned;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::config::connector::{DstAmbiguous, DstGap};
use crate::config::diag::{parse_toml, Diagnostic, Diagnostics, SourceFile};
use crate::model::{is_known_attribute, CaseStatus, Content, MilestoneCode, Occurred, Reason};
use crate::parse::Fields;
use crate::text::{closest, normalize_header};
use expr::{Compiled, Env, Expr, Scope, Stop, Ty, Val};
pub use spec::Syntax;
use spec::{MappingSpec, OnUnmapped};

/// A declared column: the contract between a mapping and a hub's header
/// (or, for structured formats, the place of a value in a record).
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    /// Empty for path-addressed columns.
    pub header: String,
    pub aliases: Vec<String>,
    pub required: bool,
    pub path: Option<FieldPath>,
}

/// Where a path-addressed column's value sits in a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldPath {
    X12(crate::parse::x12::X12Path),
    Xml(crate::parse::xml::XmlPath),
}

/// A value map (hub code → canonical value) with its unmapped policy.
#[derive(Debug, Clone)]
pub struct ValueMap {
    pub name: String,
    pub on_unmapped: OnUnmapped,
    pub ignore_case: bool,
    /// Keyed by the hub code (upper-cased when `ignore_case`).
    entries: HashMap<String, String, BuildHasherDefault<CodeHasher>>,
}

/// Hashes value-map keys: one short string looked up per map use per record,
/// where SipHash cost more than the rest of the lookup. Unkeyed on purpose:
/// the map is fixed when the mapping loads and a file's codes are only looked
/// up, never inserted, so crafted codes cannot lengthen any probe sequence.
#[derive(Default)]
struct CodeHasher(u64);

impl std::hash::Hasher for CodeHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxh3_64_with_seed(bytes, self.0);
    }
    /// `str`'s terminator byte: mixed in without another xxh3 call.
    fn write_u8(&mut self, b: u8) {
        self.0 = self.0.rotate_left(8) ^ u64::from(b);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

impl ValueMap {
    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.entries.values().map(String::as_str)
    }

    /// The entry key `key` matches (upper-cased under `ignore_case`).
    pub fn canonical_key(&self, key: &str) -> String {
        if self.ignore_case {
            key.to_uppercase()
        } else {
            key.to_string()
        }
    }

    /// Entry keys, as stored.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    fn get(&self, key: &str) -> Option<&str> {
        // Hub codes are mostly upper-case ASCII already: then the key is its
        // own canonical form.
        if !self.ignore_case || key.bytes().all(|b| b.is_ascii() && !b.is_ascii_lowercase()) {
            return self.entries.get(key).map(String::as_str);
        }
        // Upper-case into a stack buffer: this runs for every record.
        let mut buf = [0u8; 64];
        if key.is_ascii() && key.len() <= buf.len() {
            let b = &mut buf[..key.len()];
            b.copy_from_slice(key.as_bytes());
            b.make_ascii_uppercase();
            let k = std::str::from_utf8(b).expect("ASCII upper-casing keeps UTF-8 valid");
            return self.entries.get(k).map(String::as_str);
        }
        self.entries.get(&key.to_uppercase()).map(String::as_str)
    }
}

/// Where a milestone's code comes from.
#[derive(Debug, Clone)]
pub enum CodeSource {
    Fixed(MilestoneCode),
    Dynamic(Compiled),
}

/// One `[[milestones]]` rule, with the mapping's defaults merged in.
#[derive(Debug, Clone)]
pub struct Rule {
    pub label: String,
    pub when: Option<Compiled>,
    pub code: CodeSource,
    pub case_id: Compiled,
    pub patient_id: Option<Compiled>,
    pub status: Option<Compiled>,
    pub sub_status: Option<Compiled>,
    pub occurrence: Option<Compiled>,
    pub occurred_at: Compiled,
    pub reasons: Vec<(String, Compiled)>,
    pub attributes: Vec<(String, Compiled)>,
}

/// A compiled mapping file.
#[derive(Debug, Clone)]
pub struct Mapping {
    pub name: String,
    pub path: PathBuf,
    pub syntax: Syntax,
    /// The X12 transaction set an `x12` mapping reads (ST01), when declared.
    pub transaction: Option<String>,
    /// XML namespace prefixes (prefix → URI), for `xml` syntax.
    pub namespaces: Vec<(String, String)>,
    pub columns: Vec<Column>,
    /// Normalized headers the mapping knowingly leaves unread.
    pub ignored_headers: Vec<String>,
    pub maps: Vec<ValueMap>,
    pub rules: Vec<Rule>,
}

struct LoadScope<'a> {
    columns: &'a [Column],
    maps: &'a [ValueMap],
}

impl Scope for LoadScope<'_> {
    fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
    fn column_names(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.name.clone()).collect()
    }
    fn value_map(&self, name: &str) -> Option<usize> {
        self.maps.iter().position(|m| m.name == name)
    }
}

/// Offset of an expression's first character inside the TOML string token at
/// `span` (past the opening quote or triple quote).
pub(crate) fn content_offset(src: &SourceFile, span: &Range<usize>) -> usize {
    let token = src.text.get(span.start..).unwrap_or("");
    if token.starts_with("\"\"\"") || token.starts_with("'''") {
        let after = span.start + 3;
        // A newline right after the opening delimiter is trimmed by TOML.
        match src.text.get(after..after + 1) {
            Some("\n") => after + 1,
            _ => after,
        }
    } else {
        span.start + 1
    }
}

/// The span of a literal's text inside an expression string, for a caret
/// under `pa.aproved` rather than under the quotes around it.
fn literal_span(src: &SourceFile, s: &Spanned<String>, lit: &str) -> Range<usize> {
    let base = content_offset(src, &s.span());
    match s.get_ref().find(lit) {
        Some(i) => base + i..base + i + lit.len(),
        None => base..base + s.get_ref().len(),
    }
}

impl Mapping {
    /// Loads and checks a mapping file; every problem becomes a diagnostic.
    pub fn load(path: &Path) -> Result<Mapping, Diagnostics> {
        let src = SourceFile::read(path)?;
        let spec: MappingSpec = parse_toml(&src)?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        compile_mapping(&src, name, spec)
    }
}

/// Hints under a bad column `path`, one example of each form.
const X12_PATHS: &str = "X12 paths: HCR01, NM1[01=IL]/NM109, UM04.1, EB[01=1]/EB03#*, 2100A/NM1[01=PR]/NM103";
const XML_PATHS: &str =
    "XML paths are relative to the record element: Status, Payer/Name, @id, ns:Plan/@code";

/// A column's parsed `path`, or a diagnostic with its caret under the bad
/// part (the path parsers' spans are inside the TOML string).
fn checked_path(
    src: &SourceFile,
    p: &Spanned<String>,
    parsed: Result<FieldPath, (Range<usize>, String)>,
    hint: &'static str,
    diags: &mut Diagnostics,
) -> Option<FieldPath> {
    match parsed {
        Ok(path) => Some(path),
        Err((span, msg)) => {
            let base = content_offset(src, &p.span());
            diags.push(src.diag(base + span.start..base + span.end, msg).with_hint(hint));
            None
        }
    }
}

fn compile_mapping(src: &SourceFile, name: String, spec: MappingSpec) -> Result<Mapping, Diagnostics> {
    let mut diags = Diagnostics::default();
    if *spec.version.get_ref() != 1 {
        diags.push(
            src.diag(
                spec.version.span(),
                format!("unsupported mapping version {}", spec.version.get_ref()),
            )
            .with_hint("this hubsync reads mapping version 1"),
        );
    }

    // Columns: names and headers, with collisions caught now rather than as a
    // silently wrong column at run time.
    let syntax = spec.syntax.as_ref().map_or(Syntax::Header, |s| *s.get_ref());
    let namespaces: Vec<(String, String)> = spec
        .namespaces
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let transaction = match &spec.transaction {
        None => None,
        Some(t) if syntax != Syntax::X12 => {
            diags.push(src.diag(t.span(), "`transaction` applies to `x12` mappings only"));
            None
        }
        Some(t) => match crate::parse::x12::guides::transaction(t.get_ref().as_bytes()) {
            Some(table) => Some(table),
            None => {
                let known: Vec<&str> = crate::parse::x12::guides::TRANSACTIONS
                    .iter()
                    .map(|t| t.id)
                    .collect();
                diags.push(
                    src.diag(
                        t.span(),
                        format!("no loop table for transaction set `{}`", t.get_ref()),
                    )
                    .with_hint(format!("known: {}", known.join(", "))),
                );
                None
            }
        },
    };
    let mut columns = Vec::new();
    let mut seen_headers: HashMap<String, String> = HashMap::new();
    for (key, col) in &spec.columns {
        let path = match (syntax, &col.header, &col.path) {
            (Syntax::Header, Some(_), None) => None,
            (Syntax::Header, _, Some(p)) => {
                diags.push(
                    src.diag(p.span(), "`path` needs a structured syntax").with_hint(
                        "set syntax = \"x12\" or \"xml\" at the top of the mapping, or use `header`",
                    ),
                );
                continue;
            }
            (Syntax::Header, None, None) => {
                diags.push(src.diag(key.span(), format!("column `{}` has no `header`", key.get_ref())));
                continue;
            }
            (_, Some(h), _) => {
                diags.push(
                    src.diag(h.span(), "this mapping addresses columns by `path`, not `header`")
                        .with_hint("structured records (X12, XML) have no header row"),
                );
                continue;
            }
            (_, None, None) => {
                diags.push(src.diag(key.span(), format!("column `{}` has no `path`", key.get_ref())));
                continue;
            }
            (Syntax::X12, None, Some(p)) => {
                let parsed = crate::parse::x12::parse_path_in(p.get_ref(), transaction).map(FieldPath::X12);
                let Some(path) = checked_path(src, p, parsed, X12_PATHS, &mut diags) else {
                    continue;
                };
                Some(path)
            }
            (Syntax::Xml, None, Some(p)) => {
                let parsed = crate::parse::xml::parse_path(p.get_ref(), &namespaces).map(FieldPath::Xml);
                let Some(path) = checked_path(src, p, parsed, XML_PATHS, &mut diags) else {
                    continue;
                };
                Some(path)
            }
        };
        if path.is_some() {
            columns.push(Column {
                name: key.get_ref().clone(),
                header: String::new(),
                aliases: Vec::new(),
                required: col.required,
                path,
            });
            continue;
        }
        let Some(header) = &col.header else {
            continue;
        };
        let mut aliases = Vec::new();
        for h in std::iter::once(header).chain(col.aliases.iter()) {
            let norm = normalize_header(h.get_ref());
            if norm.is_empty() {
                diags.push(src.diag(h.span(), "a header name cannot be empty"));
                continue;
            }
            if let Some(other) = seen_headers.insert(norm, key.get_ref().clone()) {
                diags.push(src.diag(
                    h.span(),
                    format!("header `{}` is also claimed by column `{other}`", h.get_ref()),
                ));
            }
            aliases.push(h.get_ref().clone());
        }
        columns.push(Column {
            name: key.get_ref().clone(),
            header: header.get_ref().clone(),
            aliases: aliases.into_iter().skip(1).collect(),
            required: col.required,
            path: None,
        });
    }

    let mut maps = Vec::new();
    for (key, m) in &spec.maps {
        let mut entries = HashMap::default();
        for (k, v) in &m.entries {
            let raw = k.get_ref();
            if raw.trim() != raw || raw.is_empty() {
                diags.push(
                    src.diag(k.span(), format!("value-map entry `{raw}` can never be reached"))
                        .with_hint("column values are trimmed before lookup; remove the surrounding spaces"),
                );
                continue;
            }
            let stored = if m.ignore_case {
                raw.to_uppercase()
            } else {
                raw.clone()
            };
            if entries.insert(stored, v.get_ref().clone()).is_some() {
                diags.push(
                    src.diag(k.span(), format!("value-map entry `{raw}` can never be reached: another entry matches the same codes"))
                        .with_hint("with ignore_case = true, entries differing only in case collide"),
                );
            }
        }
        if m.entries.is_empty() {
            diags.push(src.diag(
                key.span(),
                format!("value map `{}` has no entries", key.get_ref()),
            ));
        }
        maps.push(ValueMap {
            name: key.get_ref().clone(),
            on_unmapped: m.on_unmapped,
            ignore_case: m.ignore_case,
            entries,
        });
    }

    let scope = LoadScope {
        columns: &columns,
        maps: &maps,
    };
    let compile =
        |diags: &mut Diagnostics, s: &Spanned<String>, want: &[Ty], what: &str| -> Option<Compiled> {
            let base = content_offset(src, &s.span());
            match expr::compile(s.get_ref(), &scope) {
                Ok(c) if want.contains(&c.ty) => Some(c),
                Ok(c) => {
                    let wanted: Vec<&str> = want.iter().map(|t| t.name()).collect();
                    diags.push(src.diag(
                        s.span(),
                        format!(
                            "{what} must be {}, but this expression is {}",
                            wanted.join(" or "),
                            c.ty.name()
                        ),
                    ));
                    None
                }
                Err(e) => {
                    let d = src.diag(
                        base + e.span.start..base + e.span.end,
                        format!("in {what}: {}", e.message),
                    );
                    diags.push(match e.hint {
                        Some(h) => d.with_hint(h),
                        None => d,
                    });
                    None
                }
            }
        };

    // Checks that a code or status expression can only yield valid values.
    let mut target_checks: Vec<(usize, &'static str)> = Vec::new();
    let mut rules = Vec::new();
    if spec.milestones.is_empty() {
        diags.push(Diagnostic::file_level(
            &src.path,
            "the mapping has no [[milestones]]",
        ));
    }
    let d = &spec.defaults;
    for (i, m) in spec.milestones.iter().enumerate() {
        let label = m.name.clone().unwrap_or_else(|| format!("milestones[{i}]"));
        let when = m
            .when
            .as_ref()
            .and_then(|w| compile(&mut diags, w, &[Ty::Bool], "`when`"));
        let code = match compile(&mut diags, &m.code, &[Ty::Text], "`code`") {
            Some(c) => match c.as_literal() {
                Some(lit) => match MilestoneCode::parse(lit) {
                    Some(code) => Some(CodeSource::Fixed(code)),
                    None => {
                        let known: Vec<String> = MilestoneCode::ALL
                            .iter()
                            .map(|c| c.as_str().to_string())
                            .collect();
                        let mut diag = src.diag(
                            literal_span(src, &m.code, lit),
                            format!("unknown milestone code `{lit}`"),
                        );
                        if let Some(c) = closest(lit, &known) {
                            diag = diag.with_hint(format!(
                                "did you mean `{c}`? codes are listed in docs/milestones.md"
                            ));
                        }
                        diags.push(diag);
                        None
                    }
                },
                None => {
                    if let Some(map) = c.as_map() {
                        target_checks.push((map, "code"));
                    }
                    Some(CodeSource::Dynamic(c))
                }
            },
            None => None,
        };
        let pick = |own: &Option<Spanned<String>>, def: &Option<Spanned<String>>| {
            own.clone().or_else(|| def.clone())
        };
        let case_id = match pick(&m.case_id, &d.case_id) {
            Some(s) => compile(&mut diags, &s, &[Ty::Text], "`case_id`"),
            None => {
                diags.push(
                    src.diag(m.code.span(), format!("milestone `{label}` has no case_id"))
                        .with_hint("set case_id in [defaults] or in the milestone"),
                );
                None
            }
        };
        let occurred_at = match pick(&m.occurred_at, &d.occurred_at) {
            Some(s) => compile(&mut diags, &s, &[Ty::Date, Ty::DateTime], "`occurred_at`"),
            None => {
                diags.push(
                    src.diag(m.code.span(), format!("milestone `{label}` has no occurred_at"))
                        .with_hint("use date($column, 'format') or datetime(...)"),
                );
                None
            }
        };
        let patient_id = pick(&m.patient_id, &d.patient_id)
            .and_then(|s| compile(&mut diags, &s, &[Ty::Text], "`patient_id`"));
        let status = pick(&m.status, &d.status).and_then(|s| {
            let c = compile(&mut diags, &s, &[Ty::Text], "`status`")?;
            if let Some(lit) = c.as_literal() {
                if CaseStatus::parse(lit).is_none() {
                    diags.push(
                        src.diag(literal_span(src, &s, lit), format!("unknown case status `{lit}`"))
                            .with_hint("one of PENDING, ACTIVE, ON_HOLD, CANCELLED, DISCONTINUED, CLOSED"),
                    );
                }
            } else if let Some(map) = c.as_map() {
                target_checks.push((map, "status"));
            }
            Some(c)
        });
        let sub_status = pick(&m.sub_status, &d.sub_status)
            .and_then(|s| compile(&mut diags, &s, &[Ty::Text], "`sub_status`"));
        let occurrence = pick(&m.occurrence, &d.occurrence)
            .and_then(|s| compile(&mut diags, &s, &[Ty::Text, Ty::Int], "`occurrence`"));
        let mut reasons = Vec::new();
        for r in m.reasons.as_ref().or(d.reasons.as_ref()).into_iter().flatten() {
            if r.system.get_ref().trim().is_empty() {
                diags.push(src.diag(
                    r.system.span(),
                    "a reason needs its code system, e.g. `x12:886` or `source:acme-hub:status`",
                ));
            }
            if let Some(c) = compile(&mut diags, &r.code, &[Ty::Text], "a reason code") {
                reasons.push((r.system.get_ref().clone(), c));
            }
        }
        let mut attributes = Vec::new();
        let mut attr_specs: Vec<(&Spanned<String>, &Spanned<String>)> = d.attributes.iter().collect();
        for (k, v) in &m.attributes {
            attr_specs.retain(|(dk, _)| dk.get_ref() != k.get_ref());
            attr_specs.push((k, v));
        }
        for (k, v) in attr_specs {
            if !is_known_attribute(k.get_ref()) {
                let known: Vec<String> = crate::model::KNOWN_ATTRIBUTES
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                let mut diag = src.diag(k.span(), format!("unknown attribute `{}`", k.get_ref()));
                diag = diag.with_hint(match closest(k.get_ref(), &known) {
                    Some(c) => format!("did you mean `{c}`? partner-specific attributes start with `x_`"),
                    None => "see docs/mapping.md for attribute names; partner-specific ones start with `x_`"
                        .to_string(),
                });
                diags.push(diag);
                continue;
            }
            if let Some(c) = compile(
                &mut diags,
                v,
                &[Ty::Text, Ty::Int, Ty::Bool, Ty::Date, Ty::DateTime],
                "an attribute",
            ) {
                attributes.push((k.get_ref().clone(), c));
            }
        }
        if let (Some(code), Some(case_id), Some(occurred_at)) = (code, case_id, occurred_at) {
            rules.push(Rule {
                label,
                when,
                code,
                case_id,
                patient_id,
                status,
                sub_status,
                occurrence,
                occurred_at,
                reasons,
                attributes,
            });
        }
    }

    // A value map whose output is used as a milestone code or a status must
    // only produce valid ones: checked here, once, instead of per record.
    target_checks.sort();
    target_checks.dedup();
    for (map_idx, kind) in target_checks {
        let (key, m) = spec
            .maps
            .iter()
            .nth(map_idx)
            .expect("map index came from this spec's maps");
        for (k, v) in &m.entries {
            let ok = match kind {
                "code" => MilestoneCode::parse(v.get_ref()).is_some(),
                _ => CaseStatus::parse(v.get_ref()).is_some(),
            };
            if !ok {
                let base = content_offset(src, &v.span());
                let what = if kind == "code" {
                    "milestone code"
                } else {
                    "case status"
                };
                diags.push(src.diag(
                    base..base + v.get_ref().len(),
                    format!(
                        "unknown {what} `{}` (entry `{}` of map `{}`)",
                        v.get_ref(),
                        k.get_ref(),
                        key.get_ref()
                    ),
                ));
            }
        }
    }

    if diags.is_empty() {
        Ok(Mapping {
            name,
            path: src.path.clone(),
            syntax,
            transaction: transaction.map(|t| t.id.to_string()),
            namespaces,
            ignored_headers: spec.ignored_headers.iter().map(|h| normalize_header(h)).collect(),
            columns,
            maps,
            rules,
        })
    } else {
        Err(diags)
    }
}

/// A header that breaks the mapping's contract: the whole file is quarantined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("required column `{column}` (header `{header}`) is missing from the file's header")]
    Missing { column: String, header: String },
    #[error("header `{header}` appears twice (positions {first} and {second})")]
    Duplicate {
        header: String,
        first: usize,
        second: usize,
    },
}

/// A mapping bound to one file's header: declared column → physical index.
#[derive(Debug, Clone)]
pub struct Binding {
    pub slots: Vec<Option<usize>>,
    /// Non-empty headers in the file that no declared column claims.
    pub extras: Vec<String>,
}

impl Binding {
    /// Column `i` is field `i`: records projected in the mapping's column
    /// order (X12, XML).
    pub fn identity(columns: usize) -> Binding {
        Binding {
            slots: (0..columns).map(Some).collect(),
            extras: Vec::new(),
        }
    }
}

impl Mapping {
    /// Resolves declared columns against a file's header. Unknown extra
    /// columns are ignored; a missing required one stops the file.
    pub fn bind(&self, header: &[String]) -> Result<Binding, HeaderError> {
        let norm: Vec<String> = header.iter().map(|h| normalize_header(h)).collect();
        for (i, h) in norm.iter().enumerate() {
            if h.is_empty() {
                continue;
            }
            if let Some(j) = norm[..i].iter().position(|o| o == h) {
                if self.columns.iter().any(|c| {
                    std::iter::once(&c.header)
                        .chain(&c.aliases)
                        .any(|a| normalize_header(a) == *h)
                }) {
                    return Err(HeaderError::Duplicate {
                        header: header[i].trim().to_string(),
                        first: j + 1,
                        second: i + 1,
                    });
                }
            }
        }
        let mut slots = Vec::with_capacity(self.columns.len());
        for c in &self.columns {
            let idx = std::iter::once(&c.header).chain(&c.aliases).find_map(|name| {
                let n = normalize_header(name);
                norm.iter().position(|h| *h == n)
            });
            if idx.is_none() && c.required {
                return Err(HeaderError::Missing {
                    column: c.name.clone(),
                    header: c.header.clone(),
                });
            }
            slots.push(idx);
        }
        let extras = header
            .iter()
            .enumerate()
            .filter(|(i, h)| {
                !h.trim().is_empty()
                    && !slots.contains(&Some(*i))
                    && !self.ignored_headers.contains(&norm[*i])
            })
            .map(|(_, h)| h.trim().to_string())
            .collect();
        Ok(Binding { slots, extras })
    }
}

/// Time handling of one connector.
#[derive(Debug, Clone, Copy)]
pub struct TimePolicy {
    pub tz: Tz,
    pub ambiguous: DstAmbiguous,
    pub gap: DstGap,
}

impl TimePolicy {
    /// Turns a local wall-clock time into an instant, applying the DST policy.
    pub fn localize(&self, t: NaiveDateTime) -> Result<DateTime<FixedOffset>, String> {
        match self.tz.from_local_datetime(&t) {
            LocalResult::Single(t) => Ok(t.fixed_offset()),
            LocalResult::Ambiguous(a, b) => match self.ambiguous {
                DstAmbiguous::Earlier => Ok(a.fixed_offset()),
                DstAmbiguous::Later => Ok(b.fixed_offset()),
                DstAmbiguous::Reject => Err(format!(
                    "local time is ambiguous in {} (it happens twice at the DST change)",
                    self.tz.name()
                )),
            },
            LocalResult::None => match self.gap {
                DstGap::ShiftForward => {
                    // Read the wall time with the offset in force just before
                    // the gap, so 02:30 in a one-hour spring gap is 03:30, as a
                    // clock that was not moved forward would have said.
                    let before = self
                        .tz
                        .from_local_datetime(&(t - chrono::Duration::hours(6)))
                        .earliest()
                        .ok_or_else(|| format!("local time does not exist in {}", self.tz.name()))?;
                    let utc =
                        t - chrono::Duration::seconds(i64::from(before.offset().fix().local_minus_utc()));
                    Ok(self.tz.from_utc_datetime(&utc).fixed_offset())
                }
                DstGap::Reject => Err(format!(
                    "local time does not exist in {} (it falls in the DST gap)",
                    self.tz.name()
                )),
            },
        }
    }
}

/// A keyed pseudonymizer for patient identifiers (HMAC-SHA256).
#[derive(Clone)]
pub struct Pseudonymizer {
    mac: Hmac<Sha256>,
    /// Unique per key loaded in this process (clones share it): lets a memo
    /// of pseudonyms tell keys apart without holding or comparing them.
    id: u64,
}

impl std::fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymizer(<key>)")
    }
}

impl Pseudonymizer {
    pub fn new(key: &[u8]) -> Pseudonymizer {
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Pseudonymizer {
            mac: Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length"),
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// 16 bytes of HMAC(key, program NUL patient id): scoped by program so one
    /// patient in two programs cannot be linked across them.
    pub fn raw(&self, program: &str, patient_id: &str) -> [u8; 16] {
        let mut mac = self.mac.clone();
        mac.update(program.as_bytes());
        mac.update(&[0]);
        mac.update(patient_id.as_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }

    /// The wire form: `pt_` + 32 hex digits.
    pub fn reference(&self, program: &str, patient_id: &str) -> String {
        format!("pt_{}", hex::encode(self.raw(program, patient_id)))
    }
}

/// Everything a record needs to be evaluated: the mapping, its binding to the
/// file's header, the program and the connector's time policy.
pub struct Bound<'m> {
    pub mapping: &'m Mapping,
    pub binding: Binding,
    pub program: &'m str,
    pub time: TimePolicy,
    pub pseudonymizer: &'m Pseudonymizer,
    /// Seeds the content hash, so that stored hashes are keyed too.
    pub content_seed: u64,
    /// Value-map usage, collected by dry runs only.
    pub coverage: Option<&'m Coverage>,
}

/// (mapping name, map name, hub code) → (records, the last record counted).
pub type CoverageCounts = std::collections::BTreeMap<(String, String, String), (u64, u64)>;

/// Which value-map entries a dry run used, and which codes were unmapped.
/// Single-threaded by design: a dry run maps one file on one thread.
///
/// Counts are per record: a record's rules are evaluated twice (once to
/// fingerprint, once to build the milestone) and several rules may look up
/// the same code, which once counted each look-up. Keys carry the mapping's
/// name, because an Excel connector's sheets each have their own mapping and
/// their maps may share a name.
#[derive(Debug, Default)]
pub struct Coverage {
    /// Canonical entry key → records.
    pub used: std::cell::RefCell<CoverageCounts>,
    /// Hub code as written → records (raw values: mask before showing).
    pub unmapped: std::cell::RefCell<CoverageCounts>,
    record: std::cell::Cell<u64>,
}

impl Coverage {
    /// The next look-ups belong to a new record.
    pub fn next_record(&self) {
        self.record.set(self.record.get() + 1);
    }

    fn count(&self, map: &std::cell::RefCell<CoverageCounts>, mapping: &str, name: &str, key: &str) {
        let record = self.record.get();
        let mut m = map.borrow_mut();
        let e = m
            .entry((mapping.to_string(), name.to_string(), key.to_string()))
            .or_insert((0, u64::MAX));
        if e.1 != record {
            *e = (e.0 + 1, record);
        }
    }
}

struct RowEnv<'a> {
    fields: Fields<'a>,
    bound: &'a Bound<'a>,
}

impl<'a> Env<'a> for RowEnv<'a> {
    fn field(&self, slot: usize) -> Result<Option<&'a str>, Stop> {
        let Some(index) = self.bound.binding.slots[slot] else {
            return Ok(None);
        };
        match self.fields.trimmed(index) {
            Some(Ok(t)) if !t.is_empty() => Ok(Some(t)),
            // Empty because never calculated: not a value the hub sent as empty.
            _ if self.fields.uncalculated(index) => Err(Stop::Reject {
                column: Some(self.bound.mapping.columns[slot].name.clone()),
                reason: "the cell is an uncalculated formula (saved without its value; \
                         recalculate and save the workbook in Excel)"
                    .into(),
            }),
            None => Ok(None),
            Some(Ok(_)) => Ok(None),
            Some(Err(e)) => Err(Stop::Reject {
                column: Some(self.bound.mapping.columns[slot].name.clone()),
                reason: format!(
                    "invalid UTF-8 at byte {} of the value (is the connector's encoding right?)",
                    e.valid_up_to()
                ),
            }),
        }
    }

    fn typed_date(&self, slot: usize) -> Option<NaiveDateTime> {
        let index = self.bound.binding.slots[slot]?;
        self.fields.date(index)
    }

    fn lookup(&self, map: usize, key: &str) -> Result<Option<&'a str>, Stop> {
        let m = &self.bound.mapping.maps[map];
        let found = m.get(key);
        if let Some(c) = self.bound.coverage {
            let mapping = &self.bound.mapping.name;
            match found {
                Some(_) => c.count(&c.used, mapping, &m.name, &m.canonical_key(key)),
                None => c.count(&c.unmapped, mapping, &m.name, key),
            }
        }
        match found {
            Some(v) => Ok(Some(v)),
            None => match m.on_unmapped {
                OnUnmapped::Reject => Err(Stop::Reject {
                    column: None,
                    reason: format!("code {} is not in value map `{}`", expr::redact(key), m.name),
                }),
                OnUnmapped::Skip => Err(Stop::Skip {
                    reason: format!("unmapped code in value map `{}`", m.name),
                }),
            },
        }
    }

    fn localize(&self, t: NaiveDateTime) -> Result<DateTime<FixedOffset>, String> {
        self.bound.time.localize(t)
    }
}

/// Receives a rule's evaluated parts in a fixed order: key first, then content.
pub trait Sink {
    fn key(&mut self, program: &str, case_id: &str, code: MilestoneCode, occurrence: &str);
    fn occurred(&mut self, o: Occurred, tz: &str);
    fn patient(&mut self, program: &str, patient_id: Option<&str>, p: &Pseudonymizer);
    fn status(&mut self, s: Option<CaseStatus>);
    fn sub_status(&mut self, s: Option<&str>);
    fn reason(&mut self, system: &str, code: &str);
    fn attr(&mut self, name: &str, v: &Val<'_>);
}

/// A milestone's identity and content, as hashes. Built per record with no
/// allocation; the diff stage compares these before anything is materialized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fingerprint {
    /// Hash of program, case, code and occurrence: the state key.
    pub key: u64,
    /// Hash of program and case: the delivery lane.
    pub lane: u64,
    /// Keyed hash of everything compared between nights.
    pub content: u64,
}

/// Builds a [`Fingerprint`]: the parts are appended to reused buffers and
/// hashed once, one-shot, at the end (cheaper than streaming hashers for
/// the ~100 bytes a milestone has). Reuse one sink for a whole file:
/// [`HashSink::reset`] keeps the buffers' capacity, so no row allocates.
pub struct HashSink {
    key: Vec<u8>,
    /// `key[..lane_len]` is the lane (program and case).
    lane_len: usize,
    content: Vec<u8>,
    seed: u64,
    pseudonym: PseudonymMemo,
}

/// The last pseudonym computed, by (pseudonymizer, program, patient id). The
/// HMAC is the costliest step of a fingerprint, and the rules of one record
/// (or consecutive records of one patient) nearly always share a patient id.
/// The buffers keep their capacity, so a miss does not allocate either.
struct PseudonymMemo {
    /// [`Pseudonymizer::id`] of the key used, so a sink reused with another
    /// key can never return a pseudonym made under the old one (0: none yet).
    by: u64,
    program: String,
    patient_id: String,
    raw: [u8; 16],
}

impl PseudonymMemo {
    fn get(&mut self, p: &Pseudonymizer, program: &str, patient_id: &str) -> [u8; 16] {
        if self.by != p.id || self.patient_id != patient_id || self.program != program {
            self.raw = p.raw(program, patient_id);
            self.by = p.id;
            self.program.clear();
            self.program.push_str(program);
            self.patient_id.clear();
            self.patient_id.push_str(patient_id);
        }
        self.raw
    }
}

impl HashSink {
    pub fn new(seed: u64) -> HashSink {
        HashSink {
            key: Vec::with_capacity(128),
            lane_len: 0,
            content: Vec::with_capacity(512),
            seed,
            pseudonym: PseudonymMemo {
                by: 0,
                program: String::with_capacity(32),
                patient_id: String::with_capacity(32),
                raw: [0; 16],
            },
        }
    }
    pub fn reset(&mut self) {
        self.key.clear();
        self.lane_len = 0;
        self.content.clear();
    }
    pub fn finish(&self) -> Fingerprint {
        Fingerprint {
            key: xxh3_64(&self.key),
            lane: xxh3_64(&self.key[..self.lane_len]),
            content: xxh3_64_with_seed(&self.content, self.seed),
        }
    }
}

/// Length-prefixed so that ("ab","c") and ("a","bc") differ.
fn put(buf: &mut Vec<u8>, s: &[u8]) {
    buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
    buf.extend_from_slice(s);
}

/// Hashes the key and lane of a milestone exactly as [`HashSink`] does, for
/// code that starts from stored fields (dry runs).
pub fn key_hash(program: &str, case_id: &str, code: &str, occurrence: &str) -> (u64, u64) {
    let mut buf = Vec::with_capacity(64);
    put(&mut buf, program.as_bytes());
    put(&mut buf, case_id.as_bytes());
    let lane = xxh3_64(&buf);
    put(&mut buf, code.as_bytes());
    put(&mut buf, occurrence.as_bytes());
    (xxh3_64(&buf), lane)
}

impl Sink for HashSink {
    fn key(&mut self, program: &str, case_id: &str, code: MilestoneCode, occurrence: &str) {
        put(&mut self.key, program.as_bytes());
        put(&mut self.key, case_id.as_bytes());
        self.lane_len = self.key.len();
        put(&mut self.key, code.as_str().as_bytes());
        put(&mut self.key, occurrence.as_bytes());
    }
    fn occurred(&mut self, o: Occurred, tz: &str) {
        match o {
            Occurred::Date(d) => {
                self.content.extend_from_slice(b"D");
                self.content
                    .extend_from_slice(&chrono::Datelike::num_days_from_ce(&d).to_le_bytes());
            }
            Occurred::DateTime(t) => {
                self.content.extend_from_slice(b"T");
                self.content.extend_from_slice(&t.timestamp().to_le_bytes());
                self.content
                    .extend_from_slice(&t.offset().local_minus_utc().to_le_bytes());
            }
        }
        put(&mut self.content, tz.as_bytes());
    }
    fn patient(&mut self, program: &str, patient_id: Option<&str>, p: &Pseudonymizer) {
        match patient_id {
            Some(id) => {
                self.content.extend_from_slice(b"P");
                let raw = self.pseudonym.get(p, program, id);
                self.content.extend_from_slice(&raw);
            }
            None => self.content.extend_from_slice(b"p"),
        }
    }
    fn status(&mut self, s: Option<CaseStatus>) {
        put(&mut self.content, s.map_or("", |s| s.as_str()).as_bytes());
    }
    fn sub_status(&mut self, s: Option<&str>) {
        match s {
            Some(s) => put(&mut self.content, s.as_bytes()),
            None => self.content.extend_from_slice(b"\xff"),
        }
    }
    fn reason(&mut self, system: &str, code: &str) {
        self.content.extend_from_slice(b"R");
        put(&mut self.content, system.as_bytes());
        put(&mut self.content, code.as_bytes());
    }
    fn attr(&mut self, name: &str, v: &Val<'_>) {
        self.content.extend_from_slice(b"A");
        put(&mut self.content, name.as_bytes());
        match v {
            Val::Null => self.content.extend_from_slice(b"n"),
            Val::Text(t) => {
                self.content.extend_from_slice(b"s");
                put(&mut self.content, t.as_bytes());
            }
            Val::Bool(b) => self.content.extend_from_slice(if *b { b"t" } else { b"f" }),
            Val::Int(n) => {
                self.content.extend_from_slice(b"i");
                self.content.extend_from_slice(&n.to_le_bytes());
            }
            Val::Date(d) => {
                self.content.extend_from_slice(b"d");
                self.content
                    .extend_from_slice(&chrono::Datelike::num_days_from_ce(d).to_le_bytes());
            }
            Val::DateTime(t) => {
                self.content.extend_from_slice(b"T");
                self.content.extend_from_slice(&t.timestamp().to_le_bytes());
                self.content
                    .extend_from_slice(&t.offset().local_minus_utc().to_le_bytes());
            }
        }
    }
}

/// Builds the owned [`Content`]: used only for records that changed.
pub struct ContentSink {
    pub content: Content,
}

impl ContentSink {
    pub fn new() -> ContentSink {
        ContentSink {
            content: Content {
                program: String::new(),
                case_id: String::new(),
                milestone: MilestoneCode::ReferralReceived,
                occurrence: String::new(),
                occurred_at: String::new(),
                occurred_precision: String::new(),
                time_zone: String::new(),
                patient_ref: None,
                status: None,
                sub_status: None,
                reasons: Vec::new(),
                attributes: serde_json::Map::new(),
            },
        }
    }
}

impl Default for ContentSink {
    fn default() -> Self {
        ContentSink::new()
    }
}

impl Sink for ContentSink {
    fn key(&mut self, program: &str, case_id: &str, code: MilestoneCode, occurrence: &str) {
        self.content.program = program.to_string();
        self.content.case_id = case_id.to_string();
        self.content.milestone = code;
        self.content.occurrence = occurrence.to_string();
    }
    fn occurred(&mut self, o: Occurred, tz: &str) {
        self.content.occurred_at = o.to_wire();
        self.content.occurred_precision = o.precision().to_string();
        self.content.time_zone = tz.to_string();
    }
    fn patient(&mut self, program: &str, patient_id: Option<&str>, p: &Pseudonymizer) {
        self.content.patient_ref = patient_id.map(|id| p.reference(program, id));
    }
    fn status(&mut self, s: Option<CaseStatus>) {
        self.content.status = s;
    }
    fn sub_status(&mut self, s: Option<&str>) {
        self.content.sub_status = s.map(str::to_string);
    }
    fn reason(&mut self, system: &str, code: &str) {
        self.content.reasons.push(Reason {
            system: system.to_string(),
            code: code.to_string(),
        });
    }
    fn attr(&mut self, name: &str, v: &Val<'_>) {
        use serde_json::Value as J;
        let j = match v {
            Val::Null => return,
            Val::Text(t) => J::String(t.to_string()),
            Val::Bool(b) => J::Bool(*b),
            Val::Int(n) => J::from(*n),
            Val::Date(d) => J::String(Occurred::Date(*d).to_wire()),
            Val::DateTime(t) => J::String(Occurred::DateTime(*t).to_wire()),
        };
        self.content.attributes.insert(name.to_string(), j);
    }
}

/// Why a record did not produce milestones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub column: Option<String>,
    pub reason: String,
}

fn reject(column: Option<&str>, reason: impl Into<String>) -> Stop {
    Stop::Reject {
        column: column.map(str::to_string),
        reason: reason.into(),
    }
}

fn first_column(e: &Expr) -> Option<&str> {
    match e {
        Expr::Column { name, .. } => Some(name),
        Expr::Unary(_, a)
        | Expr::Map { arg: a, .. }
        | Expr::Part { arg: a, .. }
        | Expr::Date { arg: a, .. }
        | Expr::Not(a)
        | Expr::In { arg: a, .. } => first_column(a),
        Expr::Coalesce(v) | Expr::Concat(v) => v.iter().find_map(first_column),
        Expr::If(a, b, c) => first_column(a)
            .or_else(|| first_column(b))
            .or_else(|| first_column(c)),
        Expr::Eq { left, right, .. } | Expr::And(left, right) | Expr::Or(left, right) => {
            first_column(left).or_else(|| first_column(right))
        }
        _ => None,
    }
}

/// Attaches the expression's first column to a reject that lacks one.
fn with_column(stop: Stop, c: &Compiled) -> Stop {
    match stop {
        Stop::Reject { column: None, reason } => Stop::Reject {
            column: first_column(&c.expr).map(str::to_string),
            reason,
        },
        other => other,
    }
}

impl<'m> Bound<'m> {
    fn env<'a>(&'a self, fields: Fields<'a>) -> RowEnv<'a> {
        RowEnv { fields, bound: self }
    }

    /// Whether `rule` applies to the record.
    pub fn applies<'a>(&'a self, rule: &'a Rule, fields: Fields<'a>) -> Result<bool, Stop> {
        match &rule.when {
            None => Ok(true),
            Some(w) => {
                let env = self.env(fields);
                Ok(expr::truthy(
                    &expr::eval(&w.expr, &env).map_err(|s| with_column(s, w))?,
                ))
            }
        }
    }

    /// Walks `rule` over a record into `sink`. The caller has checked `applies`.
    pub fn walk<'a, S: Sink>(&'a self, rule: &'a Rule, fields: Fields<'a>, sink: &mut S) -> Result<(), Stop> {
        let env = self.env(fields);
        let ev = |c: &'a Compiled| expr::eval(&c.expr, &env).map_err(|s| with_column(s, c));
        let code = match &rule.code {
            CodeSource::Fixed(c) => *c,
            CodeSource::Dynamic(c) => match ev(c)? {
                Val::Text(t) => MilestoneCode::parse(&t).ok_or_else(|| {
                    reject(
                        first_column(&c.expr),
                        format!("{} is not a milestone code", expr::redact(&t)),
                    )
                })?,
                _ => return Err(reject(first_column(&c.expr), "the milestone code is empty")),
            },
        };
        let case_v = ev(&rule.case_id)?;
        let Val::Text(case_id) = &case_v else {
            return Err(reject(first_column(&rule.case_id.expr), "the case id is empty"));
        };
        // Occurrence is rare; its text is small. Int occurrences format into a
        // stack buffer rather than a String.
        let occ_v = match &rule.occurrence {
            Some(o) => ev(o)?,
            None => Val::Null,
        };
        let mut num = itoa_buf::Buf::new();
        let occurrence: &str = match &occ_v {
            Val::Null => "",
            Val::Text(t) => t,
            Val::Int(n) => num.format(*n),
            _ => return Err(reject(None, "occurrence must be text or a number")),
        };
        sink.key(self.program, case_id, code, occurrence);
        let occurred = match ev(&rule.occurred_at)? {
            Val::Date(d) => Occurred::Date(d),
            Val::DateTime(t) => Occurred::DateTime(t),
            _ => {
                return Err(reject(
                    first_column(&rule.occurred_at.expr),
                    "the milestone date is empty",
                ))
            }
        };
        sink.occurred(occurred, self.time.tz.name());
        match &rule.patient_id {
            Some(p) => match ev(p)? {
                Val::Text(t) => sink.patient(self.program, Some(&t), self.pseudonymizer),
                _ => sink.patient(self.program, None, self.pseudonymizer),
            },
            None => sink.patient(self.program, None, self.pseudonymizer),
        }
        match &rule.status {
            Some(s) => match ev(s)? {
                Val::Text(t) => {
                    let st = CaseStatus::parse(&t).ok_or_else(|| {
                        reject(
                            first_column(&s.expr),
                            format!("{} is not a case status", expr::redact(&t)),
                        )
                    })?;
                    sink.status(Some(st));
                }
                _ => sink.status(None),
            },
            None => sink.status(None),
        }
        match &rule.sub_status {
            Some(s) => {
                // Borrowed, and numbers formatted on the stack: no allocation
                // per record for a value that is usually only hashed.
                let v = ev(s)?;
                let mut num = itoa_buf::Buf::new();
                let t = match &v {
                    Val::Null => None,
                    Val::Text(t) => Some(&**t),
                    Val::Int(n) => Some(num.format(*n)),
                    _ => return Err(reject(first_column(&s.expr), "expected text")),
                };
                sink.sub_status(t);
            }
            None => sink.sub_status(None),
        }
        for (system, c) in &rule.reasons {
            if let Val::Text(t) = ev(c)? {
                sink.reason(system, &t);
            }
        }
        for (name, c) in &rule.attributes {
            let v = ev(c)?;
            if !v.is_null() {
                sink.attr(name, &v);
            }
        }
        Ok(())
    }
}

/// A tiny integer formatter so occurrence numbers need no allocation.
mod itoa_buf {
    pub struct Buf([u8; 24]);
    impl Buf {
        pub fn new() -> Buf {
            Buf([0; 24])
        }
        pub fn format(&mut self, n: i64) -> &str {
            use std::io::Write;
            let mut cursor = std::io::Cursor::new(&mut self.0[..]);
            write!(cursor, "{n}").expect("an i64 fits in 24 bytes");
            let len = cursor.position() as usize;
            std::str::from_utf8(&self.0[..len]).expect("digits are UTF-8")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonym_memo_matches_the_hmac_and_tells_keys_apart() {
        let a = Pseudonymizer::new(b"key-a");
        let b = Pseudonymizer::new(b"key-b");
        let mut sink = HashSink::new(7);
        for (p, program, id) in [
            (&a, "P1", "123"),
            (&a, "P1", "123"),
            (&a, "P2", "123"),
            (&a, "P2", "124"),
            (&b, "P2", "124"),
            (&a, "P2", "124"),
            (&a.clone(), "P2", "124"),
        ] {
            assert_eq!(sink.pseudonym.get(p, program, id), p.raw(program, id));
        }
    }

    #[test]
    fn value_map_lookup_honours_ignore_case() {
        let map = |ignore_case| ValueMap {
            name: "m".into(),
            on_unmapped: OnUnmapped::Reject,
            ignore_case,
            entries: [("REF", "a"), ("ÉTÉ", "b"), ("x-1", "c")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let ci = map(true);
        for (key, want) in [
            ("REF", Some("a")),
            ("ref", Some("a")),
            ("rEf", Some("a")),
            ("été", Some("b")),
            ("ÉTÉ", Some("b")),
            ("RE", None),
            ("x-1", None),
        ] {
            assert_eq!(ci.get(key), want, "{key}");
        }
        let cs = map(false);
        for (key, want) in [
            ("REF", Some("a")),
            ("ref", None),
            ("x-1", Some("c")),
            ("X-1", None),
        ] {
            assert_eq!(cs.get(key), want, "{key}");
        }
    }
}
