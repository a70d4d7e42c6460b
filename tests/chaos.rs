//! The randomized crash suite: seeded runs of the real `hubsync run` binary
//! against generated hub files, a faulty receiver, and `kill -9`.
//!
//! One run (one seed): a generator writes a stream of files for four feeds
//! (CSV and xlsx drop folders, an X12 278 drop folder, and CSV over SFTP from
//! a real `sshd`) in phases: day 1, day 2, day 3, with duplicates under other
//! names, byte-identical re-drops of earlier days, files written slowly under
//! their final name, bad rows and a file whose header breaks the contract.
//! A receiver on 127.0.0.1:0 verifies every signature itself and answers 5xx
//! or stalls past the subscriber's timeout at random. The daemon is killed
//! with SIGKILL at random moments (a timer, a file mid-way in the ledger, a
//! webhook request in flight, an SFTP download in staging) and restarted.
//!
//! The oracle is computed from the generated rows alone: the test replays
//! every well-formed row of every accepted file in phase order through its
//! own key → content map (no hubsync code), which gives the deltas a correct
//! run must deliver: each exactly once (one webhook-id, one body), and per
//! case in phase order. Files: each ends in the archive or in error, never
//! both, and nothing stays in a drop folder.
//!
//! `CHAOS_SEED=N` replays one seed; `CHAOS_SEEDS=K` (or
//! `CHAOS_SEEDS_CHAOS_SQLITE=K`, …) runs K seeds per test (default, the
//! short CI mode: 8 SQLite, 6 PostgreSQL, 6 PostgreSQL with two instances);
//! `CHAOS_LONG=1` makes each run bigger; `CHAOS_REPORT=path` appends one JSON
//! line of figures per test. `scripts/chaos --seeds 200` is the long mode.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use chrono::NaiveDate;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use support::process::{bin_under_test, kill9};
use support::receiver::{key_of, serve, signed_id};
use support::{files_in, PgDb, PSEUDONYM_KEY, SECRET};

/// The subscriber's per-request timeout; a stall lasts longer.
const TIMEOUT_MS: u64 = 2000;

// ------------------------------------------------------------------ model

/// The four feeds of a run, each its own connector and case-id namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Feed {
    Csv,
    Xlsx,
    X12,
    Sftp,
}

impl Feed {
    const ALL: [Feed; 4] = [Feed::Csv, Feed::Xlsx, Feed::X12, Feed::Sftp];
    fn connector(self) -> &'static str {
        match self {
            Feed::Csv => "csv-hub",
            Feed::Xlsx => "xlsx-hub",
            Feed::X12 => "x12-payer",
            Feed::Sftp => "sftp-hub",
        }
    }
    fn prefix(self) -> &'static str {
        match self {
            Feed::Csv => "C",
            Feed::Xlsx => "E",
            Feed::X12 => "TRK-",
            Feed::Sftp => "S",
        }
    }
    fn ext(self) -> &'static str {
        match self {
            Feed::Csv | Feed::Sftp => "csv",
            Feed::Xlsx => "xlsx",
            Feed::X12 => "x12",
        }
    }
    /// The hub's code for each journey stage, and the milestone it means
    /// (the mappings' value maps, restated here by hand).
    fn stages(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Feed::X12 => &[("A4", "pa.pended"), ("A1", "pa.approved"), ("C", "pa.cancelled")],
            _ => &[
                ("REF", "referral.received"),
                ("BI", "bv.started"),
                ("BC", "bv.completed"),
                ("PAS", "pa.submitted"),
                ("PAP", "pa.pended"),
                ("PAD", "pa.denied"),
                ("CPE", "copay.enrolled"),
            ],
        }
    }
}

/// What is wrong with a generated row, if anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bad {
    Date,
    Code,
}

/// One generated record.
#[derive(Debug, Clone)]
struct Row {
    case: String,
    patient: String,
    stage: usize,
    date: NaiveDate,
    payer: &'static str,
    bad: Option<Bad>,
    /// A record no rule maps (status PAA without an approval date; an X12
    /// event without a decision): read, filtered, no delta. Fillers make
    /// files long enough for a kill to land while one is mid-way.
    filler: bool,
}

/// One generated file.
#[derive(Debug, Clone)]
struct GenFile {
    feed: Feed,
    name: String,
    rows: Vec<Row>,
    /// The header breaks the contract: the whole file goes to `error/`.
    broken_header: bool,
    bytes: Vec<u8>,
    /// Written in pieces under its final name (a hub still uploading).
    slow: bool,
    /// A byte copy of an earlier file (other name, or a later re-drop).
    copy_of: Option<String>,
}

/// A delta the oracle expects: the state key and the content it announces.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Delta {
    case: String,
    milestone: String,
    occurred_at: String,
    payer: String,
    change: &'static str,
}

const PAYERS: [&str; 4] = ["Aetna", "Cigna", "Humana", "Kaiser"];

#[derive(Debug, Clone, Copy)]
struct Size {
    phases: usize,
    cases: [usize; 4],
    /// At most this many filler records per file, per feed.
    fillers: [usize; 4],
    kills: (usize, usize),
}

fn size(long: bool) -> Size {
    if long {
        Size {
            phases: 4,
            cases: [120, 40, 40, 60],
            fillers: [6000, 1500, 1000, 8000],
            kills: (2, 5),
        }
    } else {
        Size {
            phases: 3,
            cases: [30, 12, 10, 16],
            fillers: [2500, 600, 400, 4000],
            kills: (1, 3),
        }
    }
}

