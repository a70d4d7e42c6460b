//! Excel workbooks (calamine): xlsx, xlsm, xlsb, xls and ods.
//!
//! Sheets are chosen by name, glob or index, each sheet rule with its own
//! mapping; the header row is found after N title rows or by the mapping's
//! column names; blank rows are not records. Every record's locator is
//! `Sheet!row` with Excel's 1-based row number.
//!
//! Dates: a cell Excel formats as a date (serial numbers in either the 1900
//! or the 1904 date system, and cached values of date formulas) is handed to
//! the mapping as a typed date, so `date($col, …)` takes it as is whatever
//! the formats say; it also reads as ISO 8601 text (`2026-11-22`,
//! `2026-11-22T09:30:00`) for text functions. Dates typed as text go
//! through the mapping's `date()` formats like any CSV value.
//!
//! Memory: xlsx/xlsm and xlsb are streamed cell by cell (calamine's cell
//! readers); the workbook's shared-string table is held in memory, which is
//! the price of the format. xls and ods cannot be streamed: calamine reads a
//! whole worksheet into memory (roughly 32 bytes per cell plus the text), so
//! a 100,000 × 20 ods sheet costs on the order of 100 MB.
//!
//! calamine borrows the workbook for as long as a sheet is read, which does
//! not fit a pull-based reader; so a worker thread owns the workbook and
//! sends rows over a bounded channel, and row buffers come back for reuse.
//! A panic inside calamine on a hostile file ends that thread, not the
//! daemon: the reader reports the file as unreadable.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use calamine::{Data, DataRef, Reader, Sheets};

use super::{file_label, Locator, ParseError, Row};

/// How a sheet rule picks worksheets.
#[derive(Debug, Clone)]
pub enum SheetSelect {
    Name(String),
    Glob(globset::GlobMatcher),
    Index(usize),
}

impl SheetSelect {
    fn matches(&self, index: usize, name: &str) -> bool {
        match self {
            SheetSelect::Name(n) => n.trim().eq_ignore_ascii_case(name.trim()),
            SheetSelect::Glob(g) => g.is_match(name),
            SheetSelect::Index(i) => *i == index,
        }
    }
}

/// Where a sheet's header row is.
#[derive(Debug, Clone)]
pub enum HeaderAt {
    /// After this many rows (title rows); 0 is the first row.
    Skip(u32),
    /// The first row, within the first 50, holding every one of these names
    /// (each a list of accepted spellings, normalized as headers are).
    Find(Vec<Vec<String>>),
}

/// One sheet rule; `part` is its index, which selects its mapping.
#[derive(Debug, Clone)]
pub struct SheetRule {
    pub select: SheetSelect,
    pub header: HeaderAt,
    /// Columns (headers, normalized as headers are) whose vertically merged
    /// ranges are carried down: every row of the range reads the value of
    /// its top cell. xlsx/xlsm and xls only (calamine reads no merges from
    /// xlsb or ods).
    pub fill_merged: Vec<String>,
    /// Read hidden and very hidden sheets this rule selects (the connector's
    /// `include_hidden_sheets`). Off: they are skipped with a warning naming
    /// them (an archived tab is not live data).
    pub include_hidden: bool,
}

/// What the worker sends.
enum Msg {
    Header {
        part: usize,
        sheet: Arc<str>,
        header: Vec<String>,
    },
    Row {
        part: usize,
        locator: Locator,
        row: Row,
    },
    Error(ParseError),
    Warning(String),
}

/// What the reader yields.
#[derive(Debug)]
pub enum ExcelNext {
    /// A new sheet starts; records that follow belong to sheet rule `part`.
    Header {
        part: usize,
        sheet: Arc<str>,
        header: Vec<String>,
    },
    Record {
        part: usize,
        locator: Locator,
    },
}

pub struct ExcelReader {
    rx: Receiver<Msg>,
    recycle: SyncSender<Row>,
    worker: Option<JoinHandle<()>>,
    file: String,
    current: Row,
    warnings: Vec<String>,
}

