//! XML exports (quick-xml), streamed: a record is the element at a configured
//! path; its fields are paths relative to it, attributes included.
//!
//! Names match by namespace URI when the path step has a prefix (declared in
//! the mapping's `[namespaces]`), and by local name alone when it has none,
//! so an export that adds a default namespace one day keeps mapping.
//!
//! Only the current record's field values are held, never the document.
//! A malformed document stops at the error: the records before it are
//! committed, and the file goes to the error folder with the line.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::ops::Range;
use std::path::Path;

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

use super::{file_label, Locator, ParseError, Row};

/// One step of a path: a local name, with its namespace URI when the path
/// gave a prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    pub ns: Option<String>,
    pub local: String,
}

impl Name {
    fn matches(&self, ns: &ResolveResult<'_>, local: &[u8]) -> bool {
        if self.local.as_bytes() != local {
            return false;
        }
        match (&self.ns, ns) {
            (None, _) => true,
            (Some(want), ResolveResult::Bound(n)) => want.as_bytes() == n.as_ref(),
            (Some(_), _) => false,
        }
    }
}

/// A compiled XML path: element steps, then optionally an attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlPath {
    pub steps: Vec<Name>,
    pub attr: Option<Name>,
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Parses `Payer/Name`, `ns:Plan/@code`, `@id`. Errors carry a span in `src`.
pub fn parse_path(src: &str, namespaces: &[(String, String)]) -> Result<XmlPath, (Range<usize>, String)> {
    let mut steps = Vec::new();
    let mut attr = None;
    let trimmed = src.trim_start_matches('/');
    let mut at = src.len() - trimmed.len();
    if trimmed.is_empty() {
        return Err((
            0..src.len().max(1),
            "an XML path needs at least one element or attribute".into(),
        ));
    }
    let parts: Vec<&str> = trimmed.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        let span = at..at + part.len().max(1);
        let (is_attr, qname) = match part.strip_prefix('@') {
            Some(rest) if i + 1 == parts.len() => (true, rest),
            Some(_) => return Err((span, "an attribute (`@name`) can only be the last step".into())),
            None => (false, *part),
        };
        let (ns, local) = match qname.split_once(':') {
            Some((prefix, local)) => match namespaces.iter().find(|(p, _)| p == prefix) {
                Some((_, uri)) => (Some(uri.clone()), local),
                None => {
                    return Err((
                        span,
                        format!("namespace prefix `{prefix}` is not declared in the mapping's [namespaces]"),
                    ))
                }
            },
            None => (None, qname),
        };
        if !is_name(local) {
            return Err((span, format!("`{part}` is not an XML name")));
        }
        let name = Name {
            ns,
            local: local.to_string(),
        };
        if is_attr {
            attr = Some(name);
        } else {
            steps.push(name);
        }
        at += part.len() + 1;
    }
    Ok(XmlPath { steps, attr })
}

/// What a document whose structure never leads to the record element means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NoRecords {
    /// Refuse the file: an extra wrapper or a dropped namespace is not an
    /// empty export.
    #[default]
    Refuse,
    /// Take it as done with zero records, and say so.
    Warn,
}

/// Validated XML settings of one connector.
#[derive(Debug, Clone)]
pub struct XmlFormat {
    /// Absolute path of the record element from the root.
    pub record: XmlPath,
    /// A document whose structure never leads to the record element.
    pub no_records: NoRecords,
}

/// Counts line breaks as quick-xml consumes bytes, so events know their line.
struct Lines<R> {
    inner: R,
    newlines: u64,
}

impl<R: BufRead> Read for Lines<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.newlines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Lines<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner.fill_buf()
    }
    fn consume(&mut self, amt: usize) {
        if let Ok(b) = self.inner.fill_buf() {
            let n = amt.min(b.len());
            self.newlines += memchr::memchr_iter(b'\n', &b[..n]).count() as u64;
        }
        self.inner.consume(amt);
    }
}

/// Fields are tracked in a bit mask per open element.
pub const MAX_FIELDS: usize = 64;

/// A streaming reader of records.
/// The bytes quick-xml reads: the file itself, or its UTF-8 transcoding
/// when it starts with a UTF-16 byte-order mark.
type Source = BufReader<Box<dyn Read + Send>>;