/// The files of every phase, generated from the seed.
fn generate(rng: &mut StdRng, sz: Size, sftp: bool) -> Vec<Vec<GenFile>> {
    let base = NaiveDate::from_ymd_opt(2026, 11, 1).expect("a valid date");
    let mut phases: Vec<Vec<GenFile>> = vec![Vec::new(); sz.phases];
    for (fi, feed) in Feed::ALL.into_iter().enumerate() {
        if feed == Feed::Sftp && !sftp {
            continue;
        }
        let n = sz.cases[fi];
        // Journey state per case: stage, date bump, payer.
        let mut cases: Vec<(usize, i64, &'static str)> = (0..n)
            .map(|_| (0, 0, PAYERS[rng.random_range(0..PAYERS.len())]))
            .collect();
        let max_stage = feed.stages().len() - 1;
        for (p, phase) in phases.iter_mut().enumerate() {
            if p > 0 {
                for c in cases.iter_mut() {
                    match rng.random_range(0..10) {
                        0..=4 if c.0 < max_stage => c.0 += 1,
                        // Same milestone, new content: an update.
                        5 | 6 => {
                            if feed == Feed::X12 {
                                c.1 += 1;
                            } else {
                                c.2 =
                                    PAYERS[(PAYERS.iter().position(|x| *x == c.2).expect("a payer") + 1) % 4];
                            }
                        }
                        _ => {}
                    }
                }
            }
            // The cases of this phase, split over 1–3 files.
            let files = if feed == Feed::Csv {
                rng.random_range(1..=3)
            } else {
                rng.random_range(1..=2)
            };
            let mut buckets: Vec<Vec<Row>> = vec![Vec::new(); files];
            for (i, c) in cases.iter().enumerate() {
                // X12 dates fall back to the BHT date when DTP*102 is bad, so an
                // X12 row is made bad by its decision code only.
                let bad = match rng.random_range(0..40) {
                    0 if feed != Feed::X12 => Some(Bad::Date),
                    0 | 1 => Some(Bad::Code),
                    _ => None,
                };
                let row = Row {
                    case: format!("{}{:05}", feed.prefix(), i),
                    patient: format!("{:09}", 100_000_000 + i * 7 + fi),
                    stage: c.0,
                    date: base + chrono::Duration::days(c.0 as i64 * 3 + c.1),
                    payer: c.2,
                    bad,
                    filler: false,
                };
                buckets[rng.random_range(0..files)].push(row);
            }
            for (k, mut rows) in buckets.into_iter().enumerate() {
                if rows.is_empty() {
                    continue;
                }
                let fillers = rng.random_range(0..=sz.fillers[fi]);
                for j in 0..fillers {
                    let at = rng.random_range(0..=rows.len());
                    rows.insert(
                        at,
                        Row {
                            case: format!("F{}{:06}", feed.prefix(), j),
                            patient: format!("{:09}", 900_000_000 + j),
                            stage: 0,
                            date: base,
                            payer: "Aetna",
                            bad: None,
                            filler: true,
                        },
                    );
                }
                let broken_header = feed == Feed::Csv && rng.random_range(0..12) == 0;
                let name = format!("{}_d{}_{k}.{}", feed.connector(), p + 1, feed.ext());
                let bytes = render(feed, &rows, broken_header, p * 10 + k + 1);
                phase.push(GenFile {
                    feed,
                    name,
                    rows,
                    broken_header,
                    bytes,
                    slow: feed != Feed::Sftp && rng.random_range(0..4) == 0,
                    copy_of: None,
                });
            }
        }
    }
    // Duplicates under other names (same phase) and re-drops of earlier
    // phases' good files (same bytes, any name).
    for p in 0..phases.len() {
        let mut extra = Vec::new();
        for f in &phases[p] {
            if !f.broken_header && rng.random_range(0..4) == 0 {
                let mut d = f.clone();
                d.name = format!(
                    "{}_copy{}.{}",
                    f.name.trim_end_matches(&format!(".{}", f.feed.ext())),
                    p,
                    f.feed.ext()
                );
                d.copy_of = Some(f.name.clone());
                d.slow = false;
                extra.push(d);
            }
        }
        if p > 0 {
            for f in phases[p - 1]
                .iter()
                .filter(|f| f.copy_of.is_none() && !f.broken_header)
            {
                if rng.random_range(0..5) == 0 {
                    let mut d = f.clone();
                    d.name = format!(
                        "{}_redrop{}.{}",
                        f.name.trim_end_matches(&format!(".{}", f.feed.ext())),
                        p,
                        f.feed.ext()
                    );
                    d.copy_of = Some(f.name.clone());
                    d.slow = false;
                    extra.push(d);
                }
            }
        }
        phases[p].extend(extra);
    }
    phases
}

fn us_date(d: NaiveDate) -> String {
    d.format("%m/%d/%Y").to_string()
}

/// A row's status code and date as the hub writes them (bad ones included).
fn cells(feed: Feed, r: &Row) -> (String, String) {
    let code = match r.bad {
        _ if r.filler => "PAA".to_string(),
        Some(Bad::Code) => "ZZ".to_string(),
        _ => feed.stages()[r.stage].0.to_string(),
    };
    let date = match (r.bad, feed) {
        (Some(Bad::Date), _) => "13/45/2026".to_string(),
        (_, Feed::X12) => r.date.format("%Y%m%d").to_string(),
        _ => us_date(r.date),
    };
    (code, date)
}

fn render(feed: Feed, rows: &[Row], broken_header: bool, control: usize) -> Vec<u8> {
    let header = if broken_header {
        ["Case ID", "Patient ID", "Status", "Status Date", "Payer"]
    } else {
        ["Case ID", "Patient ID", "Status Code", "Status Date", "Payer"]
    };
    match feed {
        Feed::Csv | Feed::Sftp => {
            let mut s = header.join(",");
            s.push('\n');
            for r in rows {
                let (code, date) = cells(feed, r);
                s.push_str(&format!("{},{},{code},{date},{}\n", r.case, r.patient, r.payer));
            }
            s.into_bytes()
        }
        Feed::Xlsx => {
            let mut wb = rust_xlsxwriter::Workbook::new();
            let ws = wb.add_worksheet();
            for (c, h) in header.iter().enumerate() {
                ws.write_string(0, c as u16, *h).expect("write header");
            }
            for (i, r) in rows.iter().enumerate() {
                let (code, date) = cells(feed, r);
                let row = i as u32 + 1;
                for (c, v) in [r.case.as_str(), &r.patient, &code, &date, r.payer]
                    .iter()
                    .enumerate()
                {
                    ws.write_string(row, c as u16, *v).expect("write cell");
                }
            }
            wb.save_to_buffer().expect("xlsx renders")
        }
        Feed::X12 => render_x12(rows, control),
    }
}

/// An X12 278 response (005010X217): one patient event per row.
fn render_x12(rows: &[Row], control: usize) -> Vec<u8> {
    let mut segs = vec![
        "ST*278*0001*005010X217".to_string(),
        "BHT*0007*11*REF1*20261120*0815*18".to_string(),
        "HL*1**20*1".to_string(),
        "NM1*X3*2*CHAOS HEALTH PLAN*****PI*60054".to_string(),
        "HL*2*1*21*1".to_string(),
        "NM1*1P*2*NORTHSIDE ONCOLOGY*****XX*1184795521".to_string(),
        "HL*3*2*22*1".to_string(),
        "NM1*IL*1*QUINN*AVERY****MI*W100200300".to_string(),
    ];
    for (i, r) in rows.iter().enumerate() {
        let (code, date) = cells(Feed::X12, r);
        segs.push(format!("HL*{}*3*EV*0", i + 4));
        segs.push(format!("TRN*2*{}*9012345678", r.case));
        segs.push("UM*SC*I*3*11:B".to_string());
        if !r.filler {
            segs.push(format!("HCR*{code}"));
        }
        segs.push(format!("DTP*102*D8*{date}"));
    }
    let n = segs.len() + 1;
    segs.push(format!("SE*{n}*0001"));
    let mut out = format!(
        "ISA*00*          *00*          *ZZ*CHAOSPAYER     *ZZ*HUBSYNC        *261120*0815*^*00501*{control:09}*0*P*:~\n\
         GS*HI*CHAOSPAYER*HUBSYNC*20261120*0815*{control}*X*005010X217~\n"
    );
    for s in segs {
        out.push_str(&s);
        out.push_str("~\n");
    }
    out.push_str(&format!("GE*1*{control}~\nIEA*1*{control:09}~\n"));
    out.into_bytes()
}

/// The oracle: replays the phases' files through a key → content map.
/// Within a phase a case is in one file (copies aside), so file order inside
/// a phase cannot change the outcome; phases are processed one after another.
fn oracle(phases: &[Vec<GenFile>]) -> Vec<Vec<Delta>> {
    let mut state: HashMap<(String, String), (String, String)> = HashMap::new();
    let mut out = Vec::new();
    for files in phases {
        let mut deltas = BTreeSet::new();
        for f in files.iter().filter(|f| !f.broken_header && f.copy_of.is_none()) {
            for r in f.rows.iter().filter(|r| r.bad.is_none() && !r.filler) {
                let milestone = f.feed.stages()[r.stage].1.to_string();
                let content = (
                    r.date.format("%Y-%m-%d").to_string(),
                    if f.feed == Feed::X12 {
                        "CHAOS HEALTH PLAN"
                    } else {
                        r.payer
                    }
                    .to_string(),
                );
                let key = (r.case.clone(), milestone.clone());
                let change = match state.get(&key) {
                    None => "created",
                    Some(c) if *c == content => continue,
                    Some(_) => "updated",
                };
                state.insert(key, content.clone());
                deltas.insert(Delta {
                    case: r.case.clone(),
                    milestone,
                    occurred_at: content.0,
                    payer: content.1,
                    change,
                });
            }
        }
        out.push(deltas.into_iter().collect());
    }
    out
}

// --------------------------------------------------------------- receiver

/// One accepted (2xx) request.
#[derive(Debug, Clone)]
struct Accepted {
    id: String,
    delta: Delta,
    sequence: i64,
}

#[derive(Default, Clone)]
struct RxState {
    /// webhook-id → every distinct body seen under it.
    bodies: HashMap<String, BTreeSet<Vec<u8>>>,
    accepted: Vec<Accepted>,
    requests: u64,
    bad_signatures: u64,
    failed: u64,
    stalled: u64,
}

struct Receiver {
    addr: std::net::SocketAddr,
    state: Arc<Mutex<RxState>>,
    /// When non-zero: SIGKILL this pid on the next request, before answering.
    kill_pid: Arc<AtomicU32>,
    killed_in_flight: Arc<AtomicBool>,
    in_flight: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

/// Kills an armed pid the moment a file event matches: a write to the
/// SQLite WAL (a commit under way) or a download appearing in SFTP staging.
struct Tripwire {
    armed: Arc<AtomicU32>,
    fired: Arc<AtomicBool>,
    _watcher: notify::RecommendedWatcher,
}

impl Tripwire {
    fn new(dir: &Path, hit: fn(&Path) -> bool) -> Tripwire {
        use notify::Watcher;
        let armed = Arc::new(AtomicU32::new(0));
        let fired = Arc::new(AtomicBool::new(false));
        let (a, f) = (armed.clone(), fired.clone());
        let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            if let Ok(ev) = ev {
                if (ev.kind.is_create() || ev.kind.is_modify()) && ev.paths.iter().any(|p| hit(p)) {
                    {
                        let pid = a.swap(0, Ordering::SeqCst);
                        if pid != 0 {
                            kill9(pid);
                            f.store(true, Ordering::SeqCst);
                        }
                    }
                }
            }
        })
        .expect("an inotify watcher");
        std::fs::create_dir_all(dir).expect("mkdir watched");
        watcher
            .watch(dir, notify::RecursiveMode::NonRecursive)
            .expect("watch a folder");
        Tripwire {
            armed,
            fired,
            _watcher: watcher,
        }
    }

    /// Arms the wire for `pid`, waits up to `cap` for it to fire; disarms.
    async fn wait(&self, pid: u32, cap: Duration) -> bool {
        self.fired.store(false, Ordering::SeqCst);
        self.armed.store(pid, Ordering::SeqCst);
        let t0 = Instant::now();
        while t0.elapsed() < cap && !self.fired.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        self.armed.store(0, Ordering::SeqCst);
        self.fired.swap(false, Ordering::SeqCst)
    }
}

