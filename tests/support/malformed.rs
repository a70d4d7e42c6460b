//! For the malformed-input tests (malformed, phi, fuzz, workbench): the
//! workspace (shipped config, connectors and mappings), a child-process
//! runner with limits (wait4 rusage for peak RSS, a watchdog for hangs), and
//! the generators of the big and binary malformed files.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{bin, repo, PSEUDONYM_KEY, SECRET};

pub const MAX_RSS_KB: i64 = 256 * 1024;
pub const MAX_TIME: Duration = Duration::from_secs(10);

/// The shipped config, connectors and mappings, plus one Excel connector on
/// the Acme mapping (so a generated workbook needs only Acme's columns).
pub fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    for sub in ["connectors", "mappings"] {
        std::fs::create_dir_all(root.join(sub)).expect("mkdir");
        for e in std::fs::read_dir(repo().join(sub)).expect("read dir").flatten() {
            if e.path().is_file() {
                std::fs::copy(e.path(), root.join(sub).join(e.file_name())).expect("copy");
            }
        }
    }
    std::fs::copy(repo().join("config.example.toml"), root.join("config.toml")).expect("copy config");
    std::fs::write(
        root.join("connectors/acme-xlsx.toml"),
        "program = \"ACME-ONC\"\nmapping = \"acme-hub-status\"\ntime_zone = \"America/New_York\"\n\
         [source]\nkind = \"local\"\npath = \"data/drop/acme-xlsx\"\npattern = \"*.xlsx\"\n[format]\nkind = \"excel\"\n",
    )
    .expect("write connector");
    dir
}

/// What one child run did.
pub struct Outcome {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
    pub max_rss_kb: i64,
    pub elapsed: Duration,
}

/// Runs the binary with `args`, measuring its peak RSS with wait4(2) and
/// killing it (a hang) after `MAX_TIME`.
pub fn run_limited(root: &Path, args: &[&std::ffi::OsStr]) -> Outcome {
    let out_path = root.join(format!("out-{}.txt", rand::random::<u32>()));
    let err_path = out_path.with_extension("err");
    let started = Instant::now();
    let child = std::process::Command::new(bin())
        .args(args)
        .current_dir(root)
        .env("HUBSYNC_PSEUDONYM_KEY", PSEUDONYM_KEY)
        .env("HUBSYNC_LOCAL_SECRET", SECRET)
        .env("RUST_LOG", "info,sqlx=warn")
        .env("RUST_BACKTRACE", "0")
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("spawn hubsync");
    let pid = child.id() as libc::pid_t;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d = done.clone();
    let watchdog = std::thread::spawn(move || {
        while started.elapsed() < MAX_TIME + Duration::from_secs(5) {
            if d.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: plain kill(2) on our own child's pid; it is not reaped
        // until wait4 below returns, so the pid cannot be reused meanwhile.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    });
    let mut status = 0;
    // SAFETY: rusage is plain old data that wait4 fills in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child with valid out-pointers.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4 reaps the child");
    let elapsed = started.elapsed();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    watchdog.join().expect("watchdog");
    std::mem::forget(child); // reaped by wait4 already
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    Outcome {
        status: code,
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
        max_rss_kb: usage.ru_maxrss,
        elapsed,
    }
}

/// Asserts the limits every run must keep.
pub fn assert_limits(what: &str, o: &Outcome) {
    assert!(
        o.elapsed < MAX_TIME,
        "{what}: took {:?} (a hang?)\n{}",
        o.elapsed,
        o.stderr
    );
    assert!(
        o.status != 101 && !o.stderr.contains("panicked"),
        "{what}: panicked (exit {})\n{}",
        o.status,
        o.stderr
    );
    assert!(
        o.status < 128,
        "{what}: killed by signal {}\n{}",
        o.status - 128,
        o.stderr
    );
    assert!(
        o.max_rss_kb < MAX_RSS_KB,
        "{what}: peak RSS {} MB > 256 MB",
        o.max_rss_kb / 1024
    );
}

// ------------------------------------------------------------- generators

const HEADER: &str = "Case ID,Patient ID,Patient Last Name,Patient DOB,Status Code,Status Date,Payer\n";

/// A CSV whose second record has a 10 MB field (one line).
fn ten_mb_line(dir: &Path) -> PathBuf {
    let p = dir.join("ten_mb_line.csv");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&p).expect("create"));
    f.write_all(HEADER.as_bytes()).expect("write");
    f.write_all(b"MF-0001,P7700001,Zabriskie,02/29/1952,REF,11/20/2026,Aetna\n")
        .expect("write");
    f.write_all(b"MF-0002,P7700002,").expect("write");
    let chunk = vec![b'A'; 1 << 20];
    for _ in 0..10 {
        f.write_all(&chunk).expect("write");
    }
    f.write_all(b",02/29/1952,REF,11/20/2026,Aetna\n").expect("write");
    f.write_all(b"MF-0003,P7700003,Zabriskie,02/29/1952,REF,11/20/2026,Aetna\n")
        .expect("write");
    f.flush().expect("flush");
    p
}

/// 10 MB with no line break at all (no header row ever ends).
fn ten_mb_no_newline(dir: &Path) -> PathBuf {
    let p = dir.join("ten_mb_no_newline.csv");
    std::fs::write(&p, vec![b'x'; 10 << 20]).expect("write");
    p
}

/// 40 MB with no line break: past the CSV reader's 32 MiB line cap.
fn forty_mb_no_newline(dir: &Path) -> PathBuf {
    let p = dir.join("forty_mb_no_newline.csv");
    std::fs::write(&p, vec![b'x'; 40 << 20]).expect("write");
    p
}

/// An X12 file whose one segment is 10 MB long.
fn x12_ten_mb_segment(dir: &Path) -> PathBuf {
    let p = dir.join("x12_ten_mb_segment.x12");
    let isa = "ISA*00*          *00*          *ZZ*ACMEPAYER      *ZZ*HUBSYNC        *261120*0815*^*00501*000000501*0*P*:~\n";
    let mut body = String::from(isa);
    body.push_str(
        "GS*HI*ACMEPAYER*HUBSYNC*20261120*0815*501*X*005010X217~\nST*278*0001*005010X217~\nNTE*ADD*",
    );
    body.push_str(&"N".repeat(10 << 20));
    body.push_str("~\nSE*3*0001~\nGE*1*501~\nIEA*1*000000501~\n");
    std::fs::write(&p, body).expect("write");
    p
}

pub fn workbook(rows: &[[&str; 7]]) -> rust_xlsxwriter::Workbook {
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet();
    for (c, h) in HEADER.trim_end().split(',').enumerate() {
        ws.write_string(0, c as u16, h).expect("header");
    }
    for (r, row) in rows.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            ws.write_string(r as u32 + 1, c as u16, *v).expect("cell");
        }
    }
    wb
}