pub struct XmlReader {
    reader: NsReader<Lines<Source>>,
    file: String,
    record: XmlPath,
    fields: Vec<XmlPath>,
    buf: Vec<u8>,
    /// Per open element above the record: does the prefix match the record path?
    outer: Vec<bool>,
    /// Depth of the record element, when inside one.
    in_record: Option<usize>,
    start_line: u64,
    /// Per open element inside the record: fields whose steps match so far.
    masks: Vec<u64>,
    /// Fields capturing text, and the relative depth that started each.
    capturing: u64,
    capture_depth: Vec<usize>,
    done: u64,
    values: Vec<String>,
    no_records: NoRecords,
    /// Records read so far.
    records: u64,
    /// Whether an element matched the record path's parent (for a one-step
    /// path, the document itself): then zero records is an empty export,
    /// not structure drift.
    parent_seen: bool,
    /// The root element's name, for the drift message.
    root: Option<String>,
    warnings: Vec<String>,
}

impl XmlReader {
    pub fn open(path: &Path, fmt: &XmlFormat, fields: Vec<XmlPath>) -> Result<XmlReader, ParseError> {
        let file = file_label(path);
        let mut f = File::open(path).map_err(|source| ParseError::Io {
            file: file.clone(),
            source,
        })?;
        let io = |source| ParseError::Io {
            file: file.clone(),
            source,
        };
        // quick-xml reads UTF-8 only: a UTF-16 export (its BOM says so) is
        // transcoded on the fly, so its records read like any other's.
        let mut bom = [0u8; 2];
        let n = read_up_to(&mut f, &mut bom).map_err(io)?;
        std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(0)).map_err(io)?;
        let inner: Box<dyn Read + Send> = match &bom[..n] {
            [0xFF, 0xFE] | [0xFE, 0xFF] => {
                let mut utf8 = encoding_rs_io::DecodeReaderBytesBuilder::new()
                    .bom_sniffing(true)
                    .strip_bom(true)
                    .build(f);
                // The declaration still says UTF-16, and quick-xml would
                // decode the (now UTF-8) values with it: make it say UTF-8.
                let head = utf8_declaration(&mut utf8).map_err(io)?;
                Box::new(std::io::Cursor::new(head).chain(utf8))
            }
            _ => Box::new(f),
        };
        let mut reader = NsReader::from_reader(Lines {
            inner: BufReader::with_capacity(256 * 1024, inner),
            newlines: 0,
        });
        let cfg = reader.config_mut();
        cfg.expand_empty_elements = true;
        cfg.check_end_names = true;
        let n = fields.len();
        Ok(XmlReader {
            reader,
            file,
            record: fmt.record.clone(),
            fields,
            buf: Vec::with_capacity(4096),
            outer: Vec::new(),
            in_record: None,
            start_line: 0,
            masks: Vec::new(),
            capturing: 0,
            capture_depth: vec![0; n],
            done: 0,
            values: vec![String::new(); n],
            no_records: fmt.no_records,
            records: 0,
            parent_seen: false,
            root: None,
            warnings: Vec::new(),
        })
    }

    /// Warnings so far (all of them once `next` returned `None`).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Reads the next record into `row`; `Ok(None)` at the end of the document.
    pub fn next(&mut self, row: &mut Row) -> Result<Option<Locator>, ParseError> {
        // Split borrows: the event borrows `buf` and the namespace result
        // borrows `reader` while the record state is updated.
        let XmlReader {
            reader,
            file,
            record,
            fields,
            buf,
            outer,
            in_record,
            start_line,
            masks,
            capturing,
            capture_depth,
            done,
            values,
            no_records,
            records,
            parent_seen,
            root,
            warnings,
        } = self;
        let malformed = |reader: &NsReader<Lines<Source>>, reason: String| ParseError::Malformed {
            file: file.clone(),
            locator: Locator::Line(reader.get_ref().newlines + 1),
            reason,
        };
        let mask_where = |pred: &dyn Fn(&XmlPath) -> bool| -> u64 {
            let mut m = 0u64;
            for (f, p) in fields.iter().enumerate() {
                if pred(p) {
                    m |= 1 << f;
                }
            }
            m
        };
        let with_attr = mask_where(&|p| p.attr.is_some());
        let own_attrs = mask_where(&|p| p.steps.is_empty() && p.attr.is_some());
        let has_steps = mask_where(&|p| !p.steps.is_empty());
        loop {
            buf.clear();
            let (ns, event) = match reader.read_resolved_event_into(buf) {
                Ok(x) => x,
                Err(e) => return Err(malformed(reader, format!("malformed XML: {e}"))),
            };
            match event {
                Event::Start(e) => {
                    let local = e.local_name();
                    let local = local.as_ref();
                    let take = match *in_record {
                        None => {
                            let d = outer.len();
                            if d == 0 && root.is_none() {
                                *root = Some(String::from_utf8_lossy(e.name().as_ref()).into_owned());
                            }
                            let prefix_ok = (d == 0 || outer[d - 1])
                                && record.steps.get(d).is_some_and(|s| s.matches(&ns, local));
                            if prefix_ok && d + 2 == record.steps.len() {
                                *parent_seen = true;
                            }
                            outer.push(prefix_ok);
                            if prefix_ok && d + 1 == record.steps.len() {
                                *in_record = Some(d);
                                *start_line = reader.get_ref().newlines + 1;
                                masks.clear();
                                *capturing = 0;
                                *done = 0;
                                for v in values.iter_mut() {
                                    v.clear();
                                }
                                // Attributes of the record element itself (`@id`).
                                own_attrs
                            } else {
                                0
                            }
                        }
                        Some(_) => {
                            let k = masks.len();
                            let parent = if k == 0 { has_steps } else { masks[k - 1] };
                            let mut mask = 0u64;
                            for (f, p) in fields.iter().enumerate() {
                                if parent & (1 << f) != 0
                                    && p.steps.get(k).is_some_and(|s| s.matches(&ns, local))
                                {
                                    mask |= 1 << f;
                                }
                            }
                            masks.push(mask);
                            let complete = mask & mask_where(&|p| p.steps.len() == k + 1) & !*done;
                            let texts = complete & !with_attr & !*capturing;
                            for (f, depth) in capture_depth.iter_mut().enumerate() {
                                if texts & (1 << f) != 0 {
                                    *depth = k;
                                }
                            }
                            *capturing |= texts;
                            complete & with_attr
                        }
                    };
                    if take != 0 {
                        // Without quick-xml's duplicate-attribute check: it
                        // compares each attribute with every earlier one, and
                        // an element with 100,000 attributes took minutes
                        // (fixtures/malformed, xml_many_attributes). The first
                        // occurrence of a field's attribute wins either way.
                        for a in e.attributes().with_checks(false) {
                            let a =
                                a.map_err(|err| malformed(reader, format!("malformed attribute: {err}")))?;
                            let (ans, alocal) = reader.resolve_attribute(a.key);
                            for (f, p) in fields.iter().enumerate() {
                                if take & (1 << f) == 0 || *done & (1 << f) != 0 {
                                    continue;
                                }
                                if p.attr.as_ref().is_some_and(|w| w.matches(&ans, alocal.as_ref())) {
                                    let v = a.decode_and_unescape_value(reader.decoder()).map_err(|err| {
                                        malformed(reader, format!("malformed attribute value: {err}"))
                                    })?;
                                    values[f].push_str(&v);
                                    *done |= 1 << f;
                                }
                            }
                        }
                    }
                }
                Event::End(_) => match *in_record {
                    None => {
                        outer.pop();
                    }
                    Some(_) if masks.is_empty() => {
                        // The record element closes: the record is complete.
                        *in_record = None;
                        outer.pop();
                        row.clear();
                        for v in values.iter() {
                            row.push(v.trim());
                        }
                        *records += 1;
                        return Ok(Some(Locator::Line(*start_line)));
                    }
                    Some(_) => {
                        let k = masks.len() - 1;
                        masks.pop();
                        for (f, depth) in capture_depth.iter().enumerate() {
                            if *capturing & (1 << f) != 0 && *depth == k {
                                *capturing &= !(1 << f);
                                *done |= 1 << f;
                            }
                        }
                    }
                },
                Event::Text(t) if *capturing != 0 => {
                    let text = t
                        .unescape()
                        .map_err(|e| malformed(reader, format!("malformed XML text: {e}")))?;
                    for (f, v) in values.iter_mut().enumerate() {
                        if *capturing & (1 << f) != 0 {
                            v.push_str(&text);
                        }
                    }
                }
                Event::CData(c) if *capturing != 0 => {
                    let raw = c.into_inner();
                    let text = String::from_utf8_lossy(&raw);
                    for (f, v) in values.iter_mut().enumerate() {
                        if *capturing & (1 << f) != 0 {
                            v.push_str(&text);
                        }
                    }
                }
                Event::Eof => {
                    if in_record.is_some() || !outer.is_empty() {
                        return Err(malformed(
                            reader,
                            "the document ends inside an open element".into(),
                        ));
                    }
                    if *records == 0 && !*parent_seen {
                        // Structure drift (an extra wrapper, a dropped
                        // namespace) looks like an empty export: say which.
                        let path: Vec<String> = record
                            .steps
                            .iter()
                            .map(|s| match &s.ns {
                                Some(ns) => format!("{{{ns}}}{}", s.local),
                                None => s.local.clone(),
                            })
                            .collect();
                        let what = match root {
                            Some(r) => format!(
                                "no element matches the record path `{}` (the document's root is <{r}>); \
                                 has the export's structure or namespace changed?",
                                path.join("/")
                            ),
                            None => "the document has no root element".to_string(),
                        };
                        match no_records {
                            NoRecords::Refuse => {
                                return Err(ParseError::Unreadable {
                                    file: file.clone(),
                                    reason: format!("{what} (no_records = \"refuse\")"),
                                })
                            }
                            NoRecords::Warn => {
                                if warnings.is_empty() {
                                    warnings.push(format!("zero records: {what}"));
                                }
                            }
                        }
                    }
                    return Ok(None);
                }
                _ => {}
            }
        }
    }
}