impl Receiver {
    async fn start(seed: u64, fail_pct: u32, stall_pct: u32) -> Receiver {
        let key = key_of(SECRET);
        let state: Arc<Mutex<RxState>> = Arc::default();
        let rng = Arc::new(Mutex::new(StdRng::seed_from_u64(seed ^ 0x5eed)));
        let kill_pid = Arc::new(AtomicU32::new(0));
        let killed_in_flight = Arc::new(AtomicBool::new(false));
        let in_flight = Arc::new(AtomicU64::new(0));
        let (st, kp, kf, inf) = (
            state.clone(),
            kill_pid.clone(),
            killed_in_flight.clone(),
            in_flight.clone(),
        );
        let handler = move |headers: HeaderMap, body: Bytes| {
            let (st, kp, kf, inf, key, rng) = (
                st.clone(),
                kp.clone(),
                kf.clone(),
                inf.clone(),
                key.clone(),
                rng.clone(),
            );
            async move {
                inf.fetch_add(1, Ordering::SeqCst);
                let pid = kp.swap(0, Ordering::SeqCst);
                if pid != 0 {
                    // The daemon dies with this request in flight.
                    kill9(pid);
                    kf.store(true, Ordering::SeqCst);
                }
                let roll = rng.lock().expect("rng lock").random_range(0..100u32);
                let answer = {
                    let mut s = st.lock().expect("receiver lock");
                    s.requests += 1;
                    match signed_id(&key, &headers, &body) {
                        None => {
                            s.bad_signatures += 1;
                            Err(StatusCode::UNAUTHORIZED)
                        }
                        Some(id) => {
                            s.bodies.entry(id.clone()).or_default().insert(body.to_vec());
                            if roll < fail_pct {
                                s.failed += 1;
                                Err(StatusCode::from_u16(if roll % 2 == 0 { 500 } else { 503 })
                                    .expect("a status"))
                            } else if roll < fail_pct + stall_pct {
                                s.stalled += 1;
                                Ok(None)
                            } else {
                                Ok(Some(id))
                            }
                        }
                    }
                };
                let status = match answer {
                    Err(code) => code,
                    Ok(None) => {
                        // A slow answer, inside the subscriber's timeout (a
                        // timeout makes hubsync slow down for a minute, which
                        // would stall the run, so past-timeout stalls are
                        // left to tests/delivery.rs).
                        tokio::time::sleep(Duration::from_millis(TIMEOUT_MS / 3 + u64::from(roll) * 10))
                            .await;
                        StatusCode::SERVICE_UNAVAILABLE
                    }
                    Ok(Some(id)) => {
                        let v: serde_json::Value = serde_json::from_slice(&body).expect("the body is JSON");
                        let d = &v["data"];
                        let s = |f: &serde_json::Value| f.as_str().unwrap_or("").to_string();
                        let acc = Accepted {
                            id,
                            delta: Delta {
                                case: s(&d["case_id"]),
                                milestone: s(&d["milestone"]),
                                occurred_at: s(&d["occurred_at"]),
                                payer: s(&d["attributes"]["payer"]),
                                change: if d["change"]["kind"] == "updated" {
                                    "updated"
                                } else {
                                    "created"
                                },
                            },
                            sequence: d["sequence"].as_i64().unwrap_or(-1),
                        };
                        st.lock().expect("receiver lock").accepted.push(acc);
                        StatusCode::NO_CONTENT
                    }
                };
                inf.fetch_sub(1, Ordering::SeqCst);
                status
            }
        };
        let (addr, task) = serve(axum::Router::new().fallback(axum::routing::post(handler))).await;
        Receiver {
            addr,
            state,
            kill_pid,
            killed_in_flight,
            in_flight,
            task,
        }
    }

