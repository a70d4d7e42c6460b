//! Fuzzing on the stable toolchain: a mutational, outcome-guided fuzzer run
//! as an ordinary test (no nightly, no second instrumented build; see
//! RELIABILITY.md for why this and not cargo-fuzz, AFL or bolero).
//!
//! Targets: the X12 tokenizer and envelope pass (`x12::validate_stream`),
//! the X12, CSV, xlsx and XML readers each through their mapping (the dry
//! run the daemon's pipeline uses), the expression compiler (and the date
//! format compiler), the mapping loader and the config/connector loader.
//! Seeds come from `fixtures/` and the shipped mappings and connectors.
//!
//! Each input runs on a worker thread under `catch_unwind`; a panic, or an
//! input that takes longer than 5 s (a hang), fails the test and is saved to
//! `target/fuzz-crashers/<target>/`. Found crashers are kept as regression
//! inputs in `tests/data/fuzz/<target>/`, which `regressions_stay_fixed`
//! replays on every run. Feedback without coverage: an input whose outcome
//! (its error message with digits stripped, or the shape of its result) was
//! not seen before joins the corpus.
//!
//! `FUZZ_SECONDS` (default 2) bounds each target; `FUZZ_SEED` replays a run;
//! `FUZZ_TARGET` picks one target; `FUZZ_REPORT=path` appends the figures.

mod support;

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const HANG: Duration = Duration::from_secs(5);

/// What a target needs: a workspace with the shipped config loaded.
struct Ctx {
    dir: PathBuf,
    config: hubsync::setup::Config,
}

fn env(k: &str) -> Option<String> {
    match k {
        "HUBSYNC_PSEUDONYM_KEY" => Some(support::PSEUDONYM_KEY.to_string()),
        "HUBSYNC_LOCAL_SECRET" => Some(support::SECRET.to_string()),
        _ => None,
    }
}

type Run = fn(&Ctx, &[u8]) -> String;

struct Target {
    name: &'static str,
    seeds: Vec<Vec<u8>>,
    dict: &'static [&'static [u8]],
    run: Run,
}

/// Writes `data` to a per-target scratch file and dry-runs it through
/// `connector` (parse + mapping, exactly the daemon's producer).
fn dry(ctx: &Ctx, connector: &str, ext: &str, data: &[u8]) -> String {
    let path = ctx.dir.join(format!("input-{connector}.{ext}"));
    std::fs::write(&path, data).expect("write scratch input");
    let c = ctx
        .config
        .connectors
        .iter()
        .find(|c| c.name == connector)
        .expect("the connector exists");
    match hubsync::pipeline::dry_run(&ctx.config, c, &path) {
        Ok(d) => format!(
            "ok m{} r{} f{}",
            d.milestones.len().min(3),
            d.rejects.len().min(3),
            d.failed.as_deref().map(shape).unwrap_or_default()
        ),
        Err(e) => format!("err {}", shape(&e.to_string())),
    }
}

/// An outcome's class: digits and quoted values removed, cut short.
fn shape(s: &str) -> String {
    let mut out = String::new();
    let mut quoted = false;
    for ch in s.chars() {
        match ch {
            '\'' | '`' => quoted = !quoted,
            c if quoted || c.is_ascii_digit() => {}
            c => out.push(c),
        }
        if out.len() > 60 {
            break;
        }
    }
    out
}

fn x12_envelope(_: &Ctx, data: &[u8]) -> String {
    let fmt = hubsync::parse::x12::X12Format::default();
    match hubsync::parse::x12::validate_stream(data, &fmt, "fuzz.x12") {
        Ok(v) => format!(
            "ok i{} s{} bi{} bg{} bs{}",
            v.interchanges.min(3),
            v.sets.min(3),
            v.bad_interchanges.len().min(3),
            v.bad_groups.len().min(3),
            v.bad_sets.len().min(3)
        ),
        Err(e) => format!("err {}", shape(&e.to_string())),
    }
}