const HEADER_SEARCH_ROWS: u32 = 50;

thread_local! {
    /// Set on the Excel worker thread: a panic there (calamine on a hostile
    /// file) is reported as an unreadable workbook, not printed.
    static QUIET_PANICS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Installs, once per process, a panic hook that stays silent on threads
/// that asked for it and hands every other panic to the previous hook
/// (whose message and backtrace a real bug needs).
fn install_quiet_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET_PANICS.with(std::cell::Cell::get) {
                // The location only: a payload may quote cell content.
                tracing::debug!(location = ?info.location(), "the Excel reader panicked on a workbook");
                return;
            }
            previous(info);
        }));
    });
}

/// The one line a panic inside the Excel reader becomes.
fn panic_reason(payload: &(dyn std::any::Any + Send)) -> String {
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    if text.contains("index out of bounds") {
        "the workbook is corrupt: a cell refers to an entry its tables do not have \
         (e.g. a shared-string index past the end of sharedStrings.xml)"
            .into()
    } else {
        "the workbook is corrupt: the Excel reader failed on its content".into()
    }
}

impl ExcelReader {
    /// Opens the workbook at `path` in a worker thread.
    pub fn open(path: &Path, rules: Vec<SheetRule>) -> Result<ExcelReader, ParseError> {
        let file = file_label(path);
        let (tx, rx) = sync_channel::<Msg>(64);
        let (recycle, recycled) = sync_channel::<Row>(80);
        let worker_path = path.to_path_buf();
        let worker_file = file.clone();
        install_quiet_hook();
        let worker = std::thread::Builder::new()
            .name("hubsync-excel".into())
            .spawn(move || {
                QUIET_PANICS.with(|q| q.set(true));
                // The worker owns everything it touches, and a panic ends its
                // use of them: nothing half-updated is seen afterwards.
                let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    read_workbook(&worker_path, &worker_file, &rules, &tx, &recycled)
                }));
                let failed = match read {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e),
                    Err(payload) => Some(unreadable(&worker_file, panic_reason(payload.as_ref()))),
                };
                if let Some(e) = failed {
                    let _ = tx.send(Msg::Error(e));
                }
            })
            .map_err(|source| ParseError::Io {
                file: file.clone(),
                source,
            })?;
        Ok(ExcelReader {
            rx,
            recycle,
            worker: Some(worker),
            file,
            current: Row::new(),
            warnings: Vec::new(),
        })
    }

    /// Warnings so far (all of them once `read_next` returned `None`).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The current record's values.
    pub fn row(&self) -> &Row {
        &self.current
    }

    pub fn read_next(&mut self) -> Result<Option<ExcelNext>, ParseError> {
        let mut msg = self.rx.recv();
        while let Ok(Msg::Warning(w)) = msg {
            self.warnings.push(w);
            msg = self.rx.recv();
        }
        match msg {
            Ok(Msg::Warning(_)) => unreachable!("warnings are taken above"),
            Ok(Msg::Header { part, sheet, header }) => Ok(Some(ExcelNext::Header { part, sheet, header })),
            Ok(Msg::Row { part, locator, row }) => {
                let old = std::mem::replace(&mut self.current, row);
                let _ = self.recycle.try_send(old);
                Ok(Some(ExcelNext::Record { part, locator }))
            }
            Ok(Msg::Error(e)) => Err(e),
            Err(_) => {
                // The worker is gone: either done, or it panicked.
                match self.worker.take().map(JoinHandle::join) {
                    Some(Err(_)) => Err(ParseError::Unreadable {
                        file: self.file.clone(),
                        reason: "the workbook could not be read (the Excel reader failed on its content)"
                            .into(),
                    }),
                    _ => Ok(None),
                }
            }
        }
    }
}

fn unreadable(file: &str, reason: impl Into<String>) -> ParseError {
    ParseError::Unreadable {
        file: file.to_string(),
        reason: reason.into(),
    }
}

