//! X12 (ASC X12 5010/4010): a byte-level streaming tokenizer, envelope
//! validation, natural record units, and the path syntax mappings use to
//! address elements.
//!
//! No crate fits (the one complete parser is GPL, another hard-codes `*` and
//! `~`), and a tokenizer is small: segments end at one terminator byte, so
//! `memchr` finds them and nothing is ever decoded that a mapping does not read.
//!
//! A file is read twice, both times streaming in a fixed buffer:
//!
//! 1. [`validate`] checks every envelope (ISA/IEA, GS/GE, ST/SE control numbers
//!    and counts, the HL parent chain) and notes which interchanges, groups
//!    and transaction sets are broken. Two passes because a broken envelope
//!    is only known at its trailer, and its records must not have been
//!    emitted by then; buffering a whole interchange instead would hold the
//!    whole file in memory.
//! 2. [`X12Reader`] yields records, skipping broken envelopes (each becomes
//!    one reject naming its reason). A record is a natural unit: a 278
//!    patient event (HL EV) with its services, a 271 subscriber or dependent
//!    (HL 22/23). While a record is read, only its own segments, its
//!    ancestor loops' segments and the envelope headers are held.
//!
//! Elements are decoded (Windows-1252, a superset of Latin-1's printable
//! range) only when a mapping reads them, one element at a time.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::path::Path;

use super::{file_label, Ctl, Locator, ParseError, Row};

// ---------------------------------------------------------------- options

/// What to do when ISA11 (repetition separator) equals ISA16 (component
/// separator). X12 has no escape, so the two cannot be told apart; a partner
/// that does this must be accepted knowingly, per connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeparatorCollision {
    /// The interchange is refused.
    #[default]
    Reject,
    /// The shared byte separates repetitions; elements have no components.
    Repetition,
    /// The shared byte separates components; elements have no repetitions.
    Component,
}

/// Validated X12 settings of one connector.
#[derive(Debug, Clone, Default)]
pub struct X12Format {
    pub collision: SeparatorCollision,
    /// Accept an ISA whose elements are not at their fixed widths (the
    /// delimiters are then found by counting separators), with a warning.
    pub lenient_isa_width: bool,
    /// HL03 level codes that start a record; empty means the default for the
    /// transaction set (278: EV; others: 22 and 23).
    pub record_levels: Vec<String>,
}

/// The fixed widths of ISA01..ISA16.
const ISA_WIDTHS: [usize; 16] = [2, 10, 2, 10, 2, 15, 2, 15, 6, 4, 1, 5, 9, 1, 1, 1];

/// The delimiters of one interchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delims {
    pub element: u8,
    pub component: Option<u8>,
    pub repetition: Option<u8>,
    pub terminator: u8,
}

// ---------------------------------------------------------------- tokenizer

/// Why tokenizing stopped.
#[derive(Debug)]
pub enum TokenError {
    Io(std::io::Error),
    /// The stream cannot be split into segments any more.
    Broken(String),
}

const BLOCK: usize = 256 * 1024;
/// An ISA is 106 bytes; with line breaks and unpadded fields it stays well
/// under this.
const ISA_MAX: usize = 512;

/// Splits a byte stream into segments, in a fixed buffer.
pub struct Tokenizer<R> {
    src: R,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    eof: bool,
    started: bool,
    delims: Option<Delims>,
    seg: Range<usize>,
    bin: bool,
    collision: SeparatorCollision,
    lenient_isa_width: bool,
    /// Segments read so far in the file (1-based number of the current one).
    pub file_segment: u64,
    /// Bytes consumed so far.
    pub consumed: u64,
}

impl<R: Read> Tokenizer<R> {
    pub fn new(src: R, fmt: &X12Format) -> Tokenizer<R> {
        Tokenizer {
            src,
            buf: vec![0; BLOCK],
            pos: 0,
            end: 0,
            eof: false,
            started: false,
            delims: None,
            seg: 0..0,
            bin: false,
            collision: fmt.collision,
            lenient_isa_width: fmt.lenient_isa_width,
            file_segment: 0,
            consumed: 0,
        }
    }

    pub fn delims(&self) -> Option<Delims> {
        self.delims
    }

    /// The current segment, without its terminator.
    pub fn segment(&self) -> &[u8] {
        &self.buf[self.seg.clone()]
    }

    /// The current segment's id (`NM1`), empty when it has none.
    pub fn id(&self) -> &[u8] {
        let s = self.segment();
        let e = self.delims.map_or(b'*', |d| d.element);
        let n = memchr::memchr(e, s).unwrap_or(s.len());
        &s[..n]
    }

    /// Splits the current segment into elements: `out[0]` is the id. Offsets
    /// are relative to [`Tokenizer::segment`].
    pub fn split(&self, out: &mut Vec<(u32, u32)>) {
        split_elements(
            self.segment(),
            self.delims.map_or(b'*', |d| d.element),
            self.bin,
            out,
        );
    }

    /// Ensures `need` bytes are buffered from `pos`, unless the input ends.
    fn fill(&mut self, need: usize) -> Result<(), TokenError> {
        while self.end - self.pos < need && !self.eof {
            if self.pos > 0 {
                self.buf.copy_within(self.pos..self.end, 0);
                self.end -= self.pos;
                self.seg = 0..0;
                self.pos = 0;
            }
            if self.end == self.buf.len() {
                // Only a BIN payload or a giant segment gets here.
                let grown = (self.buf.len() * 2).max(need);
                self.buf.resize(grown, 0);
            }
            let n = self.src.read(&mut self.buf[self.end..]).map_err(TokenError::Io)?;
            if n == 0 {
                self.eof = true;
            } else {
                self.end += n;
            }
        }
        Ok(())
    }

    fn advance(&mut self, n: usize) {
        self.pos += n;
        self.consumed += n as u64;
    }