pub const XROW: [&str; 7] = [
    "MF-0001",
    "P7700001",
    "Zabriskie",
    "02/29/1952",
    "REF",
    "11/20/2026",
    "Aetna",
];

/// A sheet whose only far cell is XFD1048576: the declared range is a
/// million rows by 16,384 columns (17 billion cells), almost all empty.
fn sheet_far_cell(dir: &Path) -> PathBuf {
    let p = dir.join("sheet_far_cell.xlsx");
    let mut wb = workbook(&[XROW]);
    let ws = wb.worksheet_from_index(0).expect("sheet");
    ws.write_number(1_048_575, 16_383, 0).expect("far cell");
    wb.save(&p).expect("save");
    p
}

/// A sheet with a million empty cells (`<c r=".."/>`, no value) after one row.
fn million_empty_cells(dir: &Path) -> PathBuf {
    let p = dir.join("million_empty_cells.xlsx");
    let z = with_sheet_xml(&mut workbook(&[XROW]), |xml| {
        let mut empty = String::with_capacity(30 << 20);
        for r in 3..=1002u32 {
            empty.push_str(&format!("<row r=\"{r}\">"));
            for c in 0..1000u32 {
                empty.push_str(&format!("<c r=\"{}{r}\"/>", col_name(c)));
            }
            empty.push_str("</row>");
        }
        xml.replacen("</sheetData>", &format!("{empty}</sheetData>"), 1)
    });
    std::fs::write(&p, z).expect("write");
    p
}

fn col_name(mut c: u32) -> String {
    let mut s = Vec::new();
    loop {
        s.push(b'A' + (c % 26) as u8);
        if c < 26 {
            break;
        }
        c = c / 26 - 1;
    }
    s.reverse();
    String::from_utf8(s).expect("ascii")
}

/// A valid workbook with one value altered after zipping: the shared
/// strings entry's bytes no longer match its CRC-32 (bit rot, a bad copy).
fn zip_corrupt_entry(dir: &Path) -> PathBuf {
    let p = dir.join("zip_corrupt_entry.xlsx");
    let bytes = workbook(&[XROW]).save_to_buffer().expect("xlsx");
    let entries = unzip_stored(&bytes);
    let mut z = zip_stored(&entries, None);
    let at = find(&z, b"MF-0001").expect("the case id, stored");
    z[at..at + 7].copy_from_slice(b"MF-6661");
    std::fs::write(&p, z).expect("write");
    p
}