    fn accepted_ids(&self) -> usize {
        let s = self.state.lock().expect("receiver lock");
        s.accepted.iter().map(|a| &a.id).collect::<BTreeSet<_>>().len()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

// ------------------------------------------------------------------ daemon

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres { instances: usize },
}

struct Env {
    root: PathBuf,
    config: PathBuf,
    remote: Option<PathBuf>,
    children: Vec<Option<Child>>,
    spawns: usize,
}

impl Env {
    fn drop_dir(&self, feed: Feed) -> PathBuf {
        match feed {
            Feed::Sftp => self.remote.clone().expect("sftp feed has a remote folder"),
            _ => self.root.join("drop").join(feed.connector()),
        }
    }

    fn spawn(&mut self, slot: usize) {
        self.spawns += 1;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.join(format!("daemon-{slot}.log")))
            .expect("open the daemon log");
        let child = Command::new(bin_under_test())
            .args(["run", "--config"])
            .arg(&self.config)
            .env("HUBSYNC_PSEUDONYM_KEY", PSEUDONYM_KEY)
            .env("CHAOS_SECRET", SECRET)
            .env("RUST_LOG", "info,sqlx=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn hubsync run");
        while self.children.len() <= slot {
            self.children.push(None);
        }
        self.children[slot] = Some(child);
    }

    fn pid(&self, slot: usize) -> u32 {
        self.children[slot].as_ref().expect("a live daemon").id()
    }

    fn reap(&mut self, slot: usize) {
        if let Some(mut c) = self.children[slot].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A daemon that exited on its own (not killed by the test) is a failure.
    fn exited(&mut self) -> Option<String> {
        for (slot, c) in self.children.iter_mut().enumerate() {
            if let Some(Ok(Some(status))) = c.as_mut().map(Child::try_wait) {
                return Some(format!("daemon {slot} exited by itself: {status}"));
            }
        }
        None
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for slot in 0..self.children.len() {
            let text =
                std::fs::read_to_string(self.root.join(format!("daemon-{slot}.log"))).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("---- daemon {slot} (last 30 lines)\n"));
            out.push_str(&lines[lines.len().saturating_sub(30)..].join("\n"));
            out.push('\n');
        }
        out
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for slot in 0..self.children.len() {
            self.reap(slot);
        }
    }
}