fn x12_mapped(ctx: &Ctx, data: &[u8]) -> String {
    dry(ctx, "payer-278", "x12", data)
}
fn csv_mapped(ctx: &Ctx, data: &[u8]) -> String {
    dry(ctx, "acme-hub", "csv", data)
}
fn xlsx_mapped(ctx: &Ctx, data: &[u8]) -> String {
    dry(ctx, "summit-excel", "xlsx", data)
}
fn xml_mapped(ctx: &Ctx, data: &[u8]) -> String {
    dry(ctx, "beacon-xml", "xml", data)
}

/// Columns `$a`, `$b`, `$status_code`, `$date`; value map `m`.
struct FuzzScope;
impl hubsync::map::expr::Scope for FuzzScope {
    fn column(&self, name: &str) -> Option<usize> {
        ["a", "b", "status_code", "date"].iter().position(|c| *c == name)
    }
    fn column_names(&self) -> Vec<String> {
        vec!["a".into(), "b".into(), "status_code".into(), "date".into()]
    }
    fn value_map(&self, name: &str) -> Option<usize> {
        (name == "m").then_some(0)
    }
}

fn expression(_: &Ctx, data: &[u8]) -> String {
    let text = String::from_utf8_lossy(data);
    let a = match hubsync::map::expr::compile(&text, &FuzzScope) {
        Ok(_) => "ok".to_string(),
        Err(e) => {
            // The mapping loader underlines `span` with a caret: it must lie
            // on character boundaries inside the text.
            assert!(
                e.span.start <= e.span.end
                    && e.span.end <= text.len()
                    && text.is_char_boundary(e.span.start)
                    && text.is_char_boundary(e.span.end),
                "error span {:?} outside the {}-byte expression",
                e.span,
                text.len()
            );
            format!("err {}", shape(&e.message))
        }
    };
    let b = match hubsync::map::expr::DateFormat::compile(&text, false) {
        Ok(_) => "ok",
        Err(_) => "err",
    };
    format!("{a} / {b}")
}

fn mapping_loader(ctx: &Ctx, data: &[u8]) -> String {
    let path = ctx.dir.join("fuzz-mapping.toml");
    std::fs::write(&path, data).expect("write scratch mapping");
    match hubsync::map::Mapping::load(&path) {
        Ok(_) => "ok".to_string(),
        // Rendering the diagnostics (file:line:col, caret) is part of the target.
        Err(d) => format!("err {}", shape(&d.to_string())),
    }
}

fn config_loader(ctx: &Ctx, data: &[u8]) -> String {
    // A config folder with one fuzzed connector file beside the shipped mapping.
    let root = ctx.dir.join("cfg");
    std::fs::create_dir_all(root.join("connectors")).expect("mkdir");
    std::fs::create_dir_all(root.join("mappings")).expect("mkdir");
    let mapping = root.join("mappings/acme-hub-status.toml");
    if !mapping.exists() {
        std::fs::copy(support::repo().join("mappings/acme-hub-status.toml"), &mapping).expect("copy");
        std::fs::copy(
            support::repo().join("config.example.toml"),
            root.join("config.toml"),
        )
        .expect("copy");
    }
    std::fs::write(root.join("connectors/fuzz.toml"), data).expect("write scratch connector");
    match hubsync::setup::load_with_env(&root.join("config.toml"), &env) {
        Ok(_) => "ok".to_string(),
        Err(d) => format!("err {}", shape(&d.to_string())),
    }
}

fn files_in(dir: &Path, ext: &str) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == ext))
        .map(|e| std::fs::read(e.path()).expect("read a seed"))
        .collect();
    out.sort();
    out
}