    /// Reads the next segment; `Ok(false)` at the end of the input.
    pub fn next_segment(&mut self) -> Result<bool, TokenError> {
        if !self.started {
            self.started = true;
            self.fill(3)?;
            if self.buf[self.pos..self.end].starts_with(b"\xEF\xBB\xBF") {
                self.advance(3);
            }
        }
        // Line breaks and indentation after terminators are layout, not data.
        loop {
            self.fill(1)?;
            if self.pos == self.end {
                return Ok(false);
            }
            match self.buf[self.pos] {
                b'\r' | b'\n' | b' ' | b'\t' | 0 => self.advance(1),
                b if Some(b) == self.delims.map(|d| d.terminator) => self.advance(1),
                _ => break,
            }
        }
        self.bin = false;
        self.fill(4)?;
        let head = &self.buf[self.pos..self.end];
        if head.len() >= 4 && head.starts_with(b"ISA") && !head[3].is_ascii_alphanumeric() {
            return self.read_isa().map(|()| true);
        }
        let Some(d) = self.delims else {
            return Err(TokenError::Broken(
                "the file does not start with an ISA segment".into(),
            ));
        };
        if head.len() >= 4 && head.starts_with(b"BIN") && head[3] == d.element {
            return self.read_bin(d).map(|()| true);
        }
        // Find the terminator, refilling as needed.
        let mut scanned = 0usize;
        let seg_len = loop {
            let from = self.pos + scanned;
            if let Some(i) = memchr::memchr(d.terminator, &self.buf[from..self.end]) {
                break scanned + i;
            }
            if self.eof {
                // A last segment without its terminator is tolerated.
                break self.end - self.pos;
            }
            scanned = self.end - self.pos;
            self.fill(scanned + 1)?;
        };
        let mut seg_end = self.pos + seg_len;
        let consumed = (seg_len + 1).min(self.end - self.pos);
        if d.terminator == b'\n' && seg_end > self.pos && self.buf[seg_end - 1] == b'\r' {
            seg_end -= 1;
        }
        self.seg = self.pos..seg_end;
        self.advance(consumed);
        self.file_segment += 1;
        Ok(true)
    }

    fn read_isa(&mut self) -> Result<(), TokenError> {
        self.fill(ISA_MAX)?;
        let start = self.pos;
        let avail = &self.buf[start..self.end];
        let element = avail[3];
        // The tolerant reading: count 16 element separators; the next byte is
        // ISA16 and the one after it the terminator.
        let mut seps = Vec::with_capacity(16);
        for (i, &b) in avail.iter().enumerate().skip(3) {
            if b == element {
                seps.push(i);
                if seps.len() == 16 {
                    break;
                }
            }
        }
        if seps.len() < 16 || seps[15] + 2 >= avail.len() {
            return Err(TokenError::Broken(format!(
                "ISA at byte {} is truncated: an ISA has 16 elements",
                self.consumed
            )));
        }
        let isa16 = avail[seps[15] + 1];
        let mut terminator = avail[seps[15] + 2];
        let mut consumed = seps[15] + 3;
        if terminator == b'\r' && avail.get(seps[15] + 3) == Some(&b'\n') {
            terminator = b'\n';
            consumed += 1;
        }
        let seg_end = seps[15] + 2;
        // Element widths, ignoring line breaks some senders put inside ISA.
        let mut widths = [0usize; 16];
        for (k, w) in widths.iter_mut().enumerate() {
            let from = seps[k] + 1;
            let to = if k == 15 { seg_end } else { seps[k + 1] };
            *w = avail[from..to]
                .iter()
                .filter(|b| **b != b'\r' && **b != b'\n')
                .count();
        }
        let isa11 = {
            let from = seps[10] + 1;
            let to = seps[11];
            (to == from + 1).then(|| avail[from])
        };
        let fixed = avail.len() >= 106
            && avail[3] == element
            && avail[104] == isa16
            && avail[105] == avail[seps[15] + 2];
        if widths != ISA_WIDTHS || !fixed {
            let bad = widths.iter().zip(ISA_WIDTHS).position(|(w, want)| *w != want);
            let what = match bad {
                Some(k) => format!(
                    "ISA{:02} is {} characters wide; ISA elements are fixed width (ISA{:02} has {})",
                    k + 1,
                    widths[k],
                    k + 1,
                    ISA_WIDTHS[k]
                ),
                None => "the ISA is not 106 bytes long".into(),
            };
            if self.lenient_isa_width {
                tracing::warn!(
                    byte = self.consumed,
                    "{what}; delimiters were found by counting separators"
                );
            } else {
                return Err(TokenError::Broken(format!(
                    "broken ISA at byte {}: {what} (set lenient_isa_width = true in [format] to accept it)",
                    self.consumed
                )));
            }
        }
        if terminator == element || terminator == isa16 || isa16 == element {
            return Err(TokenError::Broken(format!(
                "ISA at byte {}: delimiters collide (element {:?}, component {:?}, terminator {:?})",
                self.consumed, element as char, isa16 as char, terminator as char
            )));
        }
        // In 00401 ISA11 is the standards id `U`, not a separator.
        let mut repetition = isa11.filter(|b| !b.is_ascii_alphanumeric() && *b != b' ');
        let mut component = Some(isa16);
        if repetition == Some(isa16) {
            match self.collision {
                SeparatorCollision::Reject => {
                    return Err(TokenError::Broken(format!(
                        "ISA at byte {}: ISA11 (repetition separator) and ISA16 (component separator) are both {:?}; \
                         set separator_collision = \"repetition\" or \"component\" in [format] to accept it",
                        self.consumed, isa16 as char
                    )))
                }
                SeparatorCollision::Repetition => component = None,
                SeparatorCollision::Component => repetition = None,
            }
        }
        if repetition == Some(element) || repetition == Some(terminator) {
            repetition = None;
        }
        self.delims = Some(Delims {
            element,
            component,
            repetition,
            terminator,
        });
        self.seg = start..start + seg_end;
        self.advance(consumed);
        self.file_segment += 1;
        Ok(())
    }