/// Reads the start of a transcoded document (up to the end of its XML
/// declaration, at most 1 KiB) and rewrites the declaration's `encoding`
/// to UTF-8. The bytes read are returned, to be put back in front.
fn utf8_declaration(r: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 256];
    while head.len() < 1024 && memchr::memmem::find(&head, b"?>").is_none() {
        match r.read(&mut chunk)? {
            0 => break,
            k => head.extend_from_slice(&chunk[..k]),
        }
    }
    if !head.starts_with(b"<?xml") {
        return Ok(head);
    }
    let Some(end) = memchr::memmem::find(&head, b"?>") else {
        return Ok(head);
    };
    let Some(at) = memchr::memmem::find(&head[..end], b"encoding") else {
        return Ok(head);
    };
    let rest = &head[at..end];
    let Some(open) = rest.iter().position(|b| *b == b'"' || *b == b'\'') else {
        return Ok(head);
    };
    let quote = rest[open];
    let Some(close) = rest[open + 1..].iter().position(|b| *b == quote) else {
        return Ok(head);
    };
    let (from, to) = (at + open + 1, at + open + 1 + close);
    head.splice(from..to, b"UTF-8".iter().copied());
    Ok(head)
}

/// Reads until `buf` is full or the file ends; returns how much was read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn read_all(
        xml: &str,
        record: &str,
        fields: &[&str],
        ns: &[(String, String)],
    ) -> (Vec<(String, Vec<String>)>, Option<String>) {
        read_bytes(xml.as_bytes(), record, fields, ns)
    }

    fn read_bytes(
        xml: &[u8],
        record: &str,
        fields: &[&str],
        ns: &[(String, String)],
    ) -> (Vec<(String, Vec<String>)>, Option<String>) {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(xml).expect("write");
        let fmt = XmlFormat {
            record: parse_path(record, ns).expect("record path"),
            no_records: Default::default(),
        };
        let paths = fields
            .iter()
            .map(|p| parse_path(p, ns).expect("field path"))
            .collect();
        let mut r = XmlReader::open(f.path(), &fmt, paths).expect("open");
        let mut row = Row::new();
        let mut out = Vec::new();
        loop {
            match r.next(&mut row) {
                Ok(Some(loc)) => out.push((
                    loc.to_string(),
                    (0..row.len())
                        .map(|i| row.get(i).unwrap_or("").to_string())
                        .collect(),
                )),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e.to_string())),
            }
        }
    }

    #[test]
    fn records_fields_attributes_and_lines() {
        let xml = "<?xml version=\"1.0\"?>\n<Export>\n  <Case id=\"C1\">\n    <Status code=\"PAA\">Approved</Status>\n    <Payer><Name>Acme &amp; Co</Name></Payer>\n  </Case>\n  <Case id=\"C2\"><Status code=\"PAD\"/></Case>\n</Export>\n";
        let (recs, err) = read_all(
            xml,
            "Export/Case",
            &["@id", "Status/@code", "Status", "Payer/Name"],
            &[],
        );
        assert_eq!(err, None);
        assert_eq!(recs[0].0, "line 3");
        assert_eq!(recs[0].1, ["C1", "PAA", "Approved", "Acme & Co"]);
        assert_eq!(recs[1].0, "line 7");
        assert_eq!(recs[1].1, ["C2", "PAD", "", ""]);
    }

    #[test]
    fn namespaces_match_by_uri() {
        let ns = vec![("h".to_string(), "urn:hub".to_string())];
        let xml = "<r:Export xmlns:r=\"urn:hub\" xmlns:o=\"urn:other\"><r:Case><r:Id>1</r:Id><o:Id>x</o:Id></r:Case></r:Export>";
        let (recs, err) = read_all(xml, "h:Export/h:Case", &["h:Id"], &ns);
        assert_eq!(err, None);
        assert_eq!(recs[0].1, ["1"]);
        assert!(parse_path("q:Id", &ns).is_err());
    }

    #[test]
    fn malformed_xml_names_its_line_after_good_records() {
        let xml = "<Export>\n<Case><Id>1</Id></Case>\n<Case><Id>2</Id></Cas>\n</Export>";
        let (recs, err) = read_all(xml, "Export/Case", &["Id"], &[]);
        assert_eq!(recs.len(), 1);
        let err = err.expect("malformed");
        assert!(err.contains("line 3"), "{err}");
    }

    fn utf16(text: &str, big_endian: bool) -> Vec<u8> {
        let mut out = if big_endian {
            vec![0xFE, 0xFF]
        } else {
            vec![0xFF, 0xFE]
        };
        for u in text.encode_utf16() {
            out.extend_from_slice(&if big_endian {
                u.to_be_bytes()
            } else {
                u.to_le_bytes()
            });
        }
        out
    }

    #[test]
    fn utf16_documents_are_decoded_by_their_bom() {
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-16\"?>\n<E>\n<C id=\"A-1\"><S>Zoë</S></C>\n</E>\n";
        for be in [false, true] {
            let (records, err) = read_bytes(&utf16(xml, be), "E/C", &["@id", "S"], &[]);
            assert_eq!(err, None, "big endian: {be}");
            assert_eq!(
                records,
                vec![("line 3".to_string(), vec!["A-1".to_string(), "Zoë".to_string()])]
            );
        }
    }

    #[test]
    fn structure_drift_is_refused_and_an_empty_export_is_not() {
        // An extra wrapper: the record path's parent never matches.
        let (records, err) = read_all("<W><E><C id=\"1\"/></E></W>", "E/C", &["@id"], &[]);
        assert!(records.is_empty());
        let err = err.expect("refused");
        assert!(
            err.contains("no element matches the record path `E/C`") && err.contains("<W>"),
            "{err}"
        );
        // The parent is there with no records: a valid, empty export.
        let (records, err) = read_all("<E></E>", "E/C", &["@id"], &[]);
        assert!(records.is_empty());
        assert_eq!(err, None);
        // A dropped namespace.
        let ns = vec![("b".to_string(), "urn:b".to_string())];
        let (_, err) = read_all("<E><C id=\"1\"/></E>", "b:E/b:C", &["@id"], &ns);
        assert!(err.expect("refused").contains("{urn:b}E/{urn:b}C"));
    }
}