/// Explains a calamine error without quoting cell content.
fn explain(file: &str, e: calamine::Error) -> ParseError {
    let text = e.to_string();
    let lower = text.to_lowercase();
    let reason = if lower.contains("password") || lower.contains("encrypt") {
        "the workbook is password-protected (encrypted); ask the hub for an unprotected file".to_string()
    } else {
        format!("the workbook is corrupt or not a workbook: {text}")
    };
    unreadable(file, reason)
}

/// The most one zip entry of a workbook may inflate to (a sheet of a
/// million rows is ~200 MB of XML); past it the file is refused as a bomb.
const MAX_ENTRY_BYTES: u64 = 1 << 30;

/// Reads every entry of a zip-based workbook to its end, so that the zip
/// reader checks each CRC-32, and bounds what each entry inflates to.
/// calamine stops reading an entry at its closing tag, never reaching the
/// CRC check: a workbook whose bytes changed after zipping (a bad copy, bit
/// rot) would otherwise be read with the changed values
/// (fixtures/malformed, `zip_corrupt_entry`).
///
/// Returns whether a worksheet holds a formula (`<f>`): only then is the
/// sheet read a second time for its formula cells, to tell an uncalculated
/// formula (no cached value) from an empty cell. Hub exports rarely have
/// any, and the search rides on the inflating this does anyway.
fn verify_zip(path: &Path) -> Result<bool, String> {
    let f = File::open(path).map_err(|e| format!("cannot open the workbook: {e}"))?;
    // Not a readable zip at all: calamine says so in its own words.
    let Ok(mut zip) = zip::ZipArchive::new(std::io::BufReader::new(f)) else {
        return Ok(false);
    };
    let mut scan = FormulaScan::default();
    for i in 0..zip.len() {
        let entry = zip
            .by_index(i)
            .map_err(|e| format!("the workbook is corrupt: entry {i}: {e}"))?;
        let name = entry.name().to_string();
        scan.active = name.starts_with("xl/worksheets/") && !scan.found;
        scan.tail.clear();
        let mut limited = std::io::Read::take(entry, MAX_ENTRY_BYTES + 1);
        let n = std::io::copy(&mut limited, &mut scan)
            .map_err(|e| format!("the workbook is corrupt: entry `{name}`: {e}"))?;
        if n > MAX_ENTRY_BYTES {
            return Err(format!(
                "the workbook's entry `{name}` inflates past {} MiB: refused as a zip bomb",
                MAX_ENTRY_BYTES >> 20
            ));
        }
    }
    Ok(scan.found)
}

/// A sink that looks for a formula element (`<f>`, `<f …>`, `<f/>`) in the
/// bytes written to it while `active`, across write boundaries.
#[derive(Default)]
struct FormulaScan {
    active: bool,
    found: bool,
    tail: Vec<u8>,
}

