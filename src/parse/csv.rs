//! Streaming CSV: one reused `ByteRecord`, per-connector delimiter, quoting and
//! encoding (UTF-8 with or without BOM, Windows-1252), physical line numbers.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use encoding_rs_io::DecodeReaderBytesBuilder;

use super::{Locator, ParseError};
use crate::config::connector::{Encoding, FormatSpec};

/// Validated CSV settings of one connector.
#[derive(Debug, Clone)]
pub struct CsvFormat {
    pub delimiter: u8,
    pub quote: u8,
    pub encoding: Encoding,
    pub skip_lines: u64,
}

impl CsvFormat {
    pub fn from_spec(spec: &FormatSpec) -> Result<CsvFormat, (std::ops::Range<usize>, String)> {
        let one_byte = |s: &toml::Spanned<String>, what: &str| {
            let v = s.get_ref();
            let v = if v == "\\t" { "\t" } else { v.as_str() };
            if v.len() == 1 && v.is_ascii() {
                Ok(v.as_bytes()[0])
            } else {
                Err((s.span(), format!("{what} must be one ASCII character")))
            }
        };
        let delimiter = spec.delimiter.as_ref().map_or(Ok(b','), |d| one_byte(d, "delimiter"))?;
        let quote = spec.quote.as_ref().map_or(Ok(b'"'), |q| one_byte(q, "quote"))?;
        if delimiter == quote {
            let span = spec.quote.as_ref().or(spec.delimiter.as_ref()).map_or(0..0, |s| s.span());
            return Err((span, "quote and delimiter must differ".into()));
        }
        Ok(CsvFormat {
            delimiter,
            quote,
            encoding: spec.encoding.as_ref().map_or_else(Default::default, |e| *e.get_ref()),
            skip_lines: spec.skip_lines.as_ref().map_or(0, |s| *s.get_ref()),
        })
    }
}

/// A streaming reader over one CSV file.
pub struct CsvReader {
    inner: csv::Reader<Box<dyn Read + Send>>,
    file: String,
    /// Lines consumed before the header (title rows), added to every locator;
    /// plus one for CRLF files, whose LF the csv crate counts only once the
    /// next record has begun.
    line_offset: u64,
    header: Vec<String>,
}

/// The longest line a CSV file may have. The csv reader holds a whole
/// record in memory, so without a cap a file with no line breaks (a binary
/// file under a `.csv` name, a broken export) is read into memory whole.
pub const MAX_LINE_BYTES: usize = 32 << 20;

/// Fails the read once more than [`MAX_LINE_BYTES`] pass without a `\n`.
struct LineCap<R> {
    inner: R,
    /// Bytes since the last newline.
    run: usize,
}

impl<R: Read> Read for LineCap<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.run = match memchr::memrchr(b'\n', &buf[..n]) {
            Some(i) => n - i - 1,
            None => self.run + n,
        };
        if self.run > MAX_LINE_BYTES {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, LineTooLong));
        }
        Ok(n)
    }
}

/// The file (not the disk) is at fault: refused, never retried.
#[derive(Debug)]
struct LineTooLong;

impl std::fmt::Display for LineTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "a line longer than {} MiB: not a line-based text file?",
            MAX_LINE_BYTES >> 20
        )
    }
}

impl std::error::Error for LineTooLong {}

impl CsvReader {
    /// Opens `path`, skips title lines, and reads the header row.
    pub fn open(path: &Path, fmt: &CsvFormat) -> Result<CsvReader, ParseError> {
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let io = |source| ParseError::Io {
            file: file_name.clone(),
            source,
        };
        let f = File::open(path).map_err(io)?;
        // UTF-8 is read as bytes (validated per field, so one bad byte rejects
        // one record, not the file), with a BOM skipped by hand. Windows-1252 is
        // transcoded to UTF-8 as it streams.
        let source: Box<dyn Read + Send> = match fmt.encoding {
            Encoding::Utf8 => Box::new(f),
            Encoding::Windows1252 => Box::new(
                DecodeReaderBytesBuilder::new()
                    .encoding(Some(encoding_rs::WINDOWS_1252))
                    .bom_override(true)
                    .build(f),
            ),
        };
        let mut buffered = BufReader::with_capacity(256 * 1024, source);
        let head = buffered.fill_buf().map_err(io)?;
        if head.starts_with(b"\xEF\xBB\xBF") {
            buffered.consume(3);
        }
        for _ in 0..fmt.skip_lines {
            let mut raw = Vec::new();
            if buffered.read_until(b'\n', &mut raw).map_err(io)? == 0 {
                break;
            }
        }
        let head = buffered.fill_buf().map_err(io)?;
        let crlf = head
            .iter()
            .position(|b| *b == b'\n')
            .is_some_and(|i| i > 0 && head[i - 1] == b'\r');
        let boxed: Box<dyn Read + Send> = Box::new(LineCap {
            inner: buffered,
            run: 0,
        });
        let mut inner = csv::ReaderBuilder::new()
            .delimiter(fmt.delimiter)
            .quote(fmt.quote)
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(256 * 1024)
            .from_reader(boxed);
        let mut header_rec = csv::ByteRecord::new();
        let got = inner
            .read_byte_record(&mut header_rec)
            .map_err(|e| csv_error(&file_name, fmt.skip_lines, e))?;
        if !got {
            return Err(ParseError::Header {
                file: file_name,
                reason: "the file is empty: no header row".into(),
            });
        }
        let header = header_rec
            .iter()
            .map(|h| String::from_utf8_lossy(h).into_owned())
            .collect();
        Ok(CsvReader {
            inner,
            file: file_name,
            line_offset: fmt.skip_lines + u64::from(crlf),
            header,
        })
    }

