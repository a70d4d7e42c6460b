//! Streaming CSV: one reused `ByteRecord`, per-connector delimiter, quoting and
//! encoding (UTF-8 with or without BOM, Windows-1252), physical line numbers.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use encoding_rs_io::DecodeReaderBytesBuilder;

use super::{Locator, ParseError};

/// Validated CSV settings of one connector.
#[derive(Debug, Clone)]
pub struct CsvFormat {
    pub delimiter: u8,
    pub quote: u8,
    pub encoding: Encoding,
    pub skip_lines: u64,
}

/// A file's text encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// UTF-8, with or without a byte-order mark.
    Utf8,
    Windows1252,
}

/// A streaming reader over one CSV file.
pub struct CsvReader {
    inner: csv::Reader<LineCap<BufReader<Box<dyn Read + Send>>>>,
    file: String,
    /// Lines consumed before the header (title rows), added to every locator.
    line_offset: u64,
    header: Vec<String>,
}

/// The longest line a CSV file may have. The csv reader holds a whole
/// record in memory, so without a cap a file with no line breaks (a binary
/// file under a `.csv` name, a broken export) is read into memory whole.
pub const MAX_LINE_BYTES: usize = 32 << 20;

/// Fails the read once more than [`MAX_LINE_BYTES`] pass without a line
/// break, and finds the line breaks for locators: the csv crate counts `\n`
/// only, so after a lone CR (classic Mac endings) its line numbers repeated.
/// A line break is a `\n` or a `\r` not followed by `\n`, as the csv crate
/// ends records.
struct LineCap<R> {
    inner: R,
    /// Bytes since the last line break.
    run: usize,
    /// Bytes read so far.
    pos: u64,
    /// Offsets of the line breaks read but not yet behind a located record;
    /// bounded by the csv reader's read-ahead.
    breaks: std::collections::VecDeque<u64>,
    /// Breaks already behind a located record.
    lines: u64,
    /// A CR ended the last read: a break unless the next byte is `\n`.
    pending_cr: Option<u64>,
}

impl<R> LineCap<R> {
    fn new(inner: R) -> LineCap<R> {
        LineCap {
            inner,
            run: 0,
            pos: 0,
            breaks: std::collections::VecDeque::new(),
            lines: 0,
            pending_cr: None,
        }
    }

    /// The 1-based line of byte `offset`. Offsets asked for never go back.
    /// A break at `offset` itself is behind it: after a CRLF the csv crate
    /// starts the next record at the LF.
    fn line_of(&mut self, offset: u64) -> u64 {
        while self.breaks.front().is_some_and(|b| *b <= offset) {
            self.breaks.pop_front();
            self.lines += 1;
        }
        if self.pending_cr.is_some_and(|b| b <= offset) {
            // A CR that ended a read, followed by the record at `offset`.
            return self.lines + 2;
        }
        self.lines + 1
    }
}

impl<R: Read> Read for LineCap<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        let data = &buf[..n];
        let base = self.pos;
        if let Some(cr) = self.pending_cr.take() {
            if data.first() != Some(&b'\n') {
                self.breaks.push_back(cr);
            }
        }
        for i in memchr::memchr2_iter(b'\n', b'\r', data) {
            if data[i] == b'\n' {
                self.breaks.push_back(base + i as u64);
            } else if i + 1 == n {
                self.pending_cr = Some(base + i as u64);
            } else if data[i + 1] != b'\n' {
                self.breaks.push_back(base + i as u64);
            }
        }
        self.pos += n as u64;
        self.run = match memchr::memrchr2(b'\n', b'\r', data) {
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
            if !skip_line(&mut buffered).map_err(io)? {
                break;
            }
        }
        let capped = LineCap::new(buffered);
        let mut inner = csv::ReaderBuilder::new()
            .delimiter(fmt.delimiter)
            .quote(fmt.quote)
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(256 * 1024)
            .from_reader(capped);
        let mut header_rec = csv::ByteRecord::new();
        let got = match inner.read_byte_record(&mut header_rec) {
            Ok(got) => got,
            Err(e) => {
                let line = line_of_error(&mut inner, &e) + fmt.skip_lines;
                return Err(csv_error(&file_name, line, e));
            }
        };
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
            line_offset: fmt.skip_lines,
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
                let byte = rec.position().map_or(0, |p| p.byte());
                let line = self.inner.get_mut().line_of(byte) + self.line_offset;
                Ok(Some(Locator::Line(line)))
            }
            Ok(false) => Ok(None),
            Err(e) => {
                let line = line_of_error(&mut self.inner, &e) + self.line_offset;
                Err(csv_error(&self.file, line, e))
            }
        }
    }

    /// Why a short record is not what it looks like, when it is not: fewer
    /// fields than the header and a field that spans lines is a quote that
    /// never closed (it swallowed the lines after it).
    pub fn unbalanced_quote(&self, rec: &csv::ByteRecord) -> Option<String> {
        if rec.len() >= self.header.len() {
            return None;
        }
        let spans_lines = rec.iter().any(|f| memchr::memchr2(b'\n', b'\r', f).is_some());
        spans_lines.then(|| {
            format!(
                "an unbalanced quote: the record has {} of the header's {} fields and a field \
                 that runs over several lines (a quote opened in it never closes, so it \
                 swallowed the lines after it)",
                rec.len(),
                self.header.len()
            )
        })
    }
}