fn write_config(
    root: &Path,
    store_url: &str,
    rx: &Receiver,
    rng: &mut StdRng,
    sshd: Option<(&support::sftp::Sshd, &Path)>,
) {
    support::hub::lay_out(root, &["acme-hub-status", "x12-278-response"]);
    let local = |feed: Feed, mapping: &str, format: &str| {
        format!(
            "program = \"ACME-ONC\"\nmapping = \"{mapping}\"\ntime_zone = \"America/New_York\"\n\
             [source]\nkind = \"local\"\npath = \"drop/{c}\"\npattern = \"*.{ext}\"\nsettle = \"400ms\"\nrescan = \"100ms\"\n\
             [format]\n{format}\n",
            c = feed.connector(),
            ext = feed.ext()
        )
    };
    let connectors = [
        (Feed::Csv, local(Feed::Csv, "acme-hub-status", "kind = \"csv\"")),
        (
            Feed::Xlsx,
            local(Feed::Xlsx, "acme-hub-status", "kind = \"excel\""),
        ),
        (
            Feed::X12,
            local(
                Feed::X12,
                "x12-278-response",
                "kind = \"x12\"\nseparator_collision = \"reject\"",
            ),
        ),
    ];
    for (feed, text) in connectors {
        std::fs::create_dir_all(root.join("drop").join(feed.connector())).expect("mkdir drop");
        std::fs::write(root.join(format!("connectors/{}.toml", feed.connector())), text)
            .expect("write connector");
    }
    if let Some((sshd, remote)) = sshd {
        let text = support::sftp::sftp_connector(sshd, remote, "", "")
            .expect("sftp connector")
            .replace("pattern = \"status_*.csv\"", "pattern = \"*.csv\"")
            .replace("poll_interval = \"200ms\"", "poll_interval = \"100ms\"");
        std::fs::write(
            root.join(format!("connectors/{}.toml", Feed::Sftp.connector())),
            text,
        )
        .expect("write connector");
    }
    let chunk_rows = rng.random_range(20..=200);
    let in_flight = rng.random_range(1..=8);
    let schedule = vec!["\"150ms\""; 60].join(", ");
    std::fs::write(
        root.join("config.toml"),
        format!(
            "data_dir = \"data\"\n[store]\nurl = \"{store_url}\"\nchunk_rows = {chunk_rows}\nlease = \"1s\"\n\
             [pseudonymization]\nkey_env = \"HUBSYNC_PSEUDONYM_KEY\"\n\
             [delivery]\npoll_interval = \"100ms\"\nshutdown_grace = \"1s\"\n\
             [[subscribers]]\nname = \"mfr\"\nurl = \"http://{}/hooks\"\nsecret_env = \"CHAOS_SECRET\"\n\
             timeout = \"{TIMEOUT_MS}ms\"\nmax_in_flight = {in_flight}\nretry_schedule = [{schedule}]\n\
             breaker_failures = 0\n",
            rx.addr
        ),
    )
    .expect("write config");
}

/// Places a file in its drop folder: atomically (temp name, then rename),
/// or in pieces under its final name, as a slow upload does.
fn place(dir: &Path, f: &GenFile) -> Option<std::thread::JoinHandle<()>> {
    let dest = dir.join(&f.name);
    if !f.slow {
        let tmp = dir.join(format!(".{}.part", f.name));
        std::fs::write(&tmp, &f.bytes).expect("write temp");
        std::fs::rename(&tmp, &dest).expect("rename into drop");
        return None;
    }
    let bytes = f.bytes.clone();
    Some(std::thread::spawn(move || {
        let mut out = std::fs::File::create(&dest).expect("create in drop");
        let pieces = 4;
        let step = bytes.len().div_ceil(pieces);
        for chunk in bytes.chunks(step.max(1)) {
            out.write_all(chunk).expect("write piece");
            out.flush().expect("flush");
            std::thread::sleep(Duration::from_millis(40));
        }
    }))
}

/// Partner files left in a folder (not hidden, not in sub-folders).
fn left_in(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect()
}

fn sha_of(p: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(p).expect("read a file")))
}

// --------------------------------------------------------------- the run

#[derive(Debug, Default, Clone, serde::Serialize)]
struct Figures {
    runs: u64,
    kills: u64,
    kills_mid_file: u64,
    kills_mid_delivery: u64,
    kills_mid_fetch: u64,
    kills_mid_commit: u64,
    restarts: u64,
    files: u64,
    rows: u64,
    deltas: u64,
    requests: u64,
    receiver_failures: u64,
    receiver_stalls: u64,
    lost: u64,
    duplicated: u64,
    reordered: u64,
    conflicting_bodies: u64,
    unexpected: u64,
    seconds: f64,
}

impl Figures {
    fn add(&mut self, o: &Figures) {
        self.runs += o.runs;
        self.kills += o.kills;
        self.kills_mid_file += o.kills_mid_file;
        self.kills_mid_delivery += o.kills_mid_delivery;
        self.kills_mid_fetch += o.kills_mid_fetch;
        self.kills_mid_commit += o.kills_mid_commit;
        self.restarts += o.restarts;
        self.files += o.files;
        self.rows += o.rows;
        self.deltas += o.deltas;
        self.requests += o.requests;
        self.receiver_failures += o.receiver_failures;
        self.receiver_stalls += o.receiver_stalls;
        self.lost += o.lost;
        self.duplicated += o.duplicated;
        self.reordered += o.reordered;
        self.conflicting_bodies += o.conflicting_bodies;
        self.unexpected += o.unexpected;
        self.seconds += o.seconds;
    }
}

/// How the next kill is timed.
#[derive(Debug, Clone, Copy)]
enum Trigger {
    Timer(u64),
    MidFile,
    MidDelivery,
    MidFetch,
    MidCommit,
}

