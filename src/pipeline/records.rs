//! The parse step's side of the pipeline: one enum over the format readers
//! (a closed set), so the producer asks every format the same questions —
//! the next header or record and its locator, its fields, whether it is
//! blank, what the parser warned about.

use crate::map::{FieldPath, Mapping};
use crate::parse::csv::CsvReader;
use crate::parse::excel::{ExcelNext, ExcelReader};
use crate::parse::x12::{X12Next, X12Reader};
use crate::parse::xml::XmlReader;
use crate::parse::{Fields, Locator, ParseError, Row};
use crate::setup::{Connector, Format};

/// What a record source yields next.
pub(super) enum Next {
    /// The records that follow belong to `part`; bind its mapping to this
    /// header (`None`: columns are addressed by path, in mapping order).
    Header {
        part: usize,
        /// Prefix for header errors, e.g. "sheet `PA`: ".
        label: String,
        header: Option<Vec<String>>,
    },
    Record {
        locator: Locator,
        part: usize,
    },
    /// A unit the parser refused as a whole (a broken X12 envelope).
    Rejected {
        locator: Locator,
        reason: String,
    },
}

/// The record source of one file: a closed set of formats, so an enum.
pub(super) enum Records {
    Csv {
        reader: CsvReader,
        rec: csv::ByteRecord,
        header: Option<Vec<String>>,
    },
    Excel(ExcelReader),
    X12 {
        reader: X12Reader,
        row: Row,
        header_sent: bool,
    },
    Xml {
        reader: XmlReader,
        row: Row,
        header_sent: bool,
    },
}

fn paths_of(mapping: &Mapping) -> (Vec<crate::parse::x12::X12Path>, Vec<crate::parse::xml::XmlPath>) {
    let mut x12 = Vec::new();
    let mut xml = Vec::new();
    for c in &mapping.columns {
        match &c.path {
            Some(FieldPath::X12(p)) => x12.push(p.clone()),
            Some(FieldPath::Xml(p)) => xml.push(p.clone()),
            None => {}
        }
    }
    (x12, xml)
}

impl Records {
    pub(super) fn open(connector: &Connector, path: &std::path::Path) -> Result<Records, ParseError> {
        Ok(match &connector.format {
            Format::Csv(fmt) => {
                let reader = CsvReader::open(path, fmt)?;
                let header = Some(reader.header().to_vec());
                Records::Csv {
                    reader,
                    rec: csv::ByteRecord::new(),
                    header,
                }
            }
            Format::Excel(rules) => Records::Excel(ExcelReader::open(
                path,
                rules.iter().map(|(r, _)| r.clone()).collect(),
            )?),
            Format::X12(fmt) => Records::X12 {
                reader: X12Reader::open(path, fmt, paths_of(&connector.mapping).0)?,
                row: Row::new(),
                header_sent: false,
            },
            Format::Xml(fmt) => Records::Xml {
                reader: XmlReader::open(path, fmt, paths_of(&connector.mapping).1)?,
                row: Row::new(),
                header_sent: false,
            },
        })
    }

    pub(super) fn next(&mut self) -> Result<Option<Next>, ParseError> {
        match self {
            // X12 and XML address columns by path, so their one header
            // carries no names; it goes out once, before the first record.
            Records::X12 { header_sent, .. } | Records::Xml { header_sent, .. } if !*header_sent => {
                *header_sent = true;
                Ok(Some(Next::Header {
                    part: 0,
                    label: String::new(),
                    header: None,
                }))
            }
            Records::Csv { reader, rec, header } => {
                if let Some(h) = header.take() {
                    return Ok(Some(Next::Header {
                        part: 0,
                        label: String::new(),
                        header: Some(h),
                    }));
                }
                Ok(reader
                    .next_record(rec)?
                    .map(|locator| match reader.unbalanced_quote(rec) {
                        Some(reason) => Next::Rejected { locator, reason },
                        None => Next::Record { locator, part: 0 },
                    }))
            }
            Records::Excel(r) => Ok(r.read_next()?.map(|n| match n {
                ExcelNext::Header { part, sheet, header } => Next::Header {
                    part,
                    label: format!("sheet `{sheet}`: "),
                    header: Some(header),
                },
                ExcelNext::Record { part, locator } => Next::Record { locator, part },
            })),
            Records::X12 { reader, row, .. } => Ok(reader.next(row)?.map(|n| match n {
                X12Next::Record(locator) => Next::Record { locator, part: 0 },
                X12Next::Rejected { locator, reason } => Next::Rejected { locator, reason },
            })),
            Records::Xml { reader, row, .. } => {
                Ok(reader.next(row)?.map(|locator| Next::Record { locator, part: 0 }))
            }
        }
    }

    /// What the parser warned about (read to the end): hidden sheets
    /// skipped, a document with no record element under `no_records = "warn"`.
    pub(super) fn warnings(&self) -> Vec<String> {
        match self {
            Records::Excel(r) => r.warnings().to_vec(),
            Records::Xml { reader, .. } => reader.warnings().to_vec(),
            // Envelope versions that disagree, from pass 1.
            Records::X12 { reader, .. } => reader.verdicts().warnings.clone(),
            Records::Csv { .. } => Vec::new(),
        }
    }

    /// The current record's fields.
    pub(super) fn fields(&self) -> Fields<'_> {
        match self {
            Records::Csv { rec, .. } => Fields::csv(rec),
            Records::Excel(r) => Fields::Row(r.row()),
            Records::X12 { row, .. } | Records::Xml { row, .. } => Fields::Row(row),
        }
    }

    /// Whether the current record is blank (a blank CSV line). Blank sheet
    /// rows never reach here; X12 and XML records are never blank.
    pub(super) fn is_blank(&self) -> bool {
        match self {
            Records::Csv { rec, .. } => rec.iter().all(|f| f.iter().all(u8::is_ascii_whitespace)),
            _ => false,
        }
    }
}

/// The mapping of `part`: an Excel sheet rule's, else the connector's.
pub(super) fn part_mapping(connector: &Connector, part: usize) -> &Mapping {
    match &connector.format {
        Format::Excel(rules) => rules.get(part).map_or(&connector.mapping, |(_, m)| m),
        _ => &connector.mapping,
    }
}