impl std::io::Write for FormulaScan {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.active && !self.found {
            let hit = |b: &[u8]| {
                memchr::memmem::find_iter(b, b"<f").any(|i| matches!(b.get(i + 2), Some(b'>' | b' ' | b'/')))
            };
            let head = &buf[..buf.len().min(3)];
            let mut seam = std::mem::take(&mut self.tail);
            seam.extend_from_slice(head);
            self.found = hit(&seam) || hit(buf);
            self.tail.clear();
            self.tail.extend_from_slice(&buf[buf.len().saturating_sub(3)..]);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn read_workbook(
    path: &PathBuf,
    file: &str,
    rules: &[SheetRule],
    tx: &SyncSender<Msg>,
    recycled: &Receiver<Row>,
) -> Result<(), ParseError> {
    // An encrypted OOXML workbook is an OLE container, not a zip: say so
    // rather than "invalid zip".
    let mut magic = [0u8; 8];
    let n = File::open(path)
        .and_then(|mut f| f.read(&mut magic))
        .map_err(|source| ParseError::Io {
            file: file.to_string(),
            source,
        })?;
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if n == 8 && magic == [0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1] && ext != "xls" {
        return Err(unreadable(
            file,
            "the workbook is password-protected (an encrypted container, not a plain xlsx); ask the hub for an unprotected file",
        ));
    }
    let mut has_formulas = false;
    if n >= 4 && magic[..4] == *b"PK\x03\x04" {
        has_formulas = verify_zip(path).map_err(|reason| unreadable(file, reason))?;
    }
    let mut wb = calamine::open_workbook_auto(path).map_err(|e| explain(file, e))?;
    let sheets: Vec<(String, bool)> = wb
        .sheets_metadata()
        .iter()
        .map(|s| (s.name.clone(), s.visible != calamine::SheetVisible::Visible))
        .collect();
    let names: Vec<String> = sheets.iter().map(|(n, _)| n.clone()).collect();
    // Each sheet is read once, by the first rule that selects it, in rule order.
    let mut plan: Vec<(usize, String)> = Vec::new();
    let mut hidden_skipped: Vec<String> = Vec::new();
    for (part, rule) in rules.iter().enumerate() {
        let mut any = false;
        let mut only_hidden = false;
        for (i, (name, hidden)) in sheets.iter().enumerate() {
            if !rule.select.matches(i, name) || plan.iter().any(|(_, n)| n == name) {
                continue;
            }
            if *hidden && !rule.include_hidden {
                if !hidden_skipped.contains(name) {
                    hidden_skipped.push(name.clone());
                }
                only_hidden = true;
                continue;
            }
            plan.push((part, name.clone()));
            any = true;
        }
        if !any {
            let what = match &rule.select {
                SheetSelect::Name(n) => format!("no sheet named `{n}`"),
                SheetSelect::Glob(g) => format!("no sheet matches `{}`", g.glob()),
                SheetSelect::Index(i) => format!("no sheet at index {i} (the workbook has {})", names.len()),
            };
            let hint = if only_hidden {
                " (only hidden sheets match; `include_hidden_sheets = true` reads them)"
            } else {
                ""
            };
            return Err(unreadable(
                file,
                format!("{what}{hint}; sheets: {}", names.join(", ")),
            ));
        }
    }
    if !hidden_skipped.is_empty() {
        let _ = tx.send(Msg::Warning(format!(
            "hidden sheet(s) `{}` skipped (set `include_hidden_sheets = true` in the connector's [format] to read them)",
            hidden_skipped.join("`, `")
        )));
    }
    for (part, name) in plan {
        let sheet: Arc<str> = Arc::from(name.as_str());
        let opened = |e: String| unreadable(file, format!("sheet `{name}`: {e}"));
        let rule = &rules[part];
        // Merged ranges (only read when a column asks to be filled), and the
        // cells holding a formula (only looked for when the workbook has
        // any): both need their own pass over the sheet before the rows.
        let merges: Vec<calamine::Dimensions> = if rule.fill_merged.is_empty() {
            Vec::new()
        } else {
            match &mut wb {
                Sheets::Xlsx(x) => match x.worksheet_merge_cells(&name) {
                    Some(r) => r.map_err(|e| opened(e.to_string()))?,
                    None => Vec::new(),
                },
                Sheets::Xls(x) => x.worksheet_merge_cells(&name).unwrap_or_default(),
                Sheets::Xlsb(_) | Sheets::Ods(_) => Vec::new(),
            }
        };
        let mut formulas = std::collections::HashSet::new();
        if has_formulas {
            if let Sheets::Xlsx(x) = &mut wb {
                let mut cells = x
                    .worksheet_cells_reader(&name)
                    .map_err(|e| opened(e.to_string()))?;
                while let Some(c) = cells
                    .next_formula()
                    .map_err(|e| unreadable(file, format!("sheet `{name}` is corrupt: {e}")))?
                {
                    if !c.get_value().is_empty() {
                        formulas.insert(c.get_position());
                    }
                }
            }
        }
        let mut sheet_reader = SheetState {
            part,
            sheet: sheet.clone(),
            header_at: &rule.header,
            header: None,
            tx,
            recycled,
            fill_names: &rule.fill_merged,
            merges,
            fill_cols: Vec::new(),
            carried: Vec::new(),
            formulas,
        };
        // xlsx and xlsb cell readers are alike but share no trait (and their
        // types are calamine's), so one macro body serves both.
        macro_rules! stream_sheet {
            ($workbook:expr) => {{
                let mut cells = $workbook
                    .worksheet_cells_reader(&name)
                    .map_err(|e| opened(e.to_string()))?;
                stream_cells(
                    file,
                    &name,
                    || cells.next_cell().map_err(|e| e.to_string()),
                    &mut sheet_reader,
                )
            }};
        }
        let ok = match &mut wb {
            Sheets::Xlsx(x) => stream_sheet!(x),
            Sheets::Xlsb(x) => stream_sheet!(x),
            Sheets::Xls(x) => {
                let range = x.worksheet_range(&name).map_err(|e| opened(e.to_string()))?;
                whole_range(&range, &mut sheet_reader)
            }
            Sheets::Ods(x) => {
                let range = x.worksheet_range(&name).map_err(|e| opened(e.to_string()))?;
                whole_range(&range, &mut sheet_reader)
            }
        }?;
        if !ok {
            return Ok(()); // the consumer went away
        }
        if sheet_reader.header.is_none() {
            return Err(unreadable(file, format!("sheet `{sheet}`: no header row found")));
        }
    }
    Ok(())
}

/// Common to the streaming and the whole-range paths: turns rows of cells
/// into header and record messages.
struct SheetState<'a> {
    part: usize,
    sheet: Arc<str>,
    header_at: &'a HeaderAt,
    header: Option<u32>,
    tx: &'a SyncSender<Msg>,
    recycled: &'a Receiver<Row>,
    /// Normalized headers whose merged ranges are filled down.
    fill_names: &'a [String],
    merges: Vec<calamine::Dimensions>,
    /// Column indices to fill, found at the header row.
    fill_cols: Vec<u32>,
    /// (merge index, column) → the top cell's text and date.
    carried: Vec<((usize, u32), String, Option<chrono::NaiveDateTime>)>,
    /// Cells (row, column) holding a formula: empty there means uncalculated.
    formulas: std::collections::HashSet<(u32, u32)>,
}

impl SheetState<'_> {
    fn fresh_row(&self) -> Row {
        let mut r = self.recycled.try_recv().unwrap_or_default();
        r.clear();
        r
    }