    fn read_bin(&mut self, d: Delims) -> Result<(), TokenError> {
        // BIN*<length>*<payload>: the payload may hold any byte, delimiters
        // included, so it is taken by length.
        self.fill(4 + 21)?;
        let avail = &self.buf[self.pos..self.end];
        let digits_end = avail[4..]
            .iter()
            .position(|b| *b == d.element)
            .map(|i| 4 + i)
            .filter(|e| *e > 4 && *e <= 4 + 20 && avail[4..*e].iter().all(u8::is_ascii_digit));
        let Some(digits_end) = digits_end else {
            return Err(TokenError::Broken(format!(
                "BIN segment at byte {}: BIN01 must be the payload length in digits",
                self.consumed
            )));
        };
        let len: usize = std::str::from_utf8(&avail[4..digits_end])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| TokenError::Broken("BIN01 is not a length".into()))?;
        let body = digits_end + 1 + len;
        self.fill(body + 1)?;
        if self.end - self.pos < body {
            return Err(TokenError::Broken(format!(
                "BIN segment at byte {}: BIN01 says {len} bytes but the file ends first",
                self.consumed
            )));
        }
        let after = self.buf.get(self.pos + body).copied();
        if after.is_some() && after != Some(d.terminator) {
            return Err(TokenError::Broken(format!(
                "BIN segment at byte {}: no segment terminator after its {len}-byte payload",
                self.consumed
            )));
        }
        self.seg = self.pos..self.pos + body;
        self.bin = true;
        self.advance((body + 1).min(self.end - self.pos));
        self.file_segment += 1;
        Ok(())
    }
}

/// Splits `seg` at `element`; a BIN segment splits only twice (its payload is opaque).
pub fn split_elements(seg: &[u8], element: u8, bin: bool, out: &mut Vec<(u32, u32)>) {
    out.clear();
    let mut start = 0usize;
    for i in memchr::memchr_iter(element, seg) {
        out.push((start as u32, i as u32));
        start = i + 1;
        if bin && out.len() == 2 {
            break;
        }
    }
    out.push((start as u32, seg.len() as u32));
}

fn elem<'s>(seg: &'s [u8], elems: &[(u32, u32)], n: usize) -> &'s [u8] {
    elems
        .get(n)
        .map_or(&[][..], |(s, e)| &seg[*s as usize..*e as usize])
}

fn parse_u64(b: &[u8]) -> Option<u64> {
    let t = b.trim_ascii();
    if t.is_empty() || t.len() > 18 || !t.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(t).ok()?.parse().ok()
}

/// Shows an id or control value from the envelope safely (never PHI: ids,
/// counts and control numbers only).
fn show(b: &[u8]) -> String {
    Ctl::new(b).to_string()
}

// ---------------------------------------------------------------- envelope

/// Which envelopes of a file are broken, by their ordinal in the file.
#[derive(Debug, Default)]
pub struct Verdicts {
    pub interchanges: u32,
    pub bad_interchanges: HashMap<u32, String>,
    pub bad_groups: HashMap<u32, String>,
    pub bad_sets: HashMap<u32, String>,
    pub sets: u32,
}

#[derive(Default)]
struct Counters {
    interchange: u32,
    group: u32,
    set: u32,
}

struct OpenIsa {
    ordinal: u32,
    isa13: Ctl,
    groups: u64,
    segment: u64,
}
struct OpenGs {
    ordinal: u32,
    gs06: Ctl,
    sets: u64,
}
struct OpenSt {
    ordinal: u32,
    st02: Ctl,
    segments: u64,
    last_hl: u64,
    hl_stack: Vec<u64>,
    error: Option<String>,
}

/// Pass 1: checks every envelope of the file at `path`.
pub fn validate(path: &Path, fmt: &X12Format) -> Result<Verdicts, ParseError> {
    let file = file_label(path);
    let f = File::open(path).map_err(|source| ParseError::Io {
        file: file.clone(),
        source,
    })?;
    validate_stream(f, fmt, &file)
}

fn token_error(file: &str, e: TokenError) -> ParseError {
    match e {
        TokenError::Io(source) => ParseError::Io {
            file: file.to_string(),
            source,
        },
        TokenError::Broken(reason) => ParseError::Unreadable {
            file: file.to_string(),
            reason,
        },
    }
}

