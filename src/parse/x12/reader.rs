//! Pass 2: the record reader. Yields natural record units, holding only the
//! current record, its ancestor loops and the envelope headers.

use std::fs::File;
use std::path::Path;

use super::super::{file_label, Ctl, Locator, ParseError, Row};
use super::envelope::{token_error, Counters};
use super::paths::write_element;
use std::ops::Range;

use super::guides::{self, LoopDef, Start, Transaction, Unit};
use super::{elem, parse_u64, show, validate, Delims, Tokenizer, Verdicts, X12Format, X12Path};

// ---------------------------------------------------------------- records

/// The loop tag of segments that belong to no loop of a known table (the
/// envelope, a transaction without a table, an HL level the table lacks).
const NO_LOOP: u16 = u16::MAX;
/// A path scoped to a loop the current transaction does not have: matches nothing.
const ABSENT_LOOP: u16 = u16::MAX - 1;
/// A path without a scope: any loop.
const ANY_LOOP: u16 = u16::MAX - 2;

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
    /// Index of the segment's loop in the transaction's table, or [`NO_LOOP`].
    tag: u16,
}

impl Store {
    fn truncate(&mut self, n: usize) {
        if let Some(s) = self.segs.get(n) {
            self.bytes.truncate(s.bytes_start as usize);
            self.elems.truncate(s.elem_start as usize);
            self.segs.truncate(n);
        }
    }
    fn clear(&mut self) {
        self.segs.clear();
        self.bytes.clear();
        self.elems.clear();
    }
    fn push(&mut self, seg: &[u8], split: &[(u32, u32)], tag: u16) {
        let base = self.bytes.len() as u32;
        let elem_start = self.elems.len() as u32;
        self.bytes.extend_from_slice(seg);
        self.elems.extend(split.iter().map(|(s, e)| (base + s, base + e)));
        self.segs.push(Seg {
            bytes_start: base,
            elem_start,
            elem_end: self.elems.len() as u32,
            tag,
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

/// An open loop.
#[derive(Clone, Copy)]
struct Open {
    /// Index in the table, or [`NO_LOOP`].
    def: u16,
    /// HL01 for an HL loop.
    hl: Option<u64>,
    /// Store index of its first segment.
    start: usize,
    unit: Unit,
}

struct Record {
    /// Index in the store of the record's first segment.
    start: usize,
    segment: u32,
    /// Position of the record's loop on the stack.
    depth: usize,
}

/// Which segments one projection reads.
struct View {
    own: Range<usize>,
    /// For a sub-record (a 278 service): its record's own segments.
    parent: Option<Range<usize>>,
    /// Stack entries below this are ancestor loops.
    depth: usize,
}

/// Sub-records still to emit after their record: store ranges.
#[derive(Default)]
struct Subs {
    /// (store start, set segment number) of each sub loop in the open record.
    starts: Vec<(usize, u32)>,
    /// Once the record is emitted: its start and depth, its end, the next to emit.
    emitting: Option<(usize, usize, usize, usize)>,
    /// The sub loops are lines: the record is not emitted as a whole.
    lines: bool,
}

/// What the reader produces next.
#[derive(Debug)]
pub enum X12Next {
    /// A record; its values are in the row passed to [`X12Reader::next`].
    Record(Locator),
    /// A broken envelope, passed over whole, or a transaction set this
    /// connector does not accept.
    Rejected { locator: Locator, reason: String },
}

/// Pass 2: yields records, with each column's path resolved into a [`Row`].
pub struct X12Reader {
    tok: Box<Tokenizer<File>>,
    file: String,
    verdicts: Box<Verdicts>,
    fmt: Box<X12Format>,
    paths: Vec<X12Path>,
    /// Per path, its scope's loop index in the current set's table.
    scopes: Vec<u16>,
    n: Counters,
    isa13: Ctl,
    gs06: Ctl,
    st02: Ctl,
    st01: Vec<u8>,
    table: Option<&'static Transaction>,
    /// Where the current envelope level is being skipped, and why.
    skip: Skip,
    in_set: bool,
    set_segment: u32,
    store: Store,
    stack: Vec<Open>,
    record: Option<Record>,
    subs: Subs,
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

/// Where a segment goes: keep `keep` loops of the stack, then open `push`.
struct Placement {
    keep: usize,
    push: Option<Open>,
    tag: u16,
}

impl X12Reader {
    /// Validates the file (pass 1), then opens it for records.
    pub fn open(path: &Path, fmt: &X12Format, paths: Vec<X12Path>) -> Result<X12Reader, ParseError> {
        let verdicts = validate(path, fmt)?;
        let file = file_label(path);
        for w in &verdicts.warnings {
            tracing::warn!(file = %file, "{w}");
        }
        let f = File::open(path).map_err(|source| ParseError::Io {
            file: file.clone(),
            source,
        })?;
        Ok(X12Reader {
            tok: Box::new(Tokenizer::new(f, fmt)),
            file,
            verdicts: Box::new(verdicts),
            fmt: Box::new(fmt.clone()),
            scopes: vec![ANY_LOOP; paths.len()],
            paths,
            n: Counters::default(),
            isa13: Ctl::default(),
            gs06: Ctl::default(),
            st02: Ctl::default(),
            st01: Vec::new(),
            table: None,
            skip: Skip::None,
            in_set: false,
            set_segment: 0,
            store: Store::default(),
            stack: Vec::with_capacity(16),
            record: None,
            subs: Subs::default(),
            emitted_in_set: false,
            replay: false,
            split: Vec::with_capacity(32),
            pending: None,
        })
    }

    pub fn verdicts(&self) -> &Verdicts {
        &self.verdicts
    }

    /// Skips the rest of what `skip` names and reports it refused, at
    /// `segment` of the set.
    fn rejected(&mut self, skip: Skip, segment: u32, reason: String) -> X12Next {
        self.skip = skip;
        X12Next::Rejected {
            locator: self.locator(segment),
            reason,
        }
    }

    fn locator(&self, segment: u32) -> Locator {
        Locator::X12 {
            isa13: self.isa13,
            gs06: self.gs06,
            st02: self.st02,
            segment,
        }
    }

    /// The unit of an HL loop: the connector's `record_levels` when set, else the table's.
    fn hl_unit(&self, level: &[u8], def: Option<&LoopDef>) -> Unit {
        let level = level.trim_ascii();
        let table_unit = def.map(|d| d.unit);
        if !self.fmt.record_levels.is_empty() {
            if self.fmt.record_levels.iter().any(|l| l.as_bytes() == level) {
                return Unit::Record;
            }
            return match table_unit {
                Some(Unit::Sub) => Unit::Sub,
                _ => Unit::Context,
            };
        }
        match table_unit {
            Some(u) => u,
            // No table: the subscriber and the dependent are records.
            None if level == b"22" || level == b"23" => Unit::Record,
            None => Unit::Context,
        }
    }

    /// Where the current segment belongs (nothing is changed yet).
    fn place(&self) -> Placement {
        let seg = self.tok.segment();
        let e = |n: usize| elem(seg, &self.split, n);
        let top = self.stack.len();
        if self.tok.id() == b"HL" {
            let hl = parse_u64(e(1)).unwrap_or(0);
            let parent = parse_u64(e(2));
            // HL02 names the parent: keep the stack up to it (its non-HL
            // children stay in the store as part of it).
            let keep = match parent {
                None => 1.min(top),
                Some(p) => self
                    .stack
                    .iter()
                    .rposition(|o| o.hl == Some(p))
                    .map_or(1.min(top), |i| i + 1),
            };
            let level = e(3).trim_ascii();
            let def = self.table.and_then(|t| t.hl_loop(level));
            let unit = self.hl_unit(level, def.and_then(|i| self.table.map(|t| &t.loops[i])));
            let tag = def.map_or(NO_LOOP, |i| i as u16);
            return Placement {
                keep,
                push: Some(Open {
                    def: tag,
                    hl: Some(hl),
                    start: self.store.segs.len(),
                    unit,
                }),
                tag,
            };
        }
        let current = self.stack.last().map_or(NO_LOOP, |o| o.def);
        let Some(t) = self.table else {
            return Placement {
                keep: top,
                push: None,
                tag: current,
            };
        };
        let id = self.tok.id();
        // From the innermost loop out, but not past the innermost HL loop:
        // a segment never moves back up into an enclosing HL level.
        let floor = self.stack.iter().rposition(|o| o.hl.is_some()).unwrap_or(0);
        for k in (floor..top).rev() {
            let d = self.stack[k].def;
            let Some(def) = t.loops.get(d as usize) else {
                continue;
            };
            let child = t
                .loops
                .iter()
                .position(|c| c.parent == Some(def.id) && starts(c, id, |n| e(n)));
            if let Some(c) = child {
                return Placement {
                    keep: k + 1,
                    push: Some(Open {
                        def: c as u16,
                        hl: None,
                        start: self.store.segs.len(),
                        unit: t.loops[c].unit,
                    }),
                    tag: c as u16,
                };
            }
            if !starts(def, id, |n| e(n)) && def.segments.iter().any(|s| s.as_bytes() == id) {
                return Placement {
                    keep: k + 1,
                    push: None,
                    tag: d,
                };
            }
        }
        // A segment the table does not place: it stays where it is.
        Placement {
            keep: top,
            push: None,
            tag: current,
        }
    }

    /// Reads up to the next record or reject; `Ok(None)` at the end.
    pub fn next(&mut self, row: &mut Row) -> Result<Option<X12Next>, ParseError> {
        if let Some(p) = self.pending.take() {
            return Ok(Some(p));
        }
        if let Some(next) = self.next_sub(row) {
            return Ok(Some(next));
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
                    self.store.clear();
                    self.store.push(self.tok.segment(), &self.split, NO_LOOP);
                    self.skip = Skip::None;
                    if let Some(reason) = self.verdicts.bad_interchanges.get(&self.n.interchange) {
                        return Ok(Some(self.rejected(Skip::Interchange, 0, reason.clone())));
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
                    self.store.push(self.tok.segment(), &self.split, NO_LOOP);
                    if let Some(reason) = self.verdicts.bad_groups.get(&self.n.group) {
                        return Ok(Some(self.rejected(Skip::Group, 0, reason.clone())));
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
                    let bad = self.verdicts.bad_sets.get(&self.n.set).cloned();
                    if let Some(reason) = bad.or_else(|| self.refused_set()) {
                        return Ok(Some(self.rejected(Skip::Set, 1, reason)));
                    }
                    self.table = guides::transaction(&self.st01);
                    for (scope, path) in self.scopes.iter_mut().zip(&self.paths) {
                        *scope = match (&path.scope, self.table) {
                            (None, _) => ANY_LOOP,
                            (Some(l), Some(t)) => t.loop_index(l).map_or(ABSENT_LOOP, |i| i as u16),
                            (Some(_), None) => ABSENT_LOOP,
                        };
                    }
                    self.in_set = true;
                    self.store.truncate(2);
                    let root = self.table.map_or(NO_LOOP, |_| 0);
                    self.stack.clear();
                    self.stack.push(Open {
                        def: root,
                        hl: None,
                        start: self.store.segs.len(),
                        unit: Unit::Context,
                    });
                    self.store.push(self.tok.segment(), &self.split, root);
                    self.record = None;
                    self.subs.starts.clear();
                    self.subs.lines = false;
                    self.emitted_in_set = false;
                }
                _ if self.skip != Skip::None || !self.in_set => {
                    if id == b"SE" && self.skip == Skip::Set {
                        self.skip = Skip::None;
                    }
                }
                b"SE" => {
                    if self.record.is_some() {
                        let out = self.emit_record(row);
                        self.replay = true;
                        return Ok(Some(out));
                    }
                    self.set_segment += 1;
                    self.in_set = false;
                    if !self.emitted_in_set {
                        // A set with no record loop is one record as a whole.
                        let view = View {
                            own: 2.min(self.store.segs.len())..self.store.segs.len(),
                            parent: None,
                            depth: 0,
                        };
                        self.project(row, &view);
                        return Ok(Some(X12Next::Record(self.locator(1))));
                    }
                }
                _ => {
                    if let Some(reason) = self.refused_purpose() {
                        if self.record.is_none() {
                            self.in_set = false;
                            return Ok(Some(self.rejected(Skip::Set, self.set_segment + 1, reason)));
                        }
                    }
                    let p = self.place();
                    if let Some(r) = &self.record {
                        let closes = p.keep <= r.depth || p.push.is_some_and(|o| o.unit == Unit::Record);
                        if closes {
                            let out = self.emit_record(row);
                            self.replay = true;
                            return Ok(Some(out));
                        }
                    }
                    self.set_segment += 1;
                    // Popped HL and record loops leave the store; closed
                    // non-HL loops stay, as part of their enclosing loop.
                    // Nothing inside the open record goes (a 278's first
                    // service, when its second starts): the record is cut
                    // as a whole once it is emitted.
                    let keep_from = self.record.as_ref().map_or(usize::MAX, |r| r.start);
                    if let Some(cut) = self.stack[p.keep.min(self.stack.len())..]
                        .iter()
                        .find(|o| o.hl.is_some() || o.unit != Unit::Context)
                        .map(|o| o.start)
                        .filter(|c| *c < keep_from)
                    {
                        self.store.truncate(cut);
                    }
                    self.stack.truncate(p.keep);
                    if let Some(mut open) = p.push {
                        open.start = self.store.segs.len();
                        self.stack.push(open);
                        match open.unit {
                            Unit::Record => {
                                self.record = Some(Record {
                                    start: open.start,
                                    segment: self.set_segment,
                                    depth: self.stack.len() - 1,
                                });
                                self.subs.starts.clear();
                                self.subs.lines = false;
                                self.emitted_in_set = true;
                            }
                            Unit::Sub | Unit::Line if self.record.is_some() => {
                                self.subs.lines |= open.unit == Unit::Line;
                                self.subs.starts.push((open.start, self.set_segment));
                            }
                            _ => {}
                        }
                    }
                    self.store.push(self.tok.segment(), &self.split, p.tag);
                }
            }
        }
    }

    /// A set whose ST01 the connector does not accept.
    fn refused_set(&self) -> Option<String> {
        let accepted = &self.fmt.transaction_sets;
        if accepted.is_empty() || accepted.iter().any(|a| a.as_bytes() == self.st01.as_slice()) {
            return None;
        }
        let what = guides::transaction(&self.st01)
            .map(|t| format!(" ({})", t.name))
            .unwrap_or_default();
        Some(format!(
            "transaction set ST02={} (ISA13={}, GS06={}) is a {}{what}; this connector accepts {} (transaction_sets in [format])",
            self.st02,
            self.isa13,
            self.gs06,
            show(&self.st01),
            accepted.join(", ")
        ))
    }

    /// The current segment carries a purpose code (BHT02, BPT01) the
    /// connector does not accept.
    fn refused_purpose(&self) -> Option<String> {
        if self.fmt.purposes.is_empty() {
            return None;
        }
        let (seg, n) = self.table.map_or(("BHT", 2), |t| t.purpose);
        if self.tok.id() != seg.as_bytes() {
            return None;
        }
        let code = elem(self.tok.segment(), &self.split, n).trim_ascii();
        if self.fmt.purposes.iter().any(|p| p.as_bytes() == code) {
            return None;
        }
        let meaning = match (seg, code) {
            ("BHT", b"13") => " (a request)",
            ("BHT", b"11") => " (a response)",
            _ => "",
        };
        Some(format!(
            "transaction set ST02={} (ISA13={}, GS06={}): {seg}{n:02}={}{meaning} at segment {}; this connector accepts {seg}{n:02} {} (purposes in [format])",
            self.st02,
            self.isa13,
            self.gs06,
            show(code),
            self.set_segment + 1,
            self.fmt.purposes.join(", ")
        ))
    }

    /// Emits the open record; its sub-records follow on the next calls.
    fn emit_record(&mut self, row: &mut Row) -> X12Next {
        let r = self.record.take().expect("called with a record open");
        let end = self.store.segs.len();
        if self.subs.lines && !self.subs.starts.is_empty() {
            // Emitted line by line, not as a whole.
            self.subs.emitting = Some((r.start, r.depth, end, 0));
            return self
                .next_sub(row)
                .expect("a record with lines has a first line to emit");
        }
        // The record sees its own segments and its services (unscoped paths
        // find the first service's when the event has none).
        let view = View {
            own: r.start..end,
            parent: None,
            depth: r.depth,
        };
        self.project(row, &view);
        if !self.subs.starts.is_empty() {
            self.subs.emitting = Some((r.start, r.depth, end, 0));
        }
        X12Next::Record(self.locator(r.segment))
    }

    /// The next sub-record of the record just emitted.
    fn next_sub(&mut self, row: &mut Row) -> Option<X12Next> {
        let (start, depth, end, k) = self.subs.emitting?;
        let Some(&(from, segment)) = self.subs.starts.get(k) else {
            self.subs.emitting = None;
            self.subs.starts.clear();
            self.subs.lines = false;
            return None;
        };
        let to = self.subs.starts.get(k + 1).map_or(end, |s| s.0);
        let first = self.subs.starts[0].0;
        let view = View {
            own: from..to,
            parent: Some(start..first),
            depth,
        };
        self.project(row, &view);
        self.subs.emitting = Some((start, depth, end, k + 1));
        Some(X12Next::Record(self.locator(segment)))
    }

    /// Resolves every path against `view`.
    fn project(&self, row: &mut Row, view: &View) {
        row.clear();
        let delims = self.tok.delims().unwrap_or(Delims {
            element: b'*',
            component: Some(b':'),
            repetition: None,
            terminator: b'~',
        });
        for (path, scope) in self.paths.iter().zip(&self.scopes) {
            row.begin_value();
            if let Some(seg) = self.find(path, *scope, view) {
                let raw = self.store.element(seg, path.element).unwrap_or(&[]);
                write_element(row.text_mut(), raw, path, delims);
            }
            row.end_value();
        }
    }

    /// The first segment matching `path`: in the record, then (for a
    /// service) in its record, then in the ancestor loops (nearest first),
    /// then in GS and ISA. An unscoped path does not look into an ancestor
    /// that is itself a record (a dependent does not inherit its
    /// subscriber's benefits); a scoped path names its loop, wherever it is.
    fn find(&self, path: &X12Path, scope: u16, view: &View) -> Option<usize> {
        if scope == ABSENT_LOOP {
            return None;
        }
        let s = &self.store;
        let matches = |i: usize| {
            (scope == ANY_LOOP || s.segs[i].tag == scope)
                && s.id(i) == path.segment.as_bytes()
                && path
                    .qualifier
                    .as_ref()
                    .is_none_or(|(n, v)| s.element(i, *n).is_some_and(|e| e.trim_ascii() == v.as_bytes()))
        };
        let len = s.segs.len();
        let clip = |r: &Range<usize>| r.start.min(len)..r.end.min(len);
        if let Some(i) = clip(&view.own).find(|i| matches(*i)) {
            return Some(i);
        }
        if let Some(p) = &view.parent {
            if let Some(i) = clip(p).find(|i| matches(*i)) {
                return Some(i);
            }
        }
        for k in (0..view.depth.min(self.stack.len())).rev() {
            let o = &self.stack[k];
            if scope == ANY_LOOP && o.unit == Unit::Record {
                continue;
            }
            let to = self.stack.get(k + 1).map_or(len, |l| l.start);
            if let Some(i) = (o.start.min(len)..to.min(len)).find(|i| matches(*i)) {
                return Some(i);
            }
        }
        (0..2.min(len)).rev().find(|i| matches(*i))
    }
}

/// Whether segment `id` (with elements `e`) starts loop `def`.
fn starts<'a>(def: &LoopDef, id: &[u8], e: impl Fn(usize) -> &'a [u8]) -> bool {
    match def.start {
        Start::Seg {
            id: want,
            element,
            values,
        } => {
            want.as_bytes() == id
                && (values.is_empty() || values.iter().any(|v| v.as_bytes() == e(element).trim_ascii()))
        }
        Start::Root | Start::Hl(_) => false,
    }
}