    /// Handles one complete row (0-based `index`); `false` when the consumer is gone.
    fn row(&mut self, index: u32, row: Row) -> bool {
        match self.header {
            None => {
                let is_header = match self.header_at {
                    HeaderAt::Skip(n) => index >= *n && !row.is_blank(),
                    HeaderAt::Find(names) => {
                        index < HEADER_SEARCH_ROWS && {
                            let cells: Vec<String> = (0..row.len())
                                .map(|i| crate::text::normalize_header(row.get(i).unwrap_or("")))
                                .collect();
                            names.iter().all(|alts| alts.iter().any(|a| cells.contains(a)))
                        }
                    }
                };
                if is_header {
                    self.header = Some(index);
                    let header: Vec<String> = (0..row.len())
                        .map(|i| row.get(i).unwrap_or("").to_string())
                        .collect();
                    self.fill_cols = header
                        .iter()
                        .enumerate()
                        .filter(|(_, h)| self.fill_names.contains(&crate::text::normalize_header(h)))
                        .map(|(i, _)| i as u32)
                        .collect();
                    return self
                        .tx
                        .send(Msg::Header {
                            part: self.part,
                            sheet: self.sheet.clone(),
                            header,
                        })
                        .is_ok();
                }
                true
            }
            Some(_) => {
                let mut row = row;
                self.fill(index, &mut row);
                if row.is_blank() {
                    return true;
                }
                self.send_record(index, row)
            }
        }
    }

