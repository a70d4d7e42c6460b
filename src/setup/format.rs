//! `[format]` of a connector, checked against its kind and its mapping, and
//! turned into the options the parse stage owns (`parse::csv::CsvFormat`,
//! excel sheet rules, `X12Format`, `XmlFormat`).

use std::collections::BTreeMap;
use std::sync::Arc;

use toml::Spanned;

use super::Format;
use crate::config::connector::{self, FormatKind, FormatSpec};
use crate::config::diag::{Diagnostics, SourceFile};
use crate::map::{Mapping, Syntax};
use crate::parse::csv::{CsvFormat, Encoding};
use crate::parse::excel::{HeaderAt, SheetRule, SheetSelect};
use crate::parse::x12::{SeparatorCollision, X12Format};
use crate::parse::xml::{NoRecords, XmlFormat};

/// Validates `[format]` for its kind: keys of another kind are reported, and
/// the mapping's syntax must suit the format.
pub(super) fn load_format(
    src: &SourceFile,
    f: &connector::FormatSpec,
    kind: FormatKind,
    mapping: &Arc<Mapping>,
    mappings: &BTreeMap<String, Arc<Mapping>>,
    diags: &mut Diagnostics,
) -> Option<Format> {
    // Keys that belong to another kind, with the kind they belong to.
    let owned = [
        (
            FormatKind::Excel,
            &key_spans!(f; sheets, skip_rows, find_header, include_hidden_sheets, fill_merged)[..],
        ),
        (
            FormatKind::Csv,
            &key_spans!(f; delimiter, quote, encoding, skip_lines)[..],
        ),
        (
            FormatKind::X12,
            &key_spans!(f; separator_collision, lenient_isa_width, record_levels,
                transaction_sets, purposes, acknowledgments)[..],
        ),
        (FormatKind::Xml, &key_spans!(f; record, no_records)[..]),
    ];
    for (owner, keys) in owned.into_iter().filter(|(owner, _)| *owner != kind) {
        for (key, span) in keys.iter().cloned() {
            let Some(span) = span else {
                continue;
            };
            diags.push(src.diag(
                span,
                format!(
                    "`{key}` applies to kind = \"{}\", not \"{}\"",
                    owner.name(),
                    kind.name()
                ),
            ));
        }
    }
    let want_syntax = match kind {
        FormatKind::Csv | FormatKind::Excel => Syntax::Header,
        FormatKind::X12 => Syntax::X12,
        FormatKind::Xml => Syntax::Xml,
    };
    let check_syntax = |m: &Mapping, span: std::ops::Range<usize>, diags: &mut Diagnostics| {
        if m.syntax != want_syntax {
            diags.push(
                src.diag(
                    span,
                    format!(
                        "mapping `{}` addresses columns with {:?} syntax, but this connector reads {}",
                        m.name,
                        m.syntax,
                        kind.name()
                    ),
                )
                .with_hint(match want_syntax {
                    Syntax::Header => "CSV and Excel mappings name columns by `header`",
                    Syntax::X12 => "X12 mappings set syntax = \"x12\" and give each column a `path`",
                    Syntax::Xml => "XML mappings set syntax = \"xml\" and give each column a `path`",
                }),
            );
            false
        } else {
            true
        }
    };
    let kind_span = f.kind.span();
    match kind {
        FormatKind::Csv => {
            check_syntax(mapping, kind_span, diags);
            match csv_format(f) {
                Ok(c) => Some(Format::Csv(c)),
                Err((span, msg)) => {
                    diags.push(src.diag(span, msg));
                    None
                }
            }
        }
        FormatKind::Excel => {
            let default_header = |skip: &Option<Spanned<u32>>, find: &Option<Spanned<bool>>, m: &Mapping| {
                let find = find
                    .as_ref()
                    .or(f.find_header.as_ref())
                    .is_some_and(|b| *b.get_ref());
                if find {
                    HeaderAt::Find(
                        m.columns
                            .iter()
                            .filter(|c| c.required)
                            .map(|c| {
                                std::iter::once(&c.header)
                                    .chain(&c.aliases)
                                    .map(|h| crate::text::normalize_header(h))
                                    .collect()
                            })
                            .collect(),
                    )
                } else {
                    HeaderAt::Skip(skip.as_ref().or(f.skip_rows.as_ref()).map_or(0, |s| *s.get_ref()))
                }
            };
            let include_hidden = f.include_hidden_sheets.as_ref().is_some_and(|b| *b.get_ref());
            // A name to fill must be a header the sheet's mapping reads (a
            // typo would silently fill nothing).
            let fill =
                |own: &Option<Spanned<Vec<String>>>, m: &Mapping, diags: &mut Diagnostics| -> Vec<String> {
                    let Some(list) = own.as_ref().or(f.fill_merged.as_ref()) else {
                        return Vec::new();
                    };
                    let known: Vec<String> = m
                        .columns
                        .iter()
                        .flat_map(|c| std::iter::once(&c.header).chain(&c.aliases))
                        .map(|h| crate::text::normalize_header(h))
                        .collect();
                    let names: Vec<String> = list
                        .get_ref()
                        .iter()
                        .map(|h| crate::text::normalize_header(h))
                        .collect();
                    for (raw, n) in list.get_ref().iter().zip(&names) {
                        if !known.contains(n) {
                            diags.push(src.diag(
                                list.span(),
                                format!(
                                    "`fill_merged` names `{raw}`, which is not a header of mapping `{}`",
                                    m.name
                                ),
                            ));
                        }
                    }
                    names
                };
            let mut rules = Vec::new();
            match &f.sheets {
                None => {
                    check_syntax(mapping, kind_span, diags);
                    rules.push((
                        SheetRule {
                            select: SheetSelect::Index(0),
                            header: default_header(&None, &None, mapping),
                            fill_merged: fill(&None, mapping, diags),
                            include_hidden,
                        },
                        mapping.clone(),
                    ));
                }
                Some(sheets) => {
                    if sheets.get_ref().is_empty() {
                        diags.push(src.diag(
                            sheets.span(),
                            "`sheets` is empty; omit it to read the first sheet",
                        ));
                    }
                    for sh in sheets.get_ref() {
                        let select = match (&sh.name, &sh.glob, &sh.index) {
                            (Some(n), None, None) => Some(SheetSelect::Name(n.get_ref().clone())),
                            (None, Some(g), None) => match globset::Glob::new(g.get_ref()) {
                                Ok(g) => Some(SheetSelect::Glob(g.compile_matcher())),
                                Err(e) => {
                                    diags.push(src.diag(g.span(), format!("bad sheet glob: {e}")));
                                    None
                                }
                            },
                            (None, None, Some(i)) => Some(SheetSelect::Index(*i.get_ref())),
                            _ => {
                                diags.push(src.diag(
                                    sheets.span(),
                                    "each sheet needs exactly one of `name`, `glob` or `index`",
                                ));
                                None
                            }
                        };
                        let m = match &sh.mapping {
                            None => Some(mapping.clone()),
                            Some(name) => match mappings.get(name.get_ref()) {
                                Some(m) => Some(m.clone()),
                                None => {
                                    diags.push(src.diag(
                                        name.span(),
                                        format!(
                                            "no mapping named `{}` in the mappings folder",
                                            name.get_ref()
                                        ),
                                    ));
                                    None
                                }
                            },
                        };
                        if let (Some(select), Some(m)) = (select, m) {
                            let span = sh.mapping.as_ref().map_or(sheets.span(), |s| s.span());
                            check_syntax(&m, span, diags);
                            let header = default_header(&sh.skip_rows, &sh.find_header, &m);
                            rules.push((
                                SheetRule {
                                    select,
                                    header,
                                    fill_merged: fill(&sh.fill_merged, &m, diags),
                                    include_hidden,
                                },
                                m,
                            ));
                        }
                    }
                }
            }
            Some(Format::Excel(rules))
        }
        FormatKind::X12 => {
            check_syntax(mapping, kind_span, diags);
            let record_levels = f
                .record_levels
                .as_ref()
                .map_or(Vec::new(), |l| l.get_ref().clone());
            Some(Format::X12(X12Format {
                collision: match f.separator_collision.as_ref().map(|c| *c.get_ref()) {
                    None | Some(connector::SeparatorCollision::Reject) => SeparatorCollision::Reject,
                    Some(connector::SeparatorCollision::Repetition) => SeparatorCollision::Repetition,
                    Some(connector::SeparatorCollision::Component) => SeparatorCollision::Component,
                },
                lenient_isa_width: f.lenient_isa_width.as_ref().is_some_and(|b| *b.get_ref()),
                record_levels,
                transaction_sets: f.transaction_sets.as_ref().map_or_else(
                    || mapping.transaction.iter().cloned().collect(),
                    |l| l.get_ref().clone(),
                ),
                purposes: f.purposes.as_ref().map_or(Vec::new(), |l| l.get_ref().clone()),
                acknowledgments: f.acknowledgments.as_ref().is_some_and(|b| *b.get_ref()),
            }))
        }
        FormatKind::Xml => {
            check_syntax(mapping, kind_span.clone(), diags);
            if mapping.columns.len() > crate::parse::xml::MAX_FIELDS {
                diags.push(src.diag(
                    kind_span.clone(),
                    format!(
                        "mapping `{}` declares {} columns; an XML mapping reads at most {}",
                        mapping.name,
                        mapping.columns.len(),
                        crate::parse::xml::MAX_FIELDS
                    ),
                ));
            }
            let Some(record) = &f.record else {
                diags.push(
                    src.diag(
                        kind_span,
                        "an XML connector needs `record`, the path of the record element",
                    )
                    .with_hint("e.g. record = \"Export/Cases/Case\""),
                );
                return None;
            };
            match crate::parse::xml::parse_path(record.get_ref(), &mapping.namespaces) {
                Ok(p) if p.attr.is_none() => Some(Format::Xml(XmlFormat {
                    record: p,
                    no_records: match f.no_records.as_ref().map(|n| *n.get_ref()) {
                        None | Some(connector::NoRecords::Refuse) => NoRecords::Refuse,
                        Some(connector::NoRecords::Warn) => NoRecords::Warn,
                    },
                })),
                Ok(_) => {
                    diags.push(src.diag(record.span(), "`record` names an element, not an attribute"));
                    None
                }
                Err((_, msg)) => {
                    diags.push(src.diag(record.span(), msg));
                    None
                }
            }
        }
    }
}