pub fn validate_stream<R: Read>(src: R, fmt: &X12Format, file: &str) -> Result<Verdicts, ParseError> {
    let mut tok = Tokenizer::new(src, fmt);
    let mut v = Verdicts::default();
    let mut n = Counters::default();
    let mut isa: Option<OpenIsa> = None;
    let mut gs: Option<OpenGs> = None;
    let mut st: Option<OpenSt> = None;
    let mut elems: Vec<(u32, u32)> = Vec::with_capacity(32);
    let outside = |what: &[u8], seg: u64| ParseError::Unreadable {
        file: file.to_string(),
        reason: format!("segment {seg} ({}) is outside any interchange", show(what)),
    };
    while tok.next_segment().map_err(|e| token_error(file, e))? {
        let segno = tok.file_segment;
        let id = tok.id();
        // Inside a transaction set most segments need only be counted.
        if let Some(s) = st.as_mut() {
            if id != b"SE" && id != b"HL" && id != b"ST" && id != b"GE" && id != b"IEA" && id != b"ISA" {
                s.segments += 1;
                if !(2..=3).contains(&id.len()) || !id.iter().all(u8::is_ascii_alphanumeric) {
                    s.error
                        .get_or_insert_with(|| format!("segment {} has no valid segment id", s.segments));
                }
                continue;
            }
        }
        tok.split(&mut elems);
        let seg = tok.segment();
        let e = |k: usize| elem(seg, &elems, k);
        match tok.id() {
            b"ISA" => {
                if let Some(open) = isa.take() {
                    v.bad_interchanges.entry(open.ordinal).or_insert_with(|| {
                        format!(
                            "interchange ISA13={} has no IEA (a new ISA starts at segment {segno})",
                            open.isa13
                        )
                    });
                    close_open(&mut v, &mut gs, &mut st, "no trailer before the next ISA");
                }
                n.interchange += 1;
                v.interchanges += 1;
                isa = Some(OpenIsa {
                    ordinal: n.interchange,
                    isa13: Ctl::new(e(13)),
                    groups: 0,
                    segment: segno,
                });
            }
            b"GS" => {
                let Some(i) = isa.as_mut() else {
                    return Err(outside(b"GS", segno));
                };
                if let Some(open) = gs.take() {
                    v.bad_groups.entry(open.ordinal).or_insert_with(|| {
                        format!("group GS06={} has no GE (segment {segno} is a GS)", open.gs06)
                    });
                    if let Some(s) = st.take() {
                        v.bad_sets
                            .entry(s.ordinal)
                            .or_insert_with(|| "the set has no SE".into());
                    }
                }
                i.groups += 1;
                n.group += 1;
                gs = Some(OpenGs {
                    ordinal: n.group,
                    gs06: Ctl::new(e(6)),
                    sets: 0,
                });
            }
            b"ST" => {
                // Counted first, so that both passes number sets alike.
                n.set += 1;
                v.sets += 1;
                let Some(i) = isa.as_ref() else {
                    return Err(outside(b"ST", segno));
                };
                let Some(g) = gs.as_mut() else {
                    v.bad_interchanges.entry(i.ordinal).or_insert_with(|| {
                        format!(
                            "interchange ISA13={}: ST at segment {segno} is outside a GS/GE group",
                            i.isa13
                        )
                    });
                    continue;
                };
                if let Some(s) = st.take() {
                    v.bad_sets.entry(s.ordinal).or_insert_with(|| {
                        format!(
                            "transaction set ST02={} has no SE (segment {segno} is an ST)",
                            s.st02
                        )
                    });
                }
                g.sets += 1;
                st = Some(OpenSt {
                    ordinal: n.set,
                    st02: Ctl::new(e(2)),
                    segments: 1,
                    last_hl: 0,
                    hl_stack: Vec::new(),
                    error: None,
                });
            }
            b"HL" => {
                let Some(s) = st.as_mut() else {
                    continue;
                };
                s.segments += 1;
                let id = parse_u64(e(1));
                let parent = e(2).trim_ascii();
                let at = s.segments;
                match id {
                    Some(h) if h == s.last_hl + 1 => {
                        s.last_hl = h;
                        if parent.is_empty() {
                            s.hl_stack.clear();
                        } else {
                            let p = parse_u64(parent);
                            while s.hl_stack.last().is_some_and(|top| Some(*top) != p) {
                                s.hl_stack.pop();
                            }
                            if s.hl_stack.is_empty() {
                                s.error.get_or_insert_with(|| {
                                    format!(
                                        "HL02={} at segment {at} does not point to an open parent HL",
                                        show(parent)
                                    )
                                });
                            }
                        }
                        s.hl_stack.push(h);
                    }
                    _ => {
                        let want = s.last_hl + 1;
                        s.error.get_or_insert_with(|| {
                            format!(
                                "HL01={} at segment {at} is out of sequence (expected {want})",
                                show(e(1))
                            )
                        });
                        if let Some(h) = id {
                            s.last_hl = h;
                            s.hl_stack.push(h);
                        }
                    }
                }
            }
            b"SE" => {
                let Some(mut s) = st.take() else {
                    if let Some(i) = &isa {
                        v.bad_interchanges.entry(i.ordinal).or_insert_with(|| {
                            format!("interchange ISA13={}: SE at segment {segno} has no ST", i.isa13)
                        });
                    }
                    continue;
                };
                s.segments += 1;
                let declared = parse_u64(e(1));
                if declared != Some(s.segments) {
                    s.error.get_or_insert_with(|| {
                        format!(
                            "SE01={} but the set has {} segments including ST and SE (SE is segment {})",
                            show(e(1)),
                            s.segments,
                            s.segments
                        )
                    });
                }
                if Ctl::new(e(2)) != s.st02 {
                    s.error.get_or_insert_with(|| {
                        format!(
                            "SE02={} does not match ST02={} (SE is segment {})",
                            show(e(2)),
                            s.st02,
                            s.segments
                        )
                    });
                }
                if let Some(err) = s.error {
                    let (isa13, gs06) = (
                        isa.as_ref().map(|i| i.isa13).unwrap_or_default(),
                        gs.as_ref().map(|g| g.gs06).unwrap_or_default(),
                    );
                    v.bad_sets.insert(
                        s.ordinal,
                        format!(
                            "transaction set ST02={} (ISA13={isa13}, GS06={gs06}): {err}",
                            s.st02
                        ),
                    );
                }
            }
            b"GE" => {
                let Some(g) = gs.take() else {
                    if let Some(i) = &isa {
                        v.bad_interchanges.entry(i.ordinal).or_insert_with(|| {
                            format!("interchange ISA13={}: GE at segment {segno} has no GS", i.isa13)
                        });
                    }
                    continue;
                };
                if let Some(s) = st.take() {
                    v.bad_sets.entry(s.ordinal).or_insert_with(|| {
                        format!(
                            "transaction set ST02={} has no SE (GE at file segment {segno})",
                            s.st02
                        )
                    });
                }
                let isa13 = isa.as_ref().map(|i| i.isa13).unwrap_or_default();
                if parse_u64(e(1)) != Some(g.sets) {
                    v.bad_groups.entry(g.ordinal).or_insert_with(|| {
                        format!(
                            "group GS06={} (ISA13={isa13}): GE01={} but the group has {} transaction sets (GE at file segment {segno})",
                            g.gs06,
                            show(e(1)),
                            g.sets
                        )
                    });
                } else if Ctl::new(e(2)) != g.gs06 {
                    v.bad_groups.entry(g.ordinal).or_insert_with(|| {
                        format!(
                            "group GS06={} (ISA13={isa13}): GE02={} does not match (GE at file segment {segno})",
                            g.gs06,
                            show(e(2))
                        )
                    });
                }
            }
            b"IEA" => {
                let Some(i) = isa.take() else {
                    return Err(outside(b"IEA", segno));
                };
                close_open(&mut v, &mut gs, &mut st, "no trailer before IEA");
                if parse_u64(e(1)) != Some(i.groups) {
                    v.bad_interchanges.entry(i.ordinal).or_insert_with(|| {
                        format!(
                            "interchange ISA13={} (ISA at file segment {}): IEA01={} but the interchange has {} functional groups (IEA at file segment {segno})",
                            i.isa13, i.segment, show(e(1)), i.groups
                        )
                    });
                } else if Ctl::new(e(2)) != i.isa13 {
                    v.bad_interchanges.entry(i.ordinal).or_insert_with(|| {
                        format!(
                            "interchange ISA13={} (ISA at file segment {}): IEA02={} does not match ISA13 (IEA at file segment {segno})",
                            i.isa13, i.segment, show(e(2))
                        )
                    });
                }
            }
            other => {
                if isa.is_none() {
                    return Err(outside(other, segno));
                }
                if gs.is_none() || st.is_none() {
                    if let Some(i) = &isa {
                        let what = show(other);
                        v.bad_interchanges.entry(i.ordinal).or_insert_with(|| {
                            format!(
                                "interchange ISA13={}: segment {segno} ({what}) is outside a transaction set",
                                i.isa13
                            )
                        });
                    }
                }
            }
        }
    }
    if let Some(i) = isa.take() {
        close_open(&mut v, &mut gs, &mut st, "the file ends first");
        v.bad_interchanges
            .entry(i.ordinal)
            .or_insert_with(|| format!("interchange ISA13={} has no IEA: the file ends first", i.isa13));
    }
    if v.interchanges == 0 {
        return Err(ParseError::Unreadable {
            file: file.to_string(),
            reason: "the file holds no interchange".into(),
        });
    }
    if v.bad_interchanges.len() as u32 == v.interchanges {
        let mut reasons: Vec<(&u32, &String)> = v.bad_interchanges.iter().collect();
        reasons.sort();
        return Err(ParseError::Unreadable {
            file: file.to_string(),
            reason: reasons[0].1.clone(),
        });
    }
    Ok(v)
}