async fn run_one(seed: u64, backend: Backend, long: bool) -> Figures {
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);
    let sz = size(long);
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().to_path_buf();
    if std::env::var("CHAOS_KEEP").is_ok() {
        eprintln!("  chaos root: {}", tmp.keep().display());
    }
    let rx = Receiver::start(seed, rng.random_range(5..=20), rng.random_range(0..=4)).await;
    let pg = match backend {
        Backend::Postgres { .. } => Some(PgDb::create().await),
        Backend::Sqlite => None,
    };
    let store_url = match &pg {
        Some(db) => db.url.clone(),
        None => format!("sqlite://{}", root.join("data/hubsync.db").display()),
    };
    let sftp = rng.random_range(0..3) != 0;
    let sshd = if sftp {
        Some(support::sftp::Sshd::start(&root.join("sshd"), "").expect("sshd starts"))
    } else {
        None
    };
    let remote = root.join("remote");
    std::fs::create_dir_all(&remote).expect("mkdir remote");
    write_config(
        &root,
        &store_url,
        &rx,
        &mut rng,
        sshd.as_ref().map(|s| (s, remote.as_path())),
    );
    let phases = generate(&mut rng, sz, sftp);
    let expected = oracle(&phases);
    let instances = match backend {
        Backend::Sqlite => 1,
        Backend::Postgres { instances } => instances,
    };
    let mut env = Env {
        config: root.join("config.toml"),
        root: root.clone(),
        remote: sftp.then(|| remote.clone()),
        children: Vec::new(),
        spawns: 0,
    };
    std::fs::create_dir_all(root.join("data")).expect("mkdir data");
    for slot in 0..instances {
        env.spawn(slot);
    }
    let store = loop {
        // The first daemon creates the schema; wait for it.
        if let Ok(s) = hubsync::store::Store::open(&store_url).await {
            if s.files(1).await.is_ok() {
                break s;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "seed {seed}: the store never came up\n{}",
            env.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let fail = |why: String, env: &Env| -> ! {
        panic!(
            "chaos seed {seed} ({backend:?}, long={long}) failed: {why}\nreplay: CHAOS_SEED={seed}{} cargo nextest run --test chaos\n{}",
            if long { " CHAOS_LONG=1" } else { "" },
            env.logs()
        )
    };

    let mut fig = Figures {
        runs: 1,
        ..Figures::default()
    };
    let staging = root.join("data/staging").join(Feed::Sftp.connector());
    let fetch_wire = Tripwire::new(&staging, |p| p.to_string_lossy().ends_with(".part"));
    let commit_wire = (backend == Backend::Sqlite).then(|| {
        Tripwire::new(&root.join("data"), |p| {
            p.to_string_lossy().ends_with("hubsync.db-wal")
        })
    });
    for (p, files) in phases.iter().enumerate() {
        let mut writers = Vec::new();
        for f in files {
            fig.files += 1;
            fig.rows += f.rows.len() as u64;
            if let Some(w) = place(&env.drop_dir(f.feed), f) {
                writers.push(w);
            }
        }
        let kills = rng.random_range(sz.kills.0..=sz.kills.1);
        for _ in 0..kills {
            let trigger = match rng.random_range(0..12) {
                0..=2 => Trigger::Timer(rng.random_range(20..900)),
                3..=4 => Trigger::MidFile,
                5..=7 => Trigger::MidDelivery,
                8 | 9 if sftp => Trigger::MidFetch,
                10 | 11 if commit_wire.is_some() => Trigger::MidCommit,
                _ => Trigger::Timer(rng.random_range(20..300)),
            };
            let mut wired = false;
            let slot = rng.random_range(0..instances);
            let pid = env.pid(slot);
            let t0 = Instant::now();
            let cap = Duration::from_secs(2);
            match trigger {
                Trigger::Timer(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
                Trigger::MidFile => {
                    while t0.elapsed() < cap {
                        let files = store.files(1000).await.unwrap_or_default();
                        if files
                            .iter()
                            .any(|f| f.status == hubsync::store::FileStatus::Processing && f.records_done > 0)
                        {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
                Trigger::MidDelivery => {
                    rx.killed_in_flight.store(false, Ordering::SeqCst);
                    rx.kill_pid.store(pid, Ordering::SeqCst);
                    while t0.elapsed() < cap && !rx.killed_in_flight.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    rx.kill_pid.store(0, Ordering::SeqCst);
                }
                Trigger::MidFetch => wired = fetch_wire.wait(pid, cap).await,
                Trigger::MidCommit => {
                    wired = commit_wire
                        .as_ref()
                        .expect("sqlite has a WAL wire")
                        .wait(pid, cap)
                        .await;
                    fig.kills_mid_commit += u64::from(wired);
                }
            }
            // What was under way at the moment of the kill.
            let mid_fetch = (wired && matches!(trigger, Trigger::MidFetch))
                || std::fs::read_dir(&staging)
                    .map(|rd| {
                        rd.filter_map(Result::ok)
                            .any(|e| e.file_name().to_string_lossy().ends_with(".part"))
                    })
                    .unwrap_or(false);
            let in_flight =
                rx.in_flight.load(Ordering::SeqCst) > 0 || rx.killed_in_flight.swap(false, Ordering::SeqCst);
            kill9(pid);
            env.reap(slot);
            fig.kills += 1;
            let mid_file = store
                .files(1000)
                .await
                .unwrap_or_default()
                .iter()
                .any(|f| f.status == hubsync::store::FileStatus::Processing);
            fig.kills_mid_file += u64::from(mid_file);
            fig.kills_mid_delivery += u64::from(in_flight);
            fig.kills_mid_fetch += u64::from(mid_fetch);
            if std::env::var("CHAOS_TRACE").is_ok() {
                eprintln!("  phase {p}: kill {trigger:?} after {:?} (file {mid_file}, delivery {in_flight}, fetch {mid_fetch})", t0.elapsed());
            }
            if rng.random_range(0..3) == 0 {
                tokio::time::sleep(Duration::from_millis(rng.random_range(0..300))).await;
            }
            env.spawn(slot);
            fig.restarts += 1;
        }
        for w in writers {
            w.join().expect("a slow writer finishes");
        }
        if std::env::var("CHAOS_TRACE").is_ok() {
            eprintln!("  phase {p}: kills done at {:?}", started.elapsed());
        }
        // The phase is over when every drop folder is empty (committed and
        // moved), so the next day's files come after this day's state.
        let t0 = Instant::now();
        loop {
            let mut left: Vec<String> = Feed::ALL
                .iter()
                .filter(|f| **f != Feed::Sftp || sftp)
                .flat_map(|f| left_in(&env.drop_dir(*f)))
                .collect();
            left.extend(left_in(&staging));
            if left.is_empty() {
                break;
            }
            if let Some(why) = env.exited() {
                fail(why, &env);
            }
            if t0.elapsed() > Duration::from_secs(if long { 120 } else { 60 }) {
                fail(format!("phase {} never drained: {left:?}", p + 1), &env);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    if std::env::var("CHAOS_TRACE").is_ok() {
        eprintln!(
            "  drained at {:?}; {} of {} accepted",
            started.elapsed(),
            rx.accepted_ids(),
            expected.iter().flatten().count()
        );
    }
    // Every expected delta arrives (or the wait gives up and the check says what is missing).
    let want: BTreeSet<Delta> = expected.iter().flatten().cloned().collect();
    let t0 = Instant::now();
    let mut last = 0;
    while rx.accepted_ids() < want.len() && t0.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if std::env::var("CHAOS_TRACE").is_ok() && rx.accepted_ids() != last {
            last = rx.accepted_ids();
            eprintln!("  {:?}: {last} accepted", started.elapsed());
        }
    }
    // A quiet moment: anything sent twice would show up now.
    tokio::time::sleep(Duration::from_millis(400)).await;
    for slot in 0..instances {
        env.reap(slot);
    }
    store.close().await;

    // ---- the checks, against the oracle
    let s = rx.state.lock().expect("receiver lock").clone();
    fig.deltas = want.len() as u64;
    fig.requests = s.requests;
    fig.receiver_failures = s.failed;
    fig.receiver_stalls = s.stalled;
    let mut problems = Vec::new();
    if s.bad_signatures > 0 {
        problems.push(format!("{} requests with a bad signature", s.bad_signatures));
    }
    let conflicting: Vec<_> = s
        .bodies
        .iter()
        .filter(|(_, b)| b.len() > 1)
        .map(|(id, _)| id.clone())
        .collect();
    fig.conflicting_bodies = conflicting.len() as u64;
    if !conflicting.is_empty() {
        problems.push(format!("webhook-ids with two different bodies: {conflicting:?}"));
    }
    // Delta → the ids it was accepted under; first acceptance order per case.
    let mut ids_of: BTreeMap<&Delta, BTreeSet<&str>> = BTreeMap::new();
    let mut per_case: BTreeMap<&str, Vec<(&Delta, i64)>> = BTreeMap::new();
    let mut first_seen = BTreeSet::new();
    for a in &s.accepted {
        ids_of.entry(&a.delta).or_default().insert(&a.id);
        if first_seen.insert(a.id.as_str()) {
            per_case
                .entry(a.delta.case.as_str())
                .or_default()
                .push((&a.delta, a.sequence));
        }
    }
    let lost: Vec<_> = want.iter().filter(|d| !ids_of.contains_key(d)).collect();
    let dup: Vec<_> = ids_of
        .iter()
        .filter(|(_, ids)| ids.len() > 1)
        .map(|(d, _)| *d)
        .collect();
    let unexpected: Vec<_> = ids_of.keys().filter(|d| !want.contains(**d)).collect();
    fig.lost = lost.len() as u64;
    fig.duplicated = dup.len() as u64;
    fig.unexpected = unexpected.len() as u64;
    if !lost.is_empty() {
        problems.push(format!(
            "{} expected deltas never delivered, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(5)]
        ));
    }
    if !dup.is_empty() {
        problems.push(format!(
            "{} deltas delivered under two webhook-ids, e.g. {:?}",
            dup.len(),
            &dup[..dup.len().min(5)]
        ));
    }
    if !unexpected.is_empty() {
        problems.push(format!(
            "{} deliveries the files do not explain, e.g. {:?}",
            unexpected.len(),
            &unexpected[..unexpected.len().min(5)]
        ));
    }
    // Per case: first arrivals follow the phases, and sequences rise by one.
    let phase_of: HashMap<&Delta, usize> = expected
        .iter()
        .enumerate()
        .flat_map(|(p, ds)| ds.iter().map(move |d| (d, p)))
        .collect();
    for (case, arrivals) in &per_case {
        let phases_seen: Vec<usize> = arrivals
            .iter()
            .filter_map(|(d, _)| phase_of.get(d).copied())
            .collect();
        let seqs: Vec<i64> = arrivals.iter().map(|(_, q)| *q).collect();
        let ordered = phases_seen.windows(2).all(|w| w[0] < w[1]);
        let gapless = seqs.iter().enumerate().all(|(i, q)| *q == i as i64 + 1);
        if !ordered || !gapless {
            fig.reordered += 1;
            problems.push(format!(
                "case {case}: arrivals out of order: phases {phases_seen:?}, sequences {seqs:?}"
            ));
        }
    }
    // Files: every good file archived, every broken one in error, never both.
    let mut archived = files_in(&root.join("data/archive"));
    let errored = files_in(&root.join("data/error"));
    if sftp {
        archived.extend(files_in(&remote.join("archive")));
    }
    let hashes = |v: &[PathBuf]| -> BTreeSet<String> {
        v.iter()
            .filter(|p| {
                let n = p.to_string_lossy();
                !n.ends_with(".json") && !n.ends_with(".jsonl")
            })
            .map(|p| sha_of(p))
            .collect()
    };
    let (ah, eh) = (hashes(&archived), hashes(&errored));
    let both: Vec<_> = ah.intersection(&eh).collect();
    if !both.is_empty() {
        problems.push(format!("files both archived and in error: {both:?}"));
    }
    for f in phases.iter().flatten() {
        let h = hex::encode(Sha256::digest(&f.bytes));
        let (want_in, other) = if f.broken_header {
            (&eh, "error")
        } else {
            (&ah, "archive")
        };
        if !want_in.contains(&h) {
            problems.push(format!("{} ({:?}) is not in {other}", f.name, f.feed));
        }
    }
    for feed in Feed::ALL.iter().filter(|f| **f != Feed::Sftp || sftp) {
        let left = left_in(&env.drop_dir(*feed));
        if !left.is_empty() {
            problems.push(format!("left in the {feed:?} drop folder: {left:?}"));
        }
    }
    if !problems.is_empty() {
        fail(problems.join("\n"), &env);
    }
    drop(env);
    drop(sshd);
    drop(pg);
    fig.seconds = started.elapsed().as_secs_f64();
    fig
}

/// Seeds for one test: `CHAOS_SEED` alone, or `CHAOS_SEEDS_<TEST>` /
/// `CHAOS_SEEDS` of them (default: the short CI mode) from `CHAOS_BASE`, at
/// a per-test offset so the tests cover different seeds.
fn seeds(name: &str, offset: u64, default: u64) -> Vec<u64> {
    let var = |k: &str| std::env::var(k).ok().and_then(|s| s.parse::<u64>().ok());
    if let Some(s) = var("CHAOS_SEED") {
        return vec![s];
    }
    let n = var(&format!("CHAOS_SEEDS_{}", name.to_uppercase()))
        .or_else(|| var("CHAOS_SEEDS"))
        .unwrap_or(default);
    let base = var("CHAOS_BASE").unwrap_or(0);
    (0..n).map(|i| offset * 1_000_000 + base + i).collect()
}

async fn suite(name: &str, offset: u64, default_seeds: u64, backend: Backend) {
    let long = std::env::var("CHAOS_LONG").is_ok_and(|v| v == "1");
    let mut total = Figures::default();
    for seed in seeds(name, offset, default_seeds) {
        eprintln!(
            "chaos {name}: seed {seed} (replay: CHAOS_SEED={seed} cargo nextest run --test chaos {name})"
        );
        let f = run_one(seed, backend, long).await;
        eprintln!(
            "chaos {name}: seed {seed}: {} kills ({} mid-file, {} mid-commit, {} mid-delivery, {} mid-fetch), {} files, {} deltas, {} requests, {:.1}s",
            f.kills, f.kills_mid_file, f.kills_mid_commit, f.kills_mid_delivery, f.kills_mid_fetch, f.files, f.deltas, f.requests, f.seconds
        );
        total.add(&f);
    }
    eprintln!("chaos {name}: total {total:?}");
    assert!(
        total.kills > 0 && total.deltas > 0,
        "the suite did something: {total:?}"
    );
    assert_eq!(
        (total.lost, total.duplicated, total.reordered, total.unexpected),
        (0, 0, 0, 0)
    );
    if let Ok(path) = std::env::var("CHAOS_REPORT") {
        let mut line = serde_json::to_value(&total).expect("figures serialize");
        line["test"] = serde_json::json!(name);
        line["long"] = serde_json::json!(long);
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("open the report");
        writeln!(f, "{line}").expect("write the report");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_sqlite() {
    suite("chaos_sqlite", 1, 8, Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_postgres() {
    suite("chaos_postgres", 2, 6, Backend::Postgres { instances: 1 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_postgres_two_instances() {
    suite(
        "chaos_postgres_two_instances",
        3,
        6,
        Backend::Postgres { instances: 2 },
    )
    .await;
}

/// The oracle itself must be able to fail: a hand-made history gives the
/// deltas a person would write down.
#[test]
fn the_oracle_replays_rows_in_phase_order() {
    let d = |y, m, dd| NaiveDate::from_ymd_opt(y, m, dd).expect("date");
    let row = |case: &str, stage, date, payer, bad| Row {
        case: case.to_string(),
        patient: "1".to_string(),
        stage,
        date,
        payer,
        bad,
        filler: false,
    };
    let file = |rows: Vec<Row>, broken_header, copy: bool| GenFile {
        feed: Feed::Csv,
        name: "f.csv".to_string(),
        rows,
        broken_header,
        bytes: Vec::new(),
        slow: false,
        copy_of: copy.then(|| "g.csv".to_string()),
    };
    let phases = vec![
        vec![
            file(
                vec![
                    row("C1", 0, d(2026, 11, 1), "Aetna", None),
                    row("C2", 0, d(2026, 11, 1), "Aetna", Some(Bad::Date)),
                ],
                false,
                false,
            ),
            file(vec![row("C9", 0, d(2026, 11, 1), "Aetna", None)], true, false),
        ],
        vec![
            file(
                vec![
                    row("C1", 0, d(2026, 11, 1), "Cigna", None),
                    row("C2", 1, d(2026, 11, 4), "Aetna", None),
                ],
                false,
                false,
            ),
            file(vec![row("C3", 0, d(2026, 11, 1), "Aetna", None)], false, true),
        ],
    ];
    let got = oracle(&phases);
    let names: Vec<Vec<(String, String, &str)>> = got
        .iter()
        .map(|ds| {
            ds.iter()
                .map(|d| (d.case.clone(), d.payer.clone(), d.change))
                .collect()
        })
        .collect();
    assert_eq!(
        names,
        vec![
            vec![("C1".to_string(), "Aetna".to_string(), "created")],
            vec![
                ("C1".to_string(), "Cigna".to_string(), "updated"),
                ("C2".to_string(), "Aetna".to_string(), "created")
            ],
        ]
    );
    assert_eq!(got[1][1].milestone, "bv.started");
}