/// `[format]` of a CSV connector: one-byte delimiter and quote that differ.
fn csv_format(spec: &FormatSpec) -> Result<CsvFormat, (std::ops::Range<usize>, String)> {
    let one_byte = |s: &Spanned<String>, what: &str| {
        let v = s.get_ref();
        let v = if v == "\\t" { "\t" } else { v.as_str() };
        if v.len() == 1 && v.is_ascii() {
            Ok(v.as_bytes()[0])
        } else {
            Err((s.span(), format!("{what} must be one ASCII character")))
        }
    };
    let delimiter = spec
        .delimiter
        .as_ref()
        .map_or(Ok(b','), |d| one_byte(d, "delimiter"))?;
    let quote = spec.quote.as_ref().map_or(Ok(b'"'), |q| one_byte(q, "quote"))?;
    if delimiter == quote {
        let span = spec
            .quote
            .as_ref()
            .or(spec.delimiter.as_ref())
            .map_or(0..0, |s| s.span());
        return Err((span, "quote and delimiter must differ".into()));
    }
    Ok(CsvFormat {
        delimiter,
        quote,
        encoding: match spec.encoding.as_ref().map(|e| *e.get_ref()) {
            None | Some(connector::Encoding::Utf8) => Encoding::Utf8,
            Some(connector::Encoding::Windows1252) => Encoding::Windows1252,
        },
        skip_lines: spec.skip_lines.as_ref().map_or(0, |s| *s.get_ref()),
    })
}