/// A workbook whose sheet entry declares a 4 GB uncompressed size.
fn zip_huge_declared_size(dir: &Path) -> PathBuf {
    let p = dir.join("zip_huge_declared_size.xlsx");
    let bytes = workbook(&[XROW]).save_to_buffer().expect("xlsx");
    let entries = unzip_stored(&bytes);
    std::fs::write(
        &p,
        zip_stored(&entries, Some(("xl/worksheets/sheet1.xml", 0xFFFF_FFF0))),
    )
    .expect("write");
    p
}

/// XML nested 100,000 elements deep inside a record.
fn xml_deep_nesting(dir: &Path) -> PathBuf {
    let p = dir.join("xml_deep_nesting.xml");
    let mut s = String::from(
        "<?xml version=\"1.0\"?>\n<hub:Export xmlns:hub=\"urn:example:beacon-hub:v2\">\n<hub:Case id=\"MF-X1\"><hub:Patient ref=\"P-77001\"/><hub:Status code=\"REF\" date=\"2026-11-18\"/>",
    );
    s.push_str(&"<d>".repeat(100_000));
    s.push_str(&"</d>".repeat(100_000));
    s.push_str("</hub:Case>\n</hub:Export>\n");
    std::fs::write(&p, s).expect("write");
    p
}

/// 100,000 attributes on one element.
fn xml_many_attributes(dir: &Path) -> PathBuf {
    let p = dir.join("xml_many_attributes.xml");
    let mut s = String::from("<?xml version=\"1.0\"?>\n<hub:Export xmlns:hub=\"urn:example:beacon-hub:v2\">\n<hub:Case id=\"MF-X1\"");
    for i in 0..100_000 {
        s.push_str(&format!(" a{i}=\"v\""));
    }
    s.push_str("><hub:Patient ref=\"P-77001\"/><hub:Status code=\"REF\" date=\"2026-11-18\"/></hub:Case>\n</hub:Export>\n");
    std::fs::write(&p, s).expect("write");
    p
}

/// Rewrites the first sheet of a generated workbook (stored, unzipped).
fn with_sheet_xml(wb: &mut rust_xlsxwriter::Workbook, edit: impl FnOnce(String) -> String) -> Vec<u8> {
    let bytes = wb.save_to_buffer().expect("xlsx");
    let mut entries = unzip_stored(&bytes);
    let sheet = entries
        .iter_mut()
        .find(|(n, _)| n == "xl/worksheets/sheet1.xml")
        .expect("sheet1");
    sheet.1 = edit(String::from_utf8(sheet.1.clone()).expect("utf-8 sheet")).into_bytes();
    zip_stored(&entries, None)
}

/// Two good rows, then a row whose first cell names shared string 9999 of
/// a table of a dozen: calamine indexes past the end and panics.
fn shared_string_out_of_range(dir: &Path) -> PathBuf {
    let p = dir.join("shared_string_out_of_range.xlsx");
    let mut third = XROW;
    third[0] = "MF-0003";
    let mut second = XROW;
    second[0] = "MF-0002";
    let z = with_sheet_xml(&mut workbook(&[XROW, second, third]), |xml| {
        // Row 4's first cell: `<c r="A4" t="s"><v>N</v></c>`.
        let at = xml
            .find("<c r=\"A4\" t=\"s\"><v>")
            .expect("A4 is a shared string");
        let start = at + "<c r=\"A4\" t=\"s\"><v>".len();
        let end = start + xml[start..].find("</v>").expect("end of A4");
        format!("{}9999{}", &xml[..start], &xml[end..])
    });
    std::fs::write(&p, z).expect("write");
    p
}

/// The status date of the only row is a formula saved without its value
/// (a workbook written by a tool that does not calculate).
fn formula_without_value(dir: &Path) -> PathBuf {
    let p = dir.join("formula_without_value.xlsx");
    let mut wb = workbook(&[XROW]);
    let ws = wb.worksheet_from_index(0).expect("sheet");
    ws.write_formula(1, 5, "=DATE(2026,11,20)").expect("formula");
    let z = with_sheet_xml(&mut wb, |xml| {
        let at = xml.find("<f>DATE(2026,11,20)</f>").expect("the formula");
        let rest = &xml[at..];
        let v = rest.find("<v>").expect("rust_xlsxwriter writes a cached 0");
        let v_end = rest.find("</v>").expect("end of v") + "</v>".len();
        format!("{}{}{}", &xml[..at + v], &rest[v_end..], "")
    });
    std::fs::write(&p, z).expect("write");
    p
}

