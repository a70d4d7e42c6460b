//! Parsing partner files into records, streamed, each with its position.
//!
//! A parser yields records one at a time into a reused buffer; nothing here
//! holds a whole file. Every record carries a locator (`line 14`,
//! `Referrals!7`, `000000031/31/0001#12`) so that a rejected record can be
//! found in the original file.
//!
//! CSV records are read by physical position ([`Fields::Csv`]). Excel, X12
//! and XML records are projected, once per record, into a [`Row`]: one value
//! per column the mapping reads, in a reused buffer. That keeps the mapping
//! layer format-blind: it reads field `i` whatever the file was.

pub mod csv;
pub mod excel;
pub mod x12;
pub mod xml;

use std::fmt;
use std::sync::Arc;

use chrono::NaiveDateTime;

/// Where a record sits in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locator {
    /// A physical 1-based line (CSV, XML): the line the record starts on.
    Line(u64),
    /// A worksheet and its 1-based row, as Excel shows them: `Referrals!7`.
    Cell { sheet: Arc<str>, row: u32 },
    /// An X12 transaction set and a 1-based segment number inside it (ST is
    /// segment 1, as SE01 counts): `ISA13/GS06/ST02#n`.
    X12 {
        isa13: Ctl,
        gs06: Ctl,
        st02: Ctl,
        segment: u32,
    },
}

impl fmt::Display for Locator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Locator::Line(n) => write!(f, "line {n}"),
            Locator::Cell { sheet, row } => write!(f, "{sheet}!{row}"),
            Locator::X12 {
                isa13,
                gs06,
                st02,
                segment,
            } => write!(f, "{isa13}/{gs06}/{st02}#{segment}"),
        }
    }
}

/// An X12 control number, kept inline so locators stay cheap to copy. Longer
/// values (never valid X12) are cut at 9 bytes; they only ever label.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Ctl {
    bytes: [u8; 9],
    len: u8,
}

impl Ctl {
    pub fn new(raw: &[u8]) -> Ctl {
        let raw = raw.trim_ascii();
        let len = raw.len().min(9);
        let mut bytes = [0u8; 9];
        bytes[..len].copy_from_slice(&raw[..len]);
        Ctl {
            bytes,
            len: len as u8,
        }
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

impl fmt::Display for Ctl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Control numbers are digits; anything else is shown escaped, never raw.
        for &b in self.as_bytes() {
            if b.is_ascii_graphic() {
                write!(f, "{}", b as char)?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Ctl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ctl({self})")
    }
}

/// One projected record: a value per column, in one reused text buffer.
/// Typed date cells (Excel) also keep their exact date-time, so `date()` and
/// `datetime()` never have to re-parse a rendering of them.
#[derive(Debug, Default, Clone)]
pub struct Row {
    text: String,
    spans: Vec<(u32, u32)>,
    dates: Vec<Option<NaiveDateTime>>,
    /// Values that are formulas with no calculated value (Excel): empty, but
    /// not blank cells. Almost always empty itself.
    uncalculated: Vec<u32>,
}

impl Row {
    pub fn new() -> Row {
        Row::default()
    }
    /// Empties the row, keeping its capacity.
    pub fn clear(&mut self) {
        self.text.clear();
        self.spans.clear();
        self.dates.clear();
        self.uncalculated.clear();
    }
    /// Marks value `index` as a formula that was never calculated.
    pub fn mark_uncalculated(&mut self, index: usize) {
        self.uncalculated.push(index as u32);
    }
    /// Whether value `index` is a formula with no calculated value.
    pub fn is_uncalculated(&self, index: usize) -> bool {
        self.uncalculated.contains(&(index as u32))
    }
    /// Replaces value `index` (padding with empty values up to it): a
    /// merged range's value carried down.
    pub fn set(&mut self, index: usize, value: &str, date: Option<NaiveDateTime>) {
        while self.spans.len() <= index {
            self.push("");
        }
        let start = self.text.len() as u32;
        self.text.push_str(value);
        self.spans[index] = (start, self.text.len() as u32);
        self.dates[index] = date;
        self.uncalculated.retain(|i| *i as usize != index);
    }
    /// Appends a text value.
    pub fn push(&mut self, value: &str) {
        let start = self.text.len() as u32;
        self.text.push_str(value);
        self.spans.push((start, self.text.len() as u32));
        self.dates.push(None);
    }
    /// Starts a value that the caller writes piecewise with [`Row::text_mut`],
    /// then closes with [`Row::end_value`].
    pub fn begin_value(&mut self) {
        let start = self.text.len() as u32;
        self.spans.push((start, start));
        self.dates.push(None);
    }
    pub fn text_mut(&mut self) -> &mut String {
        &mut self.text
    }
    pub fn end_value(&mut self) {
        let end = self.text.len() as u32;
        if let Some(last) = self.spans.last_mut() {
            last.1 = end;
        }
    }
    /// Appends a typed date cell: rendered as ISO 8601 text for text
    /// functions, kept exact for `date()`/`datetime()`.
    pub fn push_date(&mut self, t: NaiveDateTime) {
        use std::fmt::Write;
        let start = self.text.len() as u32;
        if t.time() == chrono::NaiveTime::MIN {
            let _ = write!(self.text, "{}", t.format("%Y-%m-%d"));
        } else {
            let _ = write!(self.text, "{}", t.format("%Y-%m-%dT%H:%M:%S"));
        }
        self.spans.push((start, self.text.len() as u32));
        self.dates.push(Some(t));
    }
    pub fn len(&self) -> usize {
        self.spans.len()
    }
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
    pub fn get(&self, index: usize) -> Option<&str> {
        let (s, e) = *self.spans.get(index)?;
        self.text.get(s as usize..e as usize)
    }
    pub fn date(&self, index: usize) -> Option<NaiveDateTime> {
        self.dates.get(index).copied().flatten()
    }
    /// Whether every value is blank (a blank spreadsheet row).
    pub fn is_blank(&self) -> bool {
        self.text.trim().is_empty()
    }
}

/// A borrowed view of one record's fields, by physical position.
#[derive(Debug, Clone, Copy)]
pub enum Fields<'r> {
    Csv {
        rec: &'r ::csv::ByteRecord,
        /// The record's field bytes, back to back, when they are valid UTF-8:
        /// validated once per record (see [`Fields::csv`]), not per read.
        text: Option<&'r str>,
    },
    Row(&'r Row),
}

/// `str::trim`, with a shortcut for the common value that starts and ends
/// with a printable ASCII character, which `trim` returns whole (no Unicode
/// white space is printable ASCII).
pub fn trim(s: &str) -> &str {
    match s.as_bytes() {
        [first, .., last] if first.is_ascii_graphic() && last.is_ascii_graphic() => s,
        [only] if only.is_ascii_graphic() => s,
        _ => s.trim(),
    }
}

impl<'r> Fields<'r> {
    /// A CSV record, its UTF-8 validated in one pass over all its fields
    /// (the mapping reads most fields, several of them more than once).
    pub fn csv(rec: &'r ::csv::ByteRecord) -> Fields<'r> {
        Fields::Csv {
            rec,
            text: std::str::from_utf8(rec.as_slice()).ok(),
        }
    }

    /// Trimmed text of field `index`, `None` past the end of a short row, an
    /// error when the field is not UTF-8.
    pub fn trimmed(&self, index: usize) -> Option<Result<&'r str, std::str::Utf8Error>> {
        match self {
            Fields::Csv { rec, text } => {
                // A slice of valid UTF-8 cut at character boundaries (which
                // `str::get` checks) is valid UTF-8: no need to look again.
                if let Some(s) = text.and_then(|t| t.get(rec.range(index)?)) {
                    return Some(Ok(trim(s)));
                }
                // Out of range, or a record with a bad byte somewhere: the
                // field's own check says which (and where, for the reject).
                rec.get(index).map(|f| std::str::from_utf8(f).map(trim))
            }
            Fields::Row(r) => r.get(index).map(|s| Ok(trim(s))),
        }
    }

    /// Whether field `index` is an Excel formula with no calculated value.
    pub fn uncalculated(&self, index: usize) -> bool {
        match self {
            Fields::Csv { .. } => false,
            Fields::Row(r) => r.is_uncalculated(index),
        }
    }

    /// The exact date-time of a typed date cell (Excel), when field `index` is one.
    pub fn date(&self, index: usize) -> Option<NaiveDateTime> {
        match self {
            Fields::Csv { .. } => None,
            Fields::Row(r) => r.date(index),
        }
    }
}

/// Errors that stop a whole file (as opposed to one bad record, which is data).
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("cannot read {file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {locator}: {reason}")]
    Malformed {
        file: String,
        locator: Locator,
        reason: String,
    },
    #[error("{file}: header: {reason}")]
    Header { file: String, reason: String },
    /// The file as a whole cannot be read as its format (a corrupt or
    /// password-protected workbook, an unreadable interchange header).
    #[error("{file}: {reason}")]
    Unreadable { file: String, reason: String },
}