fn close_open(v: &mut Verdicts, gs: &mut Option<OpenGs>, st: &mut Option<OpenSt>, why: &str) {
    if let Some(s) = st.take() {
        v.bad_sets
            .entry(s.ordinal)
            .or_insert_with(|| format!("transaction set ST02={} has no SE: {why}", s.st02));
    }
    if let Some(g) = gs.take() {
        v.bad_groups
            .entry(g.ordinal)
            .or_insert_with(|| format!("group GS06={} has no GE: {why}", g.gs06));
    }
}

// ---------------------------------------------------------------- paths

/// Which repetition of an element a path reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rep {
    /// The element as a whole when it does not repeat, else its first repetition.
    First,
    /// The n-th (1-based) repetition.
    Nth(u8),
    /// Every repetition, joined with `,`.
    All,
}

/// A compiled X12 path: `NM1[01=IL]/NM109`, `HCR01`, `UM04.1`, `EB03#*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct X12Path {
    pub segment: String,
    pub qualifier: Option<(usize, String)>,
    pub element: usize,
    pub component: Option<usize>,
    pub repetition: Rep,
}

/// Segments a mapping may address, with their element counts (5010 with
/// 4010 extras). A path naming another segment is a load-time error, which
/// catches typos such as `HRC01`.
pub const SEGMENTS: &[(&str, usize)] = &[
    ("AAA", 4),
    ("AMT", 3),
    ("BHT", 6),
    ("BIN", 2),
    ("BPR", 21),
    ("CAS", 19),
    ("CAT", 4),
    ("CL1", 4),
    ("CLM", 20),
    ("CLP", 14),
    ("CR1", 10),
    ("CR2", 12),
    ("CR5", 18),
    ("CR6", 21),
    ("CRC", 7),
    ("DMG", 11),
    ("DSB", 8),
    ("DTM", 6),
    ("DTP", 3),
    ("EB", 14),
    ("EQ", 5),
    ("GE", 2),
    ("GS", 8),
    ("HCR", 4),
    ("HI", 12),
    ("HL", 4),
    ("HSD", 8),
    ("IEA", 2),
    ("III", 9),
    ("INS", 17),
    ("ISA", 16),
    ("K3", 3),
    ("LE", 1),
    ("LIN", 31),
    ("LQ", 2),
    ("LS", 1),
    ("LX", 1),
    ("MPI", 7),
    ("MSG", 3),
    ("N1", 6),
    ("N3", 2),
    ("N4", 7),
    ("NM1", 12),
    ("NTE", 2),
    ("PAT", 9),
    ("PER", 9),
    ("PLB", 14),
    ("PRV", 6),
    ("PTD", 5),
    ("PWK", 9),
    ("QTY", 4),
    ("REF", 4),
    ("SBR", 9),
    ("SE", 2),
    ("ST", 3),
    ("STC", 12),
    ("SV1", 21),
    ("SV2", 10),
    ("SV3", 11),
    ("SVC", 7),
    ("SVD", 7),
    ("TOO", 3),
    ("TRN", 4),
    ("UM", 10),
    ("BSN", 7),
    ("TD5", 15),
    ("DTM", 6),
];