pub fn generate(name: &str, dir: &Path) -> PathBuf {
    match name {
        "shared_string_out_of_range" => shared_string_out_of_range(dir),
        "formula_without_value" => formula_without_value(dir),
        "ten_mb_line" => ten_mb_line(dir),
        "ten_mb_no_newline" => ten_mb_no_newline(dir),
        "forty_mb_no_newline" => forty_mb_no_newline(dir),
        "x12_ten_mb_segment" => x12_ten_mb_segment(dir),
        "sheet_far_cell" => sheet_far_cell(dir),
        "million_empty_cells" => million_empty_cells(dir),
        "zip_corrupt_entry" => zip_corrupt_entry(dir),
        "zip_huge_declared_size" => zip_huge_declared_size(dir),
        "xml_deep_nesting" => xml_deep_nesting(dir),
        "xml_many_attributes" => xml_many_attributes(dir),
        other => panic!("no generator `{other}`"),
    }
}

/// Every generator, for the PHI test's sweep.
pub const GENERATORS: &[&str] = &[
    "shared_string_out_of_range",
    "formula_without_value",
    "ten_mb_line",
    "ten_mb_no_newline",
    "forty_mb_no_newline",
    "x12_ten_mb_segment",
    "sheet_far_cell",
    "million_empty_cells",
    "zip_corrupt_entry",
    "zip_huge_declared_size",
    "xml_deep_nesting",
    "xml_many_attributes",
];

// ------------------------------------------------- a minimal zip (stored)

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn u16le(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_le_bytes([b[at], b[at + 1]]))
}
fn u32le(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize
}

/// The entries of a zip (stored or deflated), found through its central
/// directory; deflated data goes through [`inflate`].
pub fn unzip_stored(zip: &[u8]) -> Vec<(String, Vec<u8>)> {
    let eocd = (0..zip.len() - 21)
        .rev()
        .find(|&i| zip[i..i + 4] == [0x50, 0x4b, 0x05, 0x06])
        .expect("EOCD");
    let n = u16le(zip, eocd + 10);
    let mut at = u32le(zip, eocd + 16);
    let mut out = Vec::new();
    for _ in 0..n {
        assert_eq!(
            zip[at..at + 4],
            [0x50, 0x4b, 0x01, 0x02],
            "central directory entry"
        );
        let method = u16le(zip, at + 10);
        let csize = u32le(zip, at + 20);
        let name_len = u16le(zip, at + 28);
        let extra_len = u16le(zip, at + 30);
        let comment_len = u16le(zip, at + 32);
        let local = u32le(zip, at + 42);
        let name = String::from_utf8_lossy(&zip[at + 46..at + 46 + name_len]).into_owned();
        let data_at = local + 30 + u16le(zip, local + 26) + u16le(zip, local + 28);
        let raw = &zip[data_at..data_at + csize];
        let data = match method {
            0 => raw.to_vec(),
            8 => inflate(raw),
            m => panic!("zip method {m}"),
        };
        out.push((name, data));
        at += 46 + name_len + extra_len + comment_len;
    }
    out
}

