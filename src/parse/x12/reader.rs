//! Pass 2: the record reader. Yields natural record units, holding only the
//! current record, its ancestor loops and the envelope headers.

use std::fs::File;
use std::path::Path;

use super::super::{file_label, Ctl, Locator, ParseError, Row};
use super::envelope::{token_error, Counters};
use super::paths::write_element;
use super::{elem, parse_u64, validate, Delims, Tokenizer, Verdicts, X12Format, X12Path};

// ---------------------------------------------------------------- records

/// Segments held while a record is read: the envelope headers, the set's
/// header, the ancestor loops and the record's own segments.
#[derive(Default)]
struct Store {
    bytes: Vec<u8>,
    elems: Vec<(u32, u32)>,
    segs: Vec<Seg>,
}

#[derive(Clone, Copy)]
struct Seg {
    bytes_start: u32,
    elem_start: u32,
    elem_end: u32,
}

impl Store {
    fn truncate(&mut self, n: usize) {
        if let Some(s) = self.segs.get(n) {
            self.bytes.truncate(s.bytes_start as usize);
            self.elems.truncate(s.elem_start as usize);
            self.segs.truncate(n);
        }
    }
    fn push(&mut self, seg: &[u8], split: &[(u32, u32)]) {
        let base = self.bytes.len() as u32;
        let elem_start = self.elems.len() as u32;
        self.bytes.extend_from_slice(seg);
        self.elems.extend(split.iter().map(|(s, e)| (base + s, base + e)));
        self.segs.push(Seg {
            bytes_start: base,
            elem_start,
            elem_end: self.elems.len() as u32,
        });
    }
    fn element(&self, seg: usize, n: usize) -> Option<&[u8]> {
        let s = self.segs[seg];
        let k = s.elem_start as usize + n;
        if k >= s.elem_end as usize {
            return None;
        }
        let (a, b) = self.elems[k];
        Some(&self.bytes[a as usize..b as usize])
    }
    fn id(&self, seg: usize) -> &[u8] {
        self.element(seg, 0).unwrap_or(&[])
    }
}

struct Loop {
    id: u64,
    start: usize,
}

struct Record {
    /// Index in the store of the record's HL.
    start: usize,
    segment: u32,
    /// Position of the record's loop on the stack.
    depth: usize,
}

/// What the reader produces next.
#[derive(Debug)]
pub enum X12Next {
    /// A record; its values are in the row passed to [`X12Reader::next`].
    Record(Locator),
    /// A broken envelope, passed over whole.
    Rejected { locator: Locator, reason: String },
}

/// Pass 2: yields records, with each column's path resolved into a [`Row`].
pub struct X12Reader {
    tok: Tokenizer<File>,
    file: String,
    verdicts: Verdicts,
    fmt: X12Format,
    paths: Vec<X12Path>,
    n: Counters,
    isa13: Ctl,
    gs06: Ctl,
    st02: Ctl,
    st01: Vec<u8>,
    /// Where the current envelope level is being skipped, and why.
    skip: Skip,
    in_set: bool,
    set_segment: u32,
    store: Store,
    header_end: Option<usize>,
    stack: Vec<Loop>,
    record: Option<Record>,
    /// HL01s of the open record and its descendants (reused, no allocation per record).
    record_ids: Vec<u64>,
    emitted_in_set: bool,
    /// The current segment was not consumed yet (a record was emitted first).
    replay: bool,
    split: Vec<(u32, u32)>,
    pending: Option<X12Next>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Skip {
    None,
    Interchange,
    Group,
    Set,
}

impl X12Reader {
    /// Validates the file (pass 1), then opens it for records.
    pub fn open(path: &Path, fmt: &X12Format, paths: Vec<X12Path>) -> Result<X12Reader, ParseError> {
        let verdicts = validate(path, fmt)?;
        let file = file_label(path);
        let f = File::open(path).map_err(|source| ParseError::Io {
            file: file.clone(),
            source,
        })?;
        Ok(X12Reader {
            tok: Tokenizer::new(f, fmt),
            file,
            verdicts,
            fmt: fmt.clone(),
            paths,
            n: Counters::default(),
            isa13: Ctl::default(),
            gs06: Ctl::default(),
            st02: Ctl::default(),
            st01: Vec::new(),
            skip: Skip::None,
            in_set: false,
            set_segment: 0,
            store: Store::default(),
            header_end: None,
            stack: Vec::new(),
            record: None,
            record_ids: Vec::with_capacity(16),
            emitted_in_set: false,
            replay: false,
            split: Vec::with_capacity(32),
            pending: None,
        })
    }