/// Parses and checks an X12 path. Errors carry a byte span inside `src`.
pub fn parse_path(src: &str) -> Result<X12Path, (Range<usize>, String)> {
    let bad = |r: Range<usize>, m: &str| Err((r, m.to_string()));
    let s = src.trim();
    let lead = src.len() - src.trim_start().len();
    // Optional `SEG[NN=VALUE]/` selector.
    let (qualifier, rest, rest_at, sel_seg) = match s.find('/') {
        Some(slash) => {
            let sel = &s[..slash];
            let Some(open) = sel.find('[') else {
                return bad(
                    lead..lead + slash,
                    "a selector is written SEG[NN=VALUE], e.g. NM1[01=IL]",
                );
            };
            if !sel.ends_with(']') {
                return bad(lead..lead + slash, "the selector must end with `]`");
            }
            let seg = &sel[..open];
            let inner = &sel[open + 1..sel.len() - 1];
            let Some((num, value)) = inner.split_once('=') else {
                return bad(
                    lead + open..lead + slash,
                    "a selector is [NN=VALUE], e.g. [01=IL]",
                );
            };
            let Ok(n) = num.trim().parse::<usize>() else {
                return bad(
                    lead + open..lead + slash,
                    "the selector's element number must be two digits, e.g. [01=IL]",
                );
            };
            if value.is_empty() {
                return bad(lead + open..lead + slash, "the selector's value is empty");
            }
            (
                Some((n, value.to_string())),
                &s[slash + 1..],
                lead + slash + 1,
                Some((seg, lead)),
            )
        }
        None => (None, s, lead, None),
    };
    // SEGnn[.c][#r|#*]
    // Segment ids are 2-3 characters; the element number is the last two digits before `.`/`#`.
    let body_end = rest.find(['.', '#']).unwrap_or(rest.len());
    let body = &rest[..body_end];
    if body.len() < 4 || !body[body.len() - 2..].chars().all(|c| c.is_ascii_digit()) {
        return bad(
            rest_at..rest_at + body_end.max(1),
            "an element reference is a segment id and a two-digit element number, e.g. HCR01",
        );
    }
    let seg = &body[..body.len() - 2];
    let element: usize = body[body.len() - 2..]
        .parse()
        .map_err(|_| (rest_at..rest_at + body_end, "bad element number".to_string()))?;
    let Some(count) = SEGMENTS.iter().find(|(id, _)| *id == seg).map(|(_, c)| *c) else {
        let known: Vec<String> = SEGMENTS.iter().map(|(id, _)| id.to_string()).collect();
        // Transposed letters are the usual typo (HRC for HCR): prefer an anagram.
        let sorted = |s: &str| {
            let mut v: Vec<char> = s.chars().collect();
            v.sort_unstable();
            v
        };
        let hint = known
            .iter()
            .find(|k| sorted(k) == sorted(seg))
            .map(String::as_str)
            .or_else(|| crate::map::expr::closest(seg, &known))
            .map(|c| format!(" (did you mean {c}?)"))
            .unwrap_or_default();
        return bad(
            rest_at..rest_at + seg.len(),
            &format!("unknown X12 segment `{seg}`{hint}"),
        );
    };
    if element == 0 || element > count {
        return bad(
            rest_at + seg.len()..rest_at + body_end,
            &format!("{seg} has elements {seg}01..{seg}{count:02}"),
        );
    }
    if let Some((sel_seg, at)) = sel_seg {
        if sel_seg != seg {
            return bad(
                at..at + sel_seg.len(),
                &format!("the selector names {sel_seg} but the element is in {seg}"),
            );
        }
        if let Some((n, _)) = &qualifier {
            if *n == 0 || *n > count {
                return bad(
                    at..at + sel_seg.len(),
                    &format!("{seg} has elements {seg}01..{seg}{count:02}"),
                );
            }
        }
    }
    let mut component = None;
    let mut repetition = Rep::First;
    let mut tail = &rest[body_end..];
    let mut at = rest_at + body_end;
    if let Some(t) = tail.strip_prefix('.') {
        let n_end = t.find('#').unwrap_or(t.len());
        match t[..n_end].parse::<usize>() {
            Ok(c) if c >= 1 => component = Some(c),
            _ => return bad(at..at + 1 + n_end, "a component is `.N`, N from 1"),
        }
        tail = &t[n_end..];
        at += 1 + n_end;
    }
    if let Some(t) = tail.strip_prefix('#') {
        repetition = match t {
            "*" => Rep::All,
            n => match n.parse::<u8>() {
                Ok(r) if r >= 1 => Rep::Nth(r),
                _ => {
                    return bad(
                        at..at + 1 + t.len(),
                        "a repetition is `#N` (N from 1) or `#*` for all",
                    )
                }
            },
        };
    } else if !tail.is_empty() {
        return bad(at..at + tail.len(), "unexpected text after the element reference");
    }
    Ok(X12Path {
        segment: seg.to_string(),
        qualifier,
        element,
        component,
        repetition,
    })
}

impl fmt::Display for X12Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((n, v)) = &self.qualifier {
            write!(f, "{}[{n:02}={v}]/", self.segment)?;
        }
        write!(f, "{}{:02}", self.segment, self.element)?;
        if let Some(c) = self.component {
            write!(f, ".{c}")?;
        }
        match self.repetition {
            Rep::First => Ok(()),
            Rep::Nth(n) => write!(f, "#{n}"),
            Rep::All => write!(f, "#*"),
        }
    }
}

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

/// The repetitions of element `raw`, as ranges, without collecting them.
fn reps(raw: &[u8], sep: Option<u8>) -> impl Iterator<Item = Range<usize>> + '_ {
    let mut start = 0usize;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        match sep.and_then(|r| memchr::memchr(r, &raw[start..])) {
            Some(i) => {
                let r = start..start + i;
                start += i + 1;
                Some(r)
            }
            None => {
                done = true;
                Some(start..raw.len())
            }
        }
    })
}