fn targets() -> Vec<Target> {
    let r = support::repo();
    let fx = r.join("fixtures");
    let mut x12 = files_in(&fx.join("x12"), "x12");
    x12.extend(files_in(&fx.join("x12-public"), "x12"));
    x12.extend(files_in(&fx.join("malformed"), "x12"));
    let mut csv = files_in(&fx.join("acme-hub"), "csv");
    csv.extend(files_in(&fx.join("malformed"), "csv"));
    let mut xml = files_in(&fx.join("xml"), "xml");
    xml.extend(files_in(&fx.join("malformed"), "xml"));
    let mut exprs: Vec<Vec<u8>> = Vec::new();
    for m in files_in(&r.join("mappings"), "toml") {
        // Every quoted expression in the shipped mappings.
        for line in String::from_utf8_lossy(&m).lines() {
            if let Some((_, v)) = line.split_once(" = \"") {
                exprs.push(v.trim_end_matches('"').as_bytes().to_vec());
            }
        }
    }
    exprs.extend([
        "%m/%d/%Y".as_bytes().to_vec(),
        b"%Y-%m-%dT%H:%M:%S%.f%:z".to_vec(),
    ]);
    vec![
        Target {
            name: "x12_envelope",
            seeds: x12.clone(),
            dict: &[
                b"ISA",
                b"IEA",
                b"GS*",
                b"GE*",
                b"ST*",
                b"SE*",
                b"~",
                b"*",
                b":",
                b"^",
                b"\n",
                b"HL*",
                b"000000105",
            ],
            run: x12_envelope,
        },
        Target {
            name: "x12_mapped",
            seeds: x12,
            dict: &[
                b"~",
                b"*",
                b"HL*4*3*EV*0~",
                b"HCR*A1~",
                b"TRN*2*",
                b"DTP*102*D8*",
                b"SE*",
                b"NM1*IL*1*",
            ],
            run: x12_mapped,
        },
        Target {
            name: "csv_mapped",
            seeds: csv,
            dict: &[
                b",",
                b"\"",
                b"\n",
                b"\r\n",
                b"\r",
                b"\xef\xbb\xbf",
                b"REF",
                b"PAA",
                b"11/31/2026",
                b"\xff",
                b"\0",
            ],
            run: csv_mapped,
        },
        Target {
            name: "xlsx_mapped",
            seeds: files_in(&fx.join("excel"), "xlsx"),
            dict: &[
                b"PK\x03\x04",
                b"PK\x01\x02",
                b"PK\x05\x06",
                b"\xff\xff\xff\xff",
                b"\0\0\0\0",
            ],
            run: xlsx_mapped,
        },
        Target {
            name: "xml_mapped",
            seeds: xml,
            dict: &[
                b"<",
                b">",
                b"</",
                b"/>",
                b"&amp;",
                b"&#x0;",
                b"<![CDATA[",
                b"]]>",
                b"xmlns:",
                b"\"",
                b"<!DOCTYPE x [<!ENTITY a \"b\">]>",
            ],
            run: xml_mapped,
        },
        Target {
            name: "expression",
            seeds: exprs,
            dict: &[
                b"(",
                b")",
                b"'",
                b"$a",
                b"map('m', ",
                b" in [",
                b"]",
                b" and ",
                b" or ",
                b"not ",
                b"==",
                b"%",
                b"\\",
                b"coalesce(",
                b"date(",
            ],
            run: expression,
        },
        Target {
            name: "mapping_loader",
            seeds: files_in(&r.join("mappings"), "toml"),
            dict: &[
                b"\n[[milestones]]\n",
                b" = \"",
                b"\"",
                b"[columns]\n",
                b"\xc3\xa9",
                b"\t",
                b"'''",
                b"{",
                b"}",
            ],
            run: mapping_loader,
        },
        Target {
            name: "config_loader",
            seeds: files_in(&r.join("connectors"), "toml"),
            dict: &[
                b"\n[source]\n",
                b"\n[format]\n",
                b" = \"",
                b"\"",
                b"kind = \"x12\"",
                b"settle = \"",
                b"\xc3\xa9",
                b"[[format.sheets]]",
            ],
            run: config_loader,
        },
    ]
}