/// The file name (not path) used in messages.
pub(crate) fn file_label(path: &std::path::Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(f: &Fields<'_>, i: usize) -> Option<Result<String, usize>> {
        f.trimmed(i)
            .map(|r| r.map(str::to_string).map_err(|e| e.valid_up_to()))
    }

    #[test]
    fn csv_fields_are_checked_one_by_one_whatever_the_record_as_a_whole() {
        // "é" split across two fields: the record's bytes are valid UTF-8,
        // neither field is.
        let split = ::csv::ByteRecord::from(vec![&b"a\xC3"[..], &b"\xA9b"[..], b" ok "]);
        let f = Fields::csv(&split);
        assert!(matches!(f, Fields::Csv { text: Some(_), .. }));
        for _ in 0..2 {
            assert_eq!(check(&f, 0), Some(Err(1)));
            assert_eq!(check(&f, 1), Some(Err(0)));
            assert_eq!(check(&f, 2), Some(Ok("ok".into())));
            assert_eq!(check(&f, 3), None);
        }

        let bad = ::csv::ByteRecord::from(vec![&b"caf\xE9"[..], " café\u{a0}".as_bytes(), b""]);
        let f = Fields::csv(&bad);
        assert!(matches!(f, Fields::Csv { text: None, .. }));
        assert_eq!(check(&f, 0), Some(Err(3)));
        assert_eq!(check(&f, 1), Some(Ok("café".into())));
        assert_eq!(check(&f, 2), Some(Ok("".into())));
        assert_eq!(check(&f, 3), None);
    }

    #[test]
    fn trim_shortcut_agrees_with_str_trim() {
        for s in [
            "",
            " ",
            "a",
            " a",
            "a ",
            "ab",
            "a b",
            "\u{b}a",
            "a\u{b}",
            "\u{a0}x",
            "x\u{3000}",
            "é",
            "é ",
            "\tUPS\r",
            " \u{3000} ",
        ] {
            assert_eq!(trim(s), s.trim(), "{s:?}");
        }
    }
}