/// Writes the part of element `raw` that `path` selects, decoded.
fn write_element(out: &mut String, raw: &[u8], path: &X12Path, d: Delims) {
    let component = |part: &'_ [u8]| -> Range<usize> {
        match (path.component, d.component) {
            (None, _) => 0..part.len(),
            (Some(1), None) => 0..part.len(),
            (Some(_), None) => 0..0,
            (Some(c), Some(sep)) => {
                let mut s = 0;
                for (k, i) in memchr::memchr_iter(sep, part).enumerate() {
                    if k + 1 == c {
                        return s..i;
                    }
                    s = i + 1;
                }
                let n = memchr::memchr_iter(sep, part).count();
                if n + 1 == c {
                    s..part.len()
                } else {
                    0..0
                }
            }
        }
    };
    match path.repetition {
        Rep::First | Rep::Nth(_) => {
            let k = match path.repetition {
                Rep::Nth(n) => n as usize - 1,
                _ => 0,
            };
            // Fast path: no repetition separator in the element.
            let part = if d.repetition.is_none_or(|r| !raw.contains(&r)) {
                if k == 0 {
                    raw
                } else {
                    &[][..]
                }
            } else {
                reps(raw, d.repetition).nth(k).map_or(&[][..], |r| &raw[r])
            };
            decode_into(out, &part[component(part)]);
        }
        Rep::All => {
            let mut first = true;
            for r in reps(raw, d.repetition) {
                let part = &raw[r];
                let c = &part[component(part)];
                if c.trim_ascii().is_empty() {
                    continue;
                }
                if !first {
                    out.push(',');
                }
                first = false;
                decode_into(out, c);
            }
        }
    }
}