fn mutate(rng: &mut StdRng, input: &[u8], corpus: &[Vec<u8>], dict: &[&[u8]]) -> Vec<u8> {
    let mut d = input.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let len = d.len();
        let at = if len == 0 { 0 } else { rng.random_range(0..=len) };
        match rng.random_range(0..10) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                d[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.random_range(0..len);
                d[i] = rng.random();
            }
            2 => {
                let t = dict[rng.random_range(0..dict.len())];
                d.splice(at..at, t.iter().copied());
            }
            3 if len > 0 => {
                let end = (at + rng.random_range(1..=64)).min(len);
                d.drain(at.min(end)..end);
            }
            4 if len > 0 => {
                let start = rng.random_range(0..len);
                let end = (start + rng.random_range(1..=256)).min(len);
                let chunk = d[start..end].to_vec();
                let times = if rng.random_range(0..8) == 0 {
                    rng.random_range(2..200)
                } else {
                    1
                };
                for _ in 0..times {
                    d.splice(at..at, chunk.iter().copied());
                }
            }
            5 if !corpus.is_empty() => {
                let other = &corpus[rng.random_range(0..corpus.len())];
                if !other.is_empty() {
                    let s = rng.random_range(0..other.len());
                    let e = (s + rng.random_range(1..=512)).min(other.len());
                    d.splice(at..at, other[s..e].iter().copied());
                }
            }
            6 if len > 0 => d.truncate(rng.random_range(0..len)),
            7 => {
                let n = rng.random_range(1..=16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                d.splice(at..at, bytes);
            }
            8 if len > 0 => {
                // A digit run becomes a huge or negative number.
                if let Some(p) = d[at.min(len - 1)..].iter().position(u8::is_ascii_digit) {
                    let p = at.min(len - 1) + p;
                    let big: &[u8] = [b"99999999999999999999".as_slice(), b"-1", b"0", b"4294967296"]
                        [rng.random_range(0..4)];
                    d.splice(p..p + 1, big.iter().copied());
                }
            }
            _ => {
                let t = dict[rng.random_range(0..dict.len())];
                let i = if len == 0 { 0 } else { rng.random_range(0..len) };
                let end = (i + t.len()).min(len);
                d.splice(i..end, t.iter().copied());
            }
        }
        d.truncate(1 << 20);
    }
    d
}

/// A worker that runs inputs under catch_unwind, so a panic is reported
/// and a hang is seen from outside.
struct Worker {
    tx: mpsc::Sender<Vec<u8>>,
    rx: mpsc::Receiver<Result<String, String>>,
}

fn worker(ctx: std::sync::Arc<Ctx>, run: Run) -> Worker {
    let (tx, in_rx) = mpsc::channel::<Vec<u8>>();
    let (out_tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for input in in_rx {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&ctx, &input)));
            let r = r.map_err(|p| {
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "a panic".to_string())
            });
            if out_tx.send(r).is_err() {
                return;
            }
        }
    });
    Worker { tx, rx }
}

fn save(target: &str, input: &[u8]) -> PathBuf {
    use sha2::Digest;
    let dir = support::repo().join("target/fuzz-crashers").join(target);
    std::fs::create_dir_all(&dir).expect("mkdir crashers");
    let p = dir.join(hex::encode(&sha2::Sha256::digest(input)[..8]));
    std::fs::write(&p, input).expect("save crasher");
    p
}

fn context() -> (tempfile::TempDir, std::sync::Arc<Ctx>) {
    let ws = support::malformed::workspace();
    let config = hubsync::setup::load_with_env(&ws.path().join("config.toml"), &env)
        .unwrap_or_else(|d| panic!("the shipped config loads:\n{d}"));
    let ctx = std::sync::Arc::new(Ctx {
        dir: ws.path().to_path_buf(),
        config,
    });
    (ws, ctx)
}

