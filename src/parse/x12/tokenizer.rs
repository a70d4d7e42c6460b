//! The byte-level tokenizer: splits a stream into segments in a fixed
//! buffer, reading each ISA for its delimiters and each BIN by length.

use std::io::Read;
use std::ops::Range;

use super::{SeparatorCollision, X12Format};

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
    Broken {
        /// Byte offset in the file where the segment that broke starts.
        offset: u64,
        /// 1-based number of that segment in the file.
        segment: u64,
        reason: Broken,
    },
}

/// Why the stream cannot be split any further: a closed set, so callers can
/// match on it (tests, acknowledgments) rather than on message text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Broken {
    /// The first segment is not an ISA.
    NoIsa,
    /// Fewer than 16 element separators before the input ends.
    IsaTruncated,
    /// ISA element `element` (1-based) is `width` wide instead of `fixed`.
    IsaWidth {
        element: usize,
        width: usize,
        fixed: usize,
    },
    /// The ISA's elements have their widths but the segment is not 106 bytes.
    IsaLength,
    /// Two of element separator, component separator and terminator are the same byte.
    DelimitersCollide {
        element: u8,
        component: u8,
        terminator: u8,
    },
    /// ISA11 equals ISA16 and the connector does not accept it.
    RepetitionIsComponent { byte: u8 },
    /// BIN01 is not a run of 1 to 20 digits.
    BinLength,
    /// BIN01 announces more bytes than the file holds.
    BinTruncated { len: usize },
    /// The BIN payload is not followed by a segment terminator.
    BinUnterminated { len: usize },
}

impl std::fmt::Display for TokenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (offset, segment, reason) = match self {
            TokenError::Io(e) => return write!(f, "{e}"),
            TokenError::Broken {
                offset,
                segment,
                reason,
            } => (offset, segment, reason),
        };
        let c = |b: &u8| *b as char;
        match reason {
            Broken::NoIsa => write!(f, "the file does not start with an ISA segment"),
            Broken::IsaTruncated => write!(
                f,
                "ISA at byte {offset} (segment {segment}) is truncated: an ISA has 16 elements"
            ),
            Broken::IsaWidth {
                element,
                width,
                fixed,
            } => write!(
                f,
                "broken ISA at byte {offset}: ISA{element:02} is {width} characters wide; ISA elements are fixed width \
                 (ISA{element:02} has {fixed}) (set lenient_isa_width = true in [format] to accept it)"
            ),
            Broken::IsaLength => write!(
                f,
                "broken ISA at byte {offset}: the ISA is not 106 bytes long (set lenient_isa_width = true in [format] to accept it)"
            ),
            Broken::DelimitersCollide {
                element,
                component,
                terminator,
            } => write!(
                f,
                "ISA at byte {offset}: delimiters collide (element {:?}, component {:?}, terminator {:?})",
                c(element),
                c(component),
                c(terminator)
            ),
            Broken::RepetitionIsComponent { byte } => write!(
                f,
                "ISA at byte {offset}: ISA11 (repetition separator) and ISA16 (component separator) are both {:?}; \
                 set separator_collision = \"repetition\" or \"component\" in [format] to accept it",
                c(byte)
            ),
            Broken::BinLength => write!(
                f,
                "BIN segment at byte {offset} (segment {segment}): BIN01 must be the payload length in digits"
            ),
            Broken::BinTruncated { len } => write!(
                f,
                "BIN segment at byte {offset} (segment {segment}): BIN01 says {len} bytes but the file ends first"
            ),
            Broken::BinUnterminated { len } => write!(
                f,
                "BIN segment at byte {offset} (segment {segment}): no segment terminator after its {len}-byte payload"
            ),
        }
    }
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

    /// A [`TokenError::Broken`] at the segment being read.
    fn broken(&self, reason: Broken) -> TokenError {
        TokenError::Broken {
            offset: self.consumed,
            segment: self.file_segment + 1,
            reason,
        }
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
            return Err(self.broken(Broken::NoIsa));
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
            return Err(self.broken(Broken::IsaTruncated));
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
            let why = match bad {
                Some(k) => Broken::IsaWidth {
                    element: k + 1,
                    width: widths[k],
                    fixed: ISA_WIDTHS[k],
                },
                None => Broken::IsaLength,
            };
            if self.lenient_isa_width {
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
                tracing::warn!(
                    byte = self.consumed,
                    "{what}; delimiters were found by counting separators"
                );
            } else {
                return Err(self.broken(why));
            }
        }
        if terminator == element || terminator == isa16 || isa16 == element {
            return Err(self.broken(Broken::DelimitersCollide {
                element,
                component: isa16,
                terminator,
            }));
        }
        // In 00401 ISA11 is the standards id `U`, not a separator.
        let mut repetition = isa11.filter(|b| !b.is_ascii_alphanumeric() && *b != b' ');
        let mut component = Some(isa16);
        if repetition == Some(isa16) {
            match self.collision {
                SeparatorCollision::Reject => {
                    return Err(self.broken(Broken::RepetitionIsComponent { byte: isa16 }))
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
            return Err(self.broken(Broken::BinLength));
        };
        let len: usize = std::str::from_utf8(&avail[4..digits_end])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| self.broken(Broken::BinLength))?;
        let body = digits_end + 1 + len;
        self.fill(body + 1)?;
        if self.end - self.pos < body {
            return Err(self.broken(Broken::BinTruncated { len }));
        }
        let after = self.buf.get(self.pos + body).copied();
        if after.is_some() && after != Some(d.terminator) {
            return Err(self.broken(Broken::BinUnterminated { len }));
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