    pub fn verdicts(&self) -> &Verdicts {
        &self.verdicts
    }

    fn locator(&self, segment: u32) -> Locator {
        Locator::X12 {
            isa13: self.isa13,
            gs06: self.gs06,
            st02: self.st02,
            segment,
        }
    }

    fn is_record_level(&self, level: &[u8]) -> bool {
        let level = level.trim_ascii();
        if !self.fmt.record_levels.is_empty() {
            return self.fmt.record_levels.iter().any(|l| l.as_bytes() == level);
        }
        match self.st01.as_slice() {
            b"278" => level == b"EV",
            _ => level == b"22" || level == b"23",
        }
    }

    /// Reads up to the next record or reject; `Ok(None)` at the end.
    pub fn next(&mut self, row: &mut Row) -> Result<Option<X12Next>, ParseError> {
        if let Some(p) = self.pending.take() {
            return Ok(Some(p));
        }
        loop {
            if !self.replay {
                let more = self.tok.next_segment().map_err(|e| token_error(&self.file, e))?;
                if !more {
                    return Ok(None);
                }
            }
            self.replay = false;
            self.tok.split(&mut self.split);
            let id = self.tok.id();
            match id {
                b"ISA" => {
                    self.n.interchange += 1;
                    self.isa13 = Ctl::new(elem(self.tok.segment(), &self.split, 13));
                    self.gs06 = Ctl::default();
                    self.st02 = Ctl::default();
                    self.store.segs.clear();
                    self.store.bytes.clear();
                    self.store.elems.clear();
                    self.store.push(self.tok.segment(), &self.split);
                    self.skip = Skip::None;
                    if let Some(reason) = self.verdicts.bad_interchanges.get(&self.n.interchange) {
                        self.skip = Skip::Interchange;
                        return Ok(Some(X12Next::Rejected {
                            locator: self.locator(0),
                            reason: reason.clone(),
                        }));
                    }
                }
                b"GS" => {
                    self.n.group += 1;
                    if self.skip == Skip::Interchange {
                        continue;
                    }
                    self.skip = Skip::None;
                    self.gs06 = Ctl::new(elem(self.tok.segment(), &self.split, 6));
                    self.st02 = Ctl::default();
                    self.store.truncate(1);
                    self.store.push(self.tok.segment(), &self.split);
                    if let Some(reason) = self.verdicts.bad_groups.get(&self.n.group) {
                        self.skip = Skip::Group;
                        return Ok(Some(X12Next::Rejected {
                            locator: self.locator(0),
                            reason: reason.clone(),
                        }));
                    }
                }
                b"ST" => {
                    self.n.set += 1;
                    if matches!(self.skip, Skip::Interchange | Skip::Group) {
                        continue;
                    }
                    self.skip = Skip::None;
                    self.st02 = Ctl::new(elem(self.tok.segment(), &self.split, 2));
                    self.st01.clear();
                    self.st01
                        .extend_from_slice(elem(self.tok.segment(), &self.split, 1).trim_ascii());
                    self.set_segment = 1;
                    if let Some(reason) = self.verdicts.bad_sets.get(&self.n.set) {
                        self.skip = Skip::Set;
                        return Ok(Some(X12Next::Rejected {
                            locator: self.locator(1),
                            reason: reason.clone(),
                        }));
                    }
                    self.in_set = true;
                    self.store.truncate(2);
                    self.store.push(self.tok.segment(), &self.split);
                    self.header_end = None;
                    self.stack.clear();
                    self.record = None;
                    self.emitted_in_set = false;
                }
                _ if self.skip != Skip::None || !self.in_set => {
                    if id == b"SE" && self.skip == Skip::Set {
                        self.skip = Skip::None;
                    }
                }
                b"SE" => {
                    self.set_segment += 1;
                    self.in_set = false;
                    if self.record.is_some() {
                        let r = self.record.take().expect("checked: a record is open");
                        self.project(row, r.start, r.depth);
                        return Ok(Some(X12Next::Record(self.locator(r.segment))));
                    }
                    if !self.emitted_in_set {
                        // A set with no record-level HL is one record as a whole.
                        self.project(row, 2, 0);
                        return Ok(Some(X12Next::Record(self.locator(1))));
                    }
                }
                b"HL" => {
                    let seg = self.tok.segment();
                    let hl = parse_u64(elem(seg, &self.split, 1)).unwrap_or(0);
                    let parent = parse_u64(elem(seg, &self.split, 2));
                    let level_is_record = self.is_record_level(elem(seg, &self.split, 3));
                    if self.record.is_some() {
                        if parent.is_some_and(|p| self.record_ids.contains(&p)) {
                            self.record_ids.push(hl);
                            self.set_segment += 1;
                            self.store.push(self.tok.segment(), &self.split);
                            continue;
                        }
                        // The record is complete: emit it, then see this HL again.
                        let r = self.record.take().expect("checked: a record is open");
                        self.project(row, r.start, r.depth);
                        self.replay = true;
                        return Ok(Some(X12Next::Record(self.locator(r.segment))));
                    }
                    self.set_segment += 1;
                    if self.header_end.is_none() {
                        self.header_end = Some(self.store.segs.len());
                    }
                    let mut cut = None;
                    match parent {
                        None => {
                            cut = self.stack.first().map(|l| l.start);
                            self.stack.clear();
                        }
                        Some(p) => {
                            while self.stack.last().is_some_and(|l| l.id != p) {
                                cut = self.stack.pop().map(|l| l.start);
                            }
                        }
                    }
                    if let Some(c) = cut {
                        self.store.truncate(c);
                    }
                    let start = self.store.segs.len();
                    self.stack.push(Loop { id: hl, start });
                    self.store.push(self.tok.segment(), &self.split);
                    if level_is_record {
                        self.record_ids.clear();
                        self.record_ids.push(hl);
                        self.record = Some(Record {
                            start,
                            segment: self.set_segment,
                            depth: self.stack.len() - 1,
                        });
                        self.emitted_in_set = true;
                    }
                }
                _ => {
                    self.set_segment += 1;
                    self.store.push(self.tok.segment(), &self.split);
                }
            }
        }
    }