/// Appends `raw` decoded: ASCII as is, anything else as Windows-1252.
fn decode_into(out: &mut String, raw: &[u8]) {
    if raw.is_ascii() {
        out.push_str(std::str::from_utf8(raw).expect("ASCII is UTF-8"));
    } else {
        let (text, _) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(raw);
        out.push_str(&text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segments(input: &[u8], fmt: &X12Format) -> Result<Vec<String>, String> {
        let mut t = Tokenizer::new(input, fmt);
        let mut out = Vec::new();
        loop {
            match t.next_segment() {
                Ok(true) => out.push(String::from_utf8_lossy(t.segment()).into_owned()),
                Ok(false) => return Ok(out),
                Err(TokenError::Broken(r)) => return Err(r),
                Err(TokenError::Io(e)) => return Err(e.to_string()),
            }
        }
    }

    pub(crate) fn isa(elem: char, rep: char, comp: char, term: char, ctl: &str) -> String {
        format!(
            "ISA{e}00{e}          {e}00{e}          {e}ZZ{e}SENDER         {e}ZZ{e}RECEIVER       {e}261122{e}0930{e}{rep}{e}00501{e}{ctl}{e}0{e}P{e}{comp}{term}",
            e = elem
        )
    }

    #[test]
    fn isa_is_106_bytes() {
        assert_eq!(isa('*', '^', ':', '~', "000000001").len(), 106);
    }

    #[test]
    fn delimiters_bom_and_layout() {
        let text = format!(
            "\u{feff}{}\r\n  GS*HI*A*B*20261122*0930*1*X*005010X217~\r\n\tST*278*0001~SE*2*0001~GE*1*1~IEA*1*000000001~\r\n",
            isa('*', '^', ':', '~', "000000001")
        );
        let segs = segments(text.as_bytes(), &X12Format::default()).expect("tokenizes");
        assert_eq!(segs.len(), 6);
        assert_eq!(segs[1], "GS*HI*A*B*20261122*0930*1*X*005010X217");
        assert_eq!(segs[2], "ST*278*0001");
    }

    #[test]
    fn newline_and_gs_terminators() {
        for term in ['\n', '\u{1d}'] {
            let text = format!(
                "{}ST*278*1{term}SE*2*1{term}",
                isa('*', '^', ':', term, "000000001")
            );
            let segs = segments(text.as_bytes(), &X12Format::default()).expect("tokenizes");
            assert_eq!(segs[1..], ["ST*278*1", "SE*2*1"]);
        }
        // CRLF after a newline terminator.
        let text = format!(
            "{}\nST*278*1\r\nSE*2*1\r\n",
            &isa('*', '^', ':', '\n', "000000001")[..105]
        );
        let segs = segments(text.as_bytes(), &X12Format::default()).expect("tokenizes");
        assert_eq!(segs[1..], ["ST*278*1", "SE*2*1"]);
    }

    #[test]
    fn bin_payload_is_read_by_length() {
        let text = format!("{}BIN*7*a~b*c:d~SE*2*1~", isa('*', '^', ':', '~', "000000001"));
        let segs = segments(text.as_bytes(), &X12Format::default()).expect("tokenizes");
        assert_eq!(segs[1], "BIN*7*a~b*c:d");
        assert_eq!(segs[2], "SE*2*1");
    }

    #[test]
    fn collision_is_refused_unless_allowed() {
        let text = isa('*', '^', '^', '~', "000000001");
        let e = segments(text.as_bytes(), &X12Format::default()).expect_err("collision");
        assert!(e.contains("ISA11"), "{e}");
        let fmt = X12Format {
            collision: SeparatorCollision::Repetition,
            ..X12Format::default()
        };
        segments(text.as_bytes(), &fmt).expect("accepted knowingly");
    }

    #[test]
    fn short_isa_is_refused_unless_lenient() {
        let text = isa('*', '^', ':', '~', "000000001").replacen("          ", "         ", 1);
        let e = segments(text.as_bytes(), &X12Format::default()).expect_err("short ISA02");
        assert!(e.contains("ISA02 is 9 characters"), "{e}");
        let fmt = X12Format {
            lenient_isa_width: true,
            ..X12Format::default()
        };
        segments(text.as_bytes(), &fmt).expect("lenient");
    }

    #[test]
    fn paths_parse_and_check() {
        let p = parse_path("NM1[01=IL]/NM109").expect("valid");
        assert_eq!(p.qualifier, Some((1, "IL".into())));
        assert_eq!(p.element, 9);
        let p = parse_path("EB[01=1]/EB03#*").expect("valid");
        assert_eq!(p.repetition, Rep::All);
        let p = parse_path("UM04.1").expect("valid");
        assert_eq!(p.component, Some(1));
        assert_eq!(parse_path("HCR01").expect("valid").segment, "HCR");
        let (_, m) = parse_path("HRC01").expect_err("typo");
        assert!(m.contains("did you mean HCR"), "{m}");
        let (_, m) = parse_path("HCR09").expect_err("past the end");
        assert!(m.contains("HCR01..HCR04"), "{m}");
        assert!(parse_path("NM1[01=IL]/REF02").is_err());
        assert_eq!(
            parse_path("EB[11=Y]/EB03#2").expect("valid").to_string(),
            "EB[11=Y]/EB03#2"
        );
    }

    #[test]
    fn element_parts() {
        let d = Delims {
            element: b'*',
            component: Some(b':'),
            repetition: Some(b'^'),
            terminator: b'~',
        };
        let get = |raw: &[u8], p: &str| {
            let mut s = String::new();
            write_element(&mut s, raw, &parse_path(p).expect("path"), d);
            s
        };
        assert_eq!(get(b"11:B", "UM04.1"), "11");
        assert_eq!(get(b"11:B", "UM04.2"), "B");
        assert_eq!(get(b"11:B", "UM04.3"), "");
        assert_eq!(get(b"1^33^88", "EB03#*"), "1,33,88");
        assert_eq!(get(b"1^33^88", "EB03#2"), "33");
        assert_eq!(get(b"1^33^88", "EB03"), "1");
        assert_eq!(get(b"Caf\xe9", "NM103"), "Café");
    }

    fn envelope(body: &str, se_count: usize) -> String {
        format!(
            "{}GS*HI*A*B*20261122*0930*7*X*005010X217~ST*278*0001~{body}SE*{se_count}*0001~GE*1*7~IEA*1*000000042~",
            isa('*', '^', ':', '~', "000000042")
        )
    }

    fn check(text: &str) -> Result<Verdicts, String> {
        validate_stream(text.as_bytes(), &X12Format::default(), "t.x12").map_err(|e| e.to_string())
    }

    #[test]
    fn good_envelope_passes() {
        let v = check(&envelope("HL*1**20*1~HL*2*1*21*1~", 4)).expect("valid");
        assert!(v.bad_sets.is_empty() && v.bad_groups.is_empty());
    }

    #[test]
    fn wrong_se_count_names_segment_and_control_numbers() {
        let v = check(&envelope("HL*1**20*1~", 9)).expect("interchange is fine");
        let r = &v.bad_sets[&1];
        assert!(
            r.contains("SE01=9") && r.contains("has 3 segments") && r.contains("ST02=0001"),
            "{r}"
        );
        assert!(r.contains("ISA13=000000042") && r.contains("GS06=7"), "{r}");
    }

    #[test]
    fn hl_chain_errors() {
        let v = check(&envelope("HL*1**20*1~HL*3*1*21*1~", 4)).expect("parses");
        assert!(
            v.bad_sets[&1].contains("HL01=3 at segment 3 is out of sequence"),
            "{}",
            v.bad_sets[&1]
        );
        let v = check(&envelope("HL*1**20*1~HL*2*5*21*1~", 4)).expect("parses");
        assert!(v.bad_sets[&1].contains("HL02=5"), "{}", v.bad_sets[&1]);
    }

    #[test]
    fn broken_interchange_fails_the_file() {
        let text = envelope("", 2).replace("IEA*1*000000042", "IEA*1*000000043");
        let e = check(&text).expect_err("IEA02 mismatch");
        assert!(
            e.contains("IEA02=000000043") && e.contains("ISA13=000000042"),
            "{e}"
        );
        let text = envelope("", 2).replace("GE*1*7", "GE*2*7");
        let v = check(&text).expect("the interchange is fine");
        assert!(v.bad_groups[&1].contains("GE01=2"), "{}", v.bad_groups[&1]);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever the delimiters and layout, the tokenizer gives back
            /// exactly the segments that were written.
            #[test]
            fn segments_round_trip(
                delims in prop::sample::select(vec![('*', '^', ':', '~'), ('~', '^', '>', '_'), ('|', '{', '}', '\n'), ('*', '^', ':', '\u{1d}')]),
                bodies in prop::collection::vec("[A-Z0-9 .-]{0,12}", 1..20),
                layout in prop::sample::select(vec!["", "\r\n", "\n  "]),
            ) {
                let (e, r, c, t) = delims;
                let mut text = String::from("\u{feff}");
                text.push_str(&isa(e, r, c, t, "000000001"));
                let mut want = Vec::new();
                for (i, b) in bodies.iter().enumerate() {
                    let seg = format!("REF{e}{i}{e}{}", b.trim());
                    text.push_str(if t == '\n' { "" } else { layout });
                    text.push_str(&seg);
                    text.push(t);
                    want.push(seg);
                }
                let got = segments(text.as_bytes(), &X12Format::default()).expect("tokenizes");
                prop_assert_eq!(&got[1..], &want[..]);
            }

            /// Arbitrary bytes never panic the tokenizer or the validator.
            #[test]
            fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
                let mut prefixed = isa('*', '^', ':', '~', "000000001").into_bytes();
                prefixed.extend_from_slice(&bytes);
                let _ = validate_stream(&prefixed[..], &X12Format::default(), "p");
                let _ = validate_stream(&bytes[..], &X12Format::default(), "p");
            }
        }
    }
}
