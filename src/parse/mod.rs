//! Parsing partner files into records, streamed, each with its position.
//!
//! A parser yields records one at a time into a reused buffer; nothing here
//! holds a whole file. Every record carries a locator (`line 14`) so that a
//! rejected record can be found in the original file.

pub mod csv;

use std::fmt;

/// Where a record sits in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locator {
    /// A physical 1-based line (CSV, XML): the line the record starts on.
    Line(u64),
}

impl fmt::Display for Locator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Locator::Line(n) => write!(f, "line {n}"),
        }
    }
}

/// A borrowed view of one record's fields, by physical position.
#[derive(Debug, Clone, Copy)]
pub enum Fields<'r> {
    Csv(&'r ::csv::ByteRecord),
}

impl<'r> Fields<'r> {
    /// Raw bytes of field `index`, `None` past the end of a short row.
    pub fn get(&self, index: usize) -> Option<&'r [u8]> {
        match self {
            Fields::Csv(r) => r.get(index),
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
}