    /// Carries merged values down into the fill columns.
    fn fill(&mut self, index: u32, row: &mut Row) {
        if self.fill_cols.is_empty() || self.merges.is_empty() {
            return;
        }
        for (m, d) in self.merges.iter().enumerate() {
            if index < d.start.0 || index > d.end.0 {
                continue;
            }
            for &c in &self.fill_cols {
                if c < d.start.1 || c > d.end.1 {
                    continue;
                }
                if index == d.start.0 {
                    // The top row holds the range's value (in its first column).
                    let src = d.start.1 as usize;
                    let text = row.get(src).unwrap_or("").to_string();
                    let date = row.date(src);
                    self.carried.retain(|(k, _, _)| *k != (m, c));
                    self.carried.push(((m, c), text, date));
                } else if let Some((_, text, date)) = self.carried.iter().find(|(k, _, _)| *k == (m, c)) {
                    row.set(c as usize, text, *date);
                }
            }
        }
    }

    fn send_record(&self, index: u32, row: Row) -> bool {
        self.tx
            .send(Msg::Row {
                part: self.part,
                locator: Locator::Cell {
                    sheet: self.sheet.clone(),
                    row: index + 1,
                },
                row,
            })
            .is_ok()
    }
}

fn push_cell(row: &mut Row, v: CellValue<'_>) {
    use std::fmt::Write;
    match v {
        CellValue::Text(s) => row.push(s),
        CellValue::Empty => row.push(""),
        CellValue::Int(n) => {
            row.begin_value();
            let _ = write!(row.text_mut(), "{n}");
            row.end_value();
        }
        CellValue::Float(f) => {
            row.begin_value();
            // Whole numbers read as integers: "12", not "12.0" (ids, quantities).
            if f.fract() == 0.0 && f.abs() < 1e15 {
                let _ = write!(row.text_mut(), "{}", f as i64);
            } else {
                let _ = write!(row.text_mut(), "{f}");
            }
            row.end_value();
        }
        CellValue::Bool(b) => row.push(if b { "TRUE" } else { "FALSE" }),
        CellValue::Date(d) => match d.as_datetime().filter(|_| d.is_datetime()) {
            Some(t) => row.push_date(t),
            None => {
                row.begin_value();
                let _ = write!(row.text_mut(), "{}", d.as_f64());
                row.end_value();
            }
        },
        CellValue::Error => row.push(""),
    }
}

enum CellValue<'a> {
    Text(&'a str),
    Int(i64),
    Float(f64),
    Bool(bool),
    Date(calamine::ExcelDateTime),
    Empty,
    Error,
}

fn from_ref<'a>(d: &'a DataRef<'_>) -> CellValue<'a> {
    match d {
        DataRef::Int(n) => CellValue::Int(*n),
        DataRef::Float(f) => CellValue::Float(*f),
        DataRef::String(s) => CellValue::Text(s),
        DataRef::SharedString(s) => CellValue::Text(s),
        DataRef::Bool(b) => CellValue::Bool(*b),
        DataRef::DateTime(t) => CellValue::Date(*t),
        DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => CellValue::Text(s),
        DataRef::Error(_) => CellValue::Error,
        DataRef::Empty => CellValue::Empty,
    }
}

fn from_data(d: &Data) -> CellValue<'_> {
    match d {
        Data::Int(n) => CellValue::Int(*n),
        Data::Float(f) => CellValue::Float(*f),
        Data::String(s) => CellValue::Text(s),
        Data::Bool(b) => CellValue::Bool(*b),
        Data::DateTime(t) => CellValue::Date(*t),
        Data::DateTimeIso(s) | Data::DurationIso(s) => CellValue::Text(s),
        Data::Error(_) => CellValue::Error,
        Data::Empty => CellValue::Empty,
    }
}