/// Panics in the fuzzed code are findings, not noise on stderr.
fn quiet_panics() {
    std::panic::set_hook(Box::new(|_| {}));
}

#[test]
fn fuzz_every_target_for_a_bounded_time() {
    let secs: f64 = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let only = std::env::var("FUZZ_TARGET").ok();
    eprintln!("fuzz: seed {seed} (replay: FUZZ_SEED={seed}), {secs} s per target");
    let (_ws, ctx) = context();
    quiet_panics();
    let mut findings = Vec::new();
    let mut report = Vec::new();
    for t in targets() {
        if only.as_deref().is_some_and(|o| o != t.name) {
            continue;
        }
        assert!(!t.seeds.is_empty(), "{}: no seeds", t.name);
        let mut rng = StdRng::seed_from_u64(seed ^ (t.name.len() as u64 * 0x9e37_79b9));
        let w = worker(ctx.clone(), t.run);
        let mut corpus = t.seeds.clone();
        let mut seen: HashSet<String> = HashSet::new();
        let (mut execs, mut slowest) = (0u64, Duration::ZERO);
        let started = Instant::now();
        let deadline = started + Duration::from_secs_f64(secs);
        // The seeds themselves first, then mutations until the deadline.
        let mut queue: Vec<Vec<u8>> = t.seeds.clone();
        while Instant::now() < deadline || !queue.is_empty() {
            let input = queue.pop().unwrap_or_else(|| {
                let base = &corpus[rng.random_range(0..corpus.len())];
                mutate(&mut rng, base, &corpus, t.dict)
            });
            let t0 = Instant::now();
            w.tx.send(input.clone()).expect("worker alive");
            match w.rx.recv_timeout(HANG) {
                Ok(Ok(outcome)) => {
                    if seen.insert(outcome) && corpus.len() < 4096 {
                        corpus.push(input);
                    }
                }
                Ok(Err(panic)) => {
                    let p = save(t.name, &input);
                    findings.push(format!(
                        "{}: panic `{panic}` (input saved to {})",
                        t.name,
                        p.display()
                    ));
                    break;
                }
                Err(_) => {
                    let p = save(t.name, &input);
                    findings.push(format!(
                        "{}: no answer in {HANG:?}, a hang (input saved to {})",
                        t.name,
                        p.display()
                    ));
                    break; // the worker is stuck on it; leave it
                }
            }
            slowest = slowest.max(t0.elapsed());
            execs += 1;
        }
        let line = format!(
            "{}: {execs} executions in {:.1} s, {} outcome classes, corpus {}, slowest input {:?}",
            t.name,
            started.elapsed().as_secs_f64(),
            seen.len(),
            corpus.len(),
            slowest
        );
        eprintln!("fuzz {line}");
        report.push(serde_json::json!({"target": t.name, "execs": execs, "seconds": started.elapsed().as_secs_f64(), "classes": seen.len(), "seed": seed}));
    }
    if let Ok(path) = std::env::var("FUZZ_REPORT") {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("report");
        for r in report {
            writeln!(f, "{r}").expect("write report");
        }
    }
    assert!(findings.is_empty(), "fuzzing found:\n{}", findings.join("\n"));
}

/// Every input a fuzz run ever broke on stays fixed.
#[test]
fn regressions_stay_fixed() {
    let (_ws, ctx) = context();
    quiet_panics();
    let dir = support::repo().join("tests/data/fuzz");
    let mut n = 0;
    for t in targets() {
        let w = worker(ctx.clone(), t.run);
        for input in files_in(&dir.join(t.name), "bin") {
            w.tx.send(input).expect("worker alive");
            match w.rx.recv_timeout(HANG) {
                Ok(Ok(_)) => n += 1,
                Ok(Err(p)) => panic!("{}: a regression input panics again: {p}", t.name),
                Err(_) => panic!("{}: a regression input hangs again", t.name),
            }
        }
    }
    assert!(n > 0, "no regression inputs replayed");
}