    /// Resolves every path against the record starting at store index
    /// `start`, whose loop sits at `depth` on the stack.
    fn project(&self, row: &mut Row, start: usize, depth: usize) {
        row.clear();
        let delims = self.tok.delims().unwrap_or(Delims {
            element: b'*',
            component: Some(b':'),
            repetition: None,
            terminator: b'~',
        });
        for path in &self.paths {
            row.begin_value();
            if let Some(seg) = self.find(path, start, depth) {
                let raw = self.store.element(seg, path.element).unwrap_or(&[]);
                write_element(row.text_mut(), raw, path, delims);
            }
            row.end_value();
        }
    }

    /// The first segment matching `path`: in the record, then in its
    /// ancestor loops (nearest first), then in the set header, GS and ISA.
    fn find(&self, path: &X12Path, start: usize, depth: usize) -> Option<usize> {
        let s = &self.store;
        let matches = |i: usize| {
            s.id(i) == path.segment.as_bytes()
                && path
                    .qualifier
                    .as_ref()
                    .is_none_or(|(n, v)| s.element(i, *n).is_some_and(|e| e.trim_ascii() == v.as_bytes()))
        };
        if let Some(i) = (start..s.segs.len()).find(|i| matches(*i)) {
            return Some(i);
        }
        for k in (0..depth.min(self.stack.len())).rev() {
            let from = self.stack[k].start;
            let to = self.stack.get(k + 1).map_or(s.segs.len(), |l| l.start);
            if let Some(i) = (from..to).find(|i| matches(*i)) {
                return Some(i);
            }
        }
        let header_end = self.header_end.unwrap_or(start).min(s.segs.len());
        (2.min(header_end)..header_end)
            .find(|i| matches(*i))
            .or_else(|| (0..2.min(s.segs.len())).rev().find(|i| matches(*i)))
    }
}