    pub fn header(&self) -> &[String] {
        &self.header
    }

    /// Reads the next record into `rec`; `Ok(None)` at the end of the file.
    pub fn next_record(&mut self, rec: &mut csv::ByteRecord) -> Result<Option<Locator>, ParseError> {
        match self.inner.read_byte_record(rec) {
            Ok(true) => {
                let line = rec.position().map_or(0, |p| p.line()) + self.line_offset;
                Ok(Some(Locator::Line(line)))
            }
            Ok(false) => Ok(None),
            Err(e) => Err(csv_error(&self.file, self.line_offset, e)),
        }
    }
}

fn csv_error(file: &str, offset: u64, e: csv::Error) -> ParseError {
    let line = e.position().map_or(0, |p| p.line()) + offset;
    match e.into_kind() {
        csv::ErrorKind::Io(source) if source.get_ref().is_some_and(|e| e.is::<LineTooLong>()) => {
            ParseError::Unreadable {
                file: file.to_string(),
                reason: LineTooLong.to_string(),
            }
        }
        csv::ErrorKind::Io(source) => ParseError::Io {
            file: file.to_string(),
            source,
        },
        other => ParseError::Malformed {
            file: file.to_string(),
            locator: Locator::Line(line),
            reason: format!("{other:?}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_line_past_the_cap_refuses_the_file_without_reading_it_whole() {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(b"A,B\n1,").expect("write");
        f.write_all(&vec![b'x'; MAX_LINE_BYTES + 1]).expect("write");
        let mut r = CsvReader::open(f.path(), &fmt(Encoding::Utf8)).expect("header fits");
        let mut rec = csv::ByteRecord::new();
        match r.next_record(&mut rec) {
            Err(ParseError::Unreadable { reason, .. }) => assert!(reason.contains("32 MiB"), "{reason}"),
            other => panic!("want Unreadable, got {other:?}"),
        }
    }

    fn fmt(encoding: Encoding) -> CsvFormat {
        CsvFormat {
            delimiter: b',',
            quote: b'"',
            encoding,
            skip_lines: 0,
        }
    }

    #[test]
    fn bom_header_and_physical_lines() {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(b"\xEF\xBB\xBFCase ID,Note\n1,\"two\nlines\"\n2,x\n")
            .expect("write");
        let mut r = CsvReader::open(f.path(), &fmt(Encoding::Utf8)).expect("open");
        assert_eq!(r.header(), ["Case ID", "Note"]);
        let mut rec = csv::ByteRecord::new();
        assert_eq!(r.next_record(&mut rec).expect("rec"), Some(Locator::Line(2)));
        assert_eq!(rec.get(1), Some(&b"two\nlines"[..]));
        assert_eq!(r.next_record(&mut rec).expect("rec"), Some(Locator::Line(4)));
        assert_eq!(r.next_record(&mut rec).expect("eof"), None);
    }

    #[test]
    fn windows_1252_is_decoded() {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(b"Payer\nCaf\xe9 Health\n").expect("write");
        let mut r = CsvReader::open(f.path(), &fmt(Encoding::Windows1252)).expect("open");
        let mut rec = csv::ByteRecord::new();
        r.next_record(&mut rec).expect("rec");
        assert_eq!(rec.get(0), Some("Café Health".as_bytes()));
    }
}

#[cfg(test)]
mod crlf_tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn crlf_lines_are_physical_lines() {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(b"A,B\r\n1,x\r\n2,y\r\n3,z\r\n").expect("write");
        let fmt = CsvFormat {
            delimiter: b',',
            quote: b'"',
            encoding: Encoding::Utf8,
            skip_lines: 0,
        };
        let mut r = CsvReader::open(f.path(), &fmt).expect("open");
        let mut rec = csv::ByteRecord::new();
        let mut lines = Vec::new();
        while let Some(Locator::Line(l)) = r.next_record(&mut rec).expect("rec") {
            lines.push(l);
        }
        assert_eq!(lines, vec![2, 3, 4]);
    }
}