/// Consumes one line (ended by `\n`, `\r\n` or a lone `\r`, as records
/// are); `false` at the end of the file. Bounded by the line cap.
fn skip_line(r: &mut impl BufRead) -> std::io::Result<bool> {
    let mut seen = 0usize;
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(seen > 0);
        }
        match memchr::memchr2(b'\n', b'\r', buf) {
            Some(i) => {
                let cr = buf[i] == b'\r';
                r.consume(i + 1);
                if cr && r.fill_buf()?.first() == Some(&b'\n') {
                    r.consume(1);
                }
                return Ok(true);
            }
            None => {
                let n = buf.len();
                r.consume(n);
                seen += n;
                if seen > MAX_LINE_BYTES {
                    return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, LineTooLong));
                }
            }
        }
    }
}

fn line_of_error(inner: &mut csv::Reader<LineCap<BufReader<Box<dyn Read + Send>>>>, e: &csv::Error) -> u64 {
    match e.position() {
        Some(p) => inner.get_mut().line_of(p.byte()),
        None => 0,
    }
}

fn csv_error(file: &str, line: u64, e: csv::Error) -> ParseError {
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

    pub(super) fn fmt(encoding: Encoding) -> CsvFormat {
        CsvFormat {
            delimiter: b',',
            quote: b'"',
            encoding,
            skip_lines: 0,
        }
    }

    /// A temp file holding `bytes` (removed when dropped).
    pub(super) fn file_with(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(bytes).expect("write");
        f
    }

    /// The line locators of every record left in `r`.
    pub(super) fn record_lines(r: &mut CsvReader) -> Vec<u64> {
        let mut rec = csv::ByteRecord::new();
        let mut lines = Vec::new();
        while let Some(Locator::Line(l)) = r.next_record(&mut rec).expect("rec") {
            lines.push(l);
        }
        lines
    }

    #[test]
    fn bom_header_and_physical_lines() {
        let f = file_with(b"\xEF\xBB\xBFCase ID,Note\n1,\"two\nlines\"\n2,x\n");
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
        let f = file_with(b"Payer\nCaf\xe9 Health\n");
        let mut r = CsvReader::open(f.path(), &fmt(Encoding::Windows1252)).expect("open");
        let mut rec = csv::ByteRecord::new();
        r.next_record(&mut rec).expect("rec");
        assert_eq!(rec.get(0), Some("Café Health".as_bytes()));
    }
}

#[cfg(test)]
mod line_tests {
    use super::tests::{file_with, fmt, record_lines};
    use super::*;

    /// Hands out one byte per read: every CR ends a read.
    struct OneByte<'a>(&'a [u8]);
    impl Read for OneByte<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match (self.0.split_first(), buf.is_empty()) {
                (Some((b, rest)), false) => {
                    buf[0] = *b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    fn lines_of(data: &[u8], one_byte: bool) -> Vec<u64> {
        let src: Box<dyn Read + Send> = if one_byte {
            Box::new(OneByte(Box::leak(data.to_vec().into_boxed_slice())))
        } else {
            Box::new(std::io::Cursor::new(data.to_vec()))
        };
        let mut r = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(LineCap::new(BufReader::with_capacity(1, src)));
        let mut rec = csv::ByteRecord::new();
        let mut out = Vec::new();
        while r.read_byte_record(&mut rec).expect("record") {
            let byte = rec.position().map_or(0, |p| p.byte());
            out.push(r.get_mut().line_of(byte));
        }
        out
    }

    #[test]
    fn lone_cr_crlf_and_lf_lines_are_counted_alike() {
        // header CRLF, lone CR, a quoted field over two lines (LF), CRLF, LF.
        let data = b"A,B\r\n1,x\r2,\"two\nlines\"\r\n3,y\n4,z\r";
        for one_byte in [false, true] {
            assert_eq!(
                lines_of(data, one_byte),
                [1, 2, 3, 5, 6],
                "one byte per read: {one_byte}"
            );
        }
    }

    #[test]
    fn a_cr_only_file_is_not_one_long_line() {
        let f = file_with(b"Weekly report\rA,B\r1,x\r2,y\r");
        let fmt = CsvFormat {
            skip_lines: 1,
            ..fmt(Encoding::Utf8)
        };
        // The title line ends at its CR; locators still name physical lines.
        let mut r = CsvReader::open(f.path(), &fmt).expect("open");
        assert_eq!(r.header(), ["A", "B"]);
        assert_eq!(record_lines(&mut r), [3, 4]);
    }

    #[test]
    fn a_quote_that_never_closes_is_named() {
        let f = file_with(b"A,B,C\n1,\"x,y\n2,p,q\n3,r,s\n");
        let fmt = fmt(Encoding::Utf8);
        let mut r = CsvReader::open(f.path(), &fmt).expect("open");
        let mut rec = csv::ByteRecord::new();
        assert_eq!(r.next_record(&mut rec).expect("rec"), Some(Locator::Line(2)));
        let why = r.unbalanced_quote(&rec).expect("named");
        assert!(
            why.contains("unbalanced quote") && why.contains("2 of the header's 3"),
            "{why}"
        );
        // A legitimate quoted field over two lines, with every field there.
        let f = file_with(b"A,B\n1,\"two\nlines\"\n");
        let mut r = CsvReader::open(f.path(), &fmt).expect("open");
        r.next_record(&mut rec).expect("rec");
        assert_eq!(r.unbalanced_quote(&rec), None);
    }
}

#[cfg(test)]
mod crlf_tests {
    use super::tests::{file_with, fmt, record_lines};
    use super::*;

    #[test]
    fn crlf_lines_are_physical_lines() {
        let f = file_with(b"A,B\r\n1,x\r\n2,y\r\n3,z\r\n");
        let mut r = CsvReader::open(f.path(), &fmt(Encoding::Utf8)).expect("open");
        assert_eq!(record_lines(&mut r), vec![2, 3, 4]);
    }
}