/// Streams a sheet cell by cell, assembling rows (cells arrive row-major).
/// `next_cell` wraps calamine's xlsx or xlsb cell reader (their types are
/// not nameable outside calamine, so a closure stands for either).
fn stream_cells<'a>(
    file: &str,
    name: &str,
    mut next_cell: impl FnMut() -> Result<Option<calamine::Cell<DataRef<'a>>>, String>,
    st: &mut SheetState<'_>,
) -> Result<bool, ParseError> {
    let mut row = st.fresh_row();
    let mut row_index: Option<u32> = None;
    let mut first_col = 0u32;
    loop {
        let cell = next_cell().map_err(|e| unreadable(file, format!("sheet `{name}` is corrupt: {e}")))?;
        let Some(cell) = cell else { break };
        let (r, c) = cell.get_position();
        if row_index != Some(r) {
            if let Some(prev) = row_index {
                let done = std::mem::replace(&mut row, st.fresh_row());
                if !st.row(prev, done) {
                    return Ok(false);
                }
            }
            row_index = Some(r);
            first_col = 0;
        }
        // Fill skipped (empty) columns so values stay at their column index.
        while first_col < c {
            row.push("");
            first_col += 1;
        }
        // No value at all (not an empty string: a formula may compute "")
        // in a formula cell: the formula was never calculated.
        if matches!(cell.get_value(), DataRef::Empty) && st.formulas.contains(&(r, c)) {
            row.mark_uncalculated(row.len());
        }
        push_cell(&mut row, from_ref(cell.get_value()));
        first_col = c + 1;
    }
    if let Some(prev) = row_index {
        if !st.row(prev, row) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// xls and ods: the whole sheet is in memory already.
fn whole_range(range: &calamine::Range<Data>, st: &mut SheetState<'_>) -> Result<bool, ParseError> {
    let (start_row, start_col) = range.start().unwrap_or((0, 0));
    for (i, cells) in range.rows().enumerate() {
        let mut row = st.fresh_row();
        for _ in 0..start_col {
            row.push("");
        }
        for d in cells {
            push_cell(&mut row, from_data(d));
        }
        if !st.row(start_row + i as u32, row) {
            return Ok(false);
        }
    }
    Ok(true)
}

impl Drop for ExcelReader {
    fn drop(&mut self) {
        // Unblock the worker (it may wait on a full channel), then let it end.
        let (_, dead) = sync_channel::<Msg>(0);
        self.rx = dead;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use calamine::{ExcelDateTime, ExcelDateTimeType};

    #[test]
    fn date_cells_in_both_date_systems() {
        let mut row = Row::new();
        push_cell(
            &mut row,
            CellValue::Date(ExcelDateTime::new(45000.0, ExcelDateTimeType::DateTime, false)),
        );
        push_cell(
            &mut row,
            CellValue::Date(ExcelDateTime::new(45000.0, ExcelDateTimeType::DateTime, true)),
        );
        push_cell(
            &mut row,
            CellValue::Date(ExcelDateTime::new(45000.5, ExcelDateTimeType::DateTime, false)),
        );
        assert_eq!(row.get(0), Some("2023-03-15"));
        assert_eq!(row.get(1), Some("2027-03-16"));
        assert_eq!(row.get(2), Some("2023-03-15T12:00:00"));
        let t = row.date(1).expect("typed");
        assert_eq!(
            t.date(),
            chrono::NaiveDate::from_ymd_opt(2027, 3, 16).expect("valid")
        );
    }

    #[test]
    fn numbers_read_like_the_sheet_shows_them() {
        let mut row = Row::new();
        push_cell(&mut row, CellValue::Float(12.0));
        push_cell(&mut row, CellValue::Float(2.5));
        push_cell(&mut row, CellValue::Int(7));
        push_cell(&mut row, CellValue::Bool(true));
        push_cell(&mut row, CellValue::Error);
        assert_eq!(
            (0..5).map(|i| row.get(i).unwrap_or("?")).collect::<Vec<_>>(),
            ["12", "2.5", "7", "TRUE", ""]
        );
        assert_eq!(row.date(0), None);
    }
}