/// A zip of stored entries; `lie` declares another uncompressed size for one.
pub fn zip_stored(entries: &[(String, Vec<u8>)], lie: Option<(&str, u32)>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let crc = crc32(data);
        let size = data.len() as u32;
        let usize_declared = match lie {
            Some((n, s)) if n == name => s,
            _ => size,
        };
        let offset = out.len() as u32;
        let mut local = Vec::new();
        local.extend_from_slice(&[0x50, 0x4b, 0x03, 0x04, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        local.extend_from_slice(&crc.to_le_bytes());
        local.extend_from_slice(&size.to_le_bytes());
        local.extend_from_slice(&usize_declared.to_le_bytes());
        local.extend_from_slice(&(name.len() as u16).to_le_bytes());
        local.extend_from_slice(&0u16.to_le_bytes());
        local.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&local);
        out.extend_from_slice(data);
        central.extend_from_slice(&[0x50, 0x4b, 0x01, 0x02, 20, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&size.to_le_bytes());
        central.extend_from_slice(&usize_declared.to_le_bytes());
        central.extend_from_slice(&(name.len() as u16).to_le_bytes());
        central.extend_from_slice(&[0u8; 12]);
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let cd_at = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&[0x50, 0x4b, 0x05, 0x06, 0, 0, 0, 0]);
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_at.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// A small, slow, complete DEFLATE decoder (RFC 1951), enough to read back
/// the workbooks rust_xlsxwriter writes.
fn inflate(data: &[u8]) -> Vec<u8> {
    struct Bits<'a> {
        d: &'a [u8],
        pos: usize,
    }
    impl Bits<'_> {
        fn bit(&mut self) -> u32 {
            let b = (self.d[self.pos / 8] >> (self.pos % 8)) & 1;
            self.pos += 1;
            u32::from(b)
        }
        fn bits(&mut self, n: u32) -> u32 {
            (0..n).fold(0, |acc, i| acc | (self.bit() << i))
        }
    }
    /// (code lengths) → canonical Huffman: (count per length, symbols in order).
    fn build(lengths: &[u8]) -> (Vec<u16>, Vec<u16>) {
        let mut counts = vec![0u16; 16];
        for &l in lengths {
            counts[usize::from(l)] += 1;
        }
        counts[0] = 0;
        let mut offs = [0u16; 16];
        for i in 1..16 {
            offs[i] = offs[i - 1] + counts[i - 1];
        }
        let mut syms = vec![0u16; lengths.len()];
        for (s, &l) in lengths.iter().enumerate() {
            if l != 0 {
                syms[usize::from(offs[usize::from(l)])] = s as u16;
                offs[usize::from(l)] += 1;
            }
        }
        (counts, syms)
    }
    fn decode(b: &mut Bits, h: &(Vec<u16>, Vec<u16>)) -> u16 {
        let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
        for len in 1..16 {
            code |= b.bit() as i32;
            let count = i32::from(h.0[len]);
            if code - count < first {
                return h.1[(index + (code - first)) as usize];
            }
            index += count;
            first += count;
            first <<= 1;
            code <<= 1;
        }
        panic!("bad Huffman code");
    }
    const LBASE: [u16; 29] = [
        3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131, 163,
        195, 227, 258,
    ];
    const LEXT: [u8; 29] = [
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
    ];
    const DBASE: [u16; 30] = [
        1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049,
        3073, 4097, 6145, 8193, 12289, 16385, 24577,
    ];
    const DEXT: [u8; 30] = [
        0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13,
    ];
    let mut b = Bits { d: data, pos: 0 };
    let mut out: Vec<u8> = Vec::new();
    loop {
        let last = b.bit();
        match b.bits(2) {
            0 => {
                b.pos = b.pos.div_ceil(8) * 8;
                let len = b.bits(16) as usize;
                b.bits(16);
                let at = b.pos / 8;
                out.extend_from_slice(&data[at..at + len]);
                b.pos += len * 8;
            }
            kind => {
                let (lit, dist) = if kind == 1 {
                    let mut l = vec![8u8; 288];
                    l[144..256].fill(9);
                    l[256..280].fill(7);
                    (build(&l), build(&[5u8; 30]))
                } else {
                    let hlit = b.bits(5) as usize + 257;
                    let hdist = b.bits(5) as usize + 1;
                    let hclen = b.bits(4) as usize + 4;
                    const ORDER: [usize; 19] =
                        [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];
                    let mut cl = [0u8; 19];
                    for &o in ORDER.iter().take(hclen) {
                        cl[o] = b.bits(3) as u8;
                    }
                    let clh = build(&cl);
                    let mut lens = Vec::new();
                    while lens.len() < hlit + hdist {
                        match decode(&mut b, &clh) {
                            s @ 0..=15 => lens.push(s as u8),
                            16 => {
                                let prev = *lens.last().expect("a previous length");
                                for _ in 0..3 + b.bits(2) {
                                    lens.push(prev);
                                }
                            }
                            17 => lens.extend(std::iter::repeat_n(0, 3 + b.bits(3) as usize)),
                            _ => lens.extend(std::iter::repeat_n(0, 11 + b.bits(7) as usize)),
                        }
                    }
                    (build(&lens[..hlit]), build(&lens[hlit..]))
                };
                loop {
                    let s = decode(&mut b, &lit);
                    if s < 256 {
                        out.push(s as u8);
                    } else if s == 256 {
                        break;
                    } else {
                        let i = usize::from(s - 257);
                        let len = usize::from(LBASE[i]) + b.bits(u32::from(LEXT[i])) as usize;
                        let d = usize::from(decode(&mut b, &dist));
                        let dist = usize::from(DBASE[d]) + b.bits(u32::from(DEXT[d])) as usize;
                        let start = out.len() - dist;
                        for k in 0..len {
                            out.push(out[start + k]);
                        }
                    }
                }
            }
        }
        if last == 1 {
            return out;
        }
    }
}
