//! Journey timer benchmarks (BENCHMARKS.md, "Journey timers"):
//!
//! - `load ROWS [RUNS]`: the CSV first load and the 1%-changed re-load
//!   (`scripts/gen-hub-csv.py` snapshots, acme-hub mapping, SQLite), with
//!   no rules and with a rule every case triggers (every case armed),
//!   interleaved; prints rows/s of each and the ratio.
//! - `fire ROWS`: arms ROWS timers (one per case), then fires them all at
//!   once with the clock injected two days ahead: stalls/s from armed to
//!   committed `journey.stalled` outbox rows (with a subscriber, so each
//!   also gets its delivery row).
//!
//! - `rss ROWS rules|none`: a first load (every case armed, or no rules),
//!   then the journey clock running for 3 s over the store: current and
//!   peak RSS, to compare the two in separate processes.
//!
//! Run with the release build: `cargo run --release --example bench-journeys -- load 100000 3`.
//! Prints the process's peak RSS at the end.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use hubsync::pipeline::{FileOutcome, Pipeline};
use hubsync::store::Store;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const KEY: &str = "bench-pseudonym-key-0123456789";

/// A project folder: config, the acme-hub connector and mapping, and (with
/// `deadline`) a rule every milestone the mapping produces triggers.
fn project(dir: &Path, deadline: Option<&str>) -> hubsync::setup::Config {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(dir.join("connectors")).expect("mkdir");
    std::fs::create_dir_all(dir.join("mappings")).expect("mkdir");
    std::fs::copy(
        repo.join("mappings/acme-hub-status.toml"),
        dir.join("mappings/acme-hub-status.toml"),
    )
    .expect("copy mapping");
    std::fs::write(
        dir.join("connectors/acme-hub.toml"),
        "program = \"ACME-ONC\"\nmapping = \"acme-hub-status\"\ntime_zone = \"America/New_York\"\n\
         [source]\nkind = \"local\"\npath = \"drop\"\npattern = \"*.csv\"\n[format]\nkind = \"csv\"\n",
    )
    .expect("write connector");
    std::fs::write(
        dir.join("config.toml"),
        "data_dir = \"data\"\n[pseudonymization]\nkey_env = \"K\"\n\
         [[subscribers]]\nname = \"mfr\"\nurl = \"http://127.0.0.1:9/\"\nsecret_env = \"S\"\n",
    )
    .expect("write config");
    if let Some(deadline) = deadline {
        std::fs::create_dir_all(dir.join("journeys")).expect("mkdir");
        std::fs::write(
            dir.join("journeys/acme-onc.toml"),
            format!(
                "program = \"ACME-ONC\"\n[[rule]]\nname = \"every-case\"\n\
                 trigger = \"{{referral,bv,pa,copay,therapy,case,dispense}}.*\"\n\
                 awaits = [\"adverse_event.reported\"]\ndeadline = \"{deadline}\"\nfrom = \"learned_at\"\n"
            ),
        )
        .expect("write rules");
    }
    hubsync::setup::load_with_env(&dir.join("config.toml"), &|k| match k {
        "K" => Some(KEY.to_string()),
        "S" => Some(SECRET.to_string()),
        _ => None,
    })
    .unwrap_or_else(|d| panic!("config loads:\n{d}"))
}

async fn ingest(pipeline: &Pipeline, file: &Path) -> (u64, f64) {
    let (sha256, size) = hubsync::source::local::hash_file(file).expect("hash");
    let ready = hubsync::source::ReadyFile {
        path: file.to_path_buf(),
        name: file.file_name().expect("name").to_string_lossy().into_owned(),
        size,
        sha256,
        marker: None,
    };
    let connector = pipeline.config.connectors[0].clone();
    let t0 = Instant::now();
    let out = pipeline
        .process(&connector, &ready, &tokio_util::sync::CancellationToken::new())
        .await
        .expect("process");
    let secs = t0.elapsed().as_secs_f64();
    match out {
        FileOutcome::Done(row) => (row.counts.read, secs),
        other => panic!("not processed: {other:?}"),
    }
}

fn gen(rows: usize, out: &Path, changed: bool) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/gen-hub-csv.py");
    let mut cmd = std::process::Command::new("python3");
    cmd.arg(script).arg(rows.to_string()).arg(out);
    if changed {
        cmd.args(["--changed-pct", "1"]);
    }
    assert!(cmd.status().expect("python3").success(), "generator failed");
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

async fn one_load(data: &Path, rows: usize, rules: bool) -> (f64, f64, i64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Arc::new(project(dir.path(), rules.then_some("30d")));
    let store = Store::open(&config.store_url).await.expect("store");
    let pipeline = Pipeline::new(store.clone(), config, Vec::new());
    let day1 = data.join(format!("day1-{rows}.csv"));
    let day2 = data.join(format!("day2-{rows}.csv"));
    let (r1, s1) = ingest(&pipeline, &day1).await;
    let (r2, s2) = ingest(&pipeline, &day2).await;
    let armed: i64 = store
        .journey_armed_counts()
        .await
        .expect("counts")
        .iter()
        .map(|c| c.armed)
        .sum();
    store.close().await;
    (r1 as f64 / s1, r2 as f64 / s2, armed)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map_or("load", String::as_str);
    let rows: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let data = tempfile::tempdir().expect("tempdir");
    gen(rows, &data.path().join(format!("day1-{rows}.csv")), false);
    gen(rows, &data.path().join(format!("day2-{rows}.csv")), true);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average at start: {}",
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    match mode {
        "load" => {
            let runs: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3);
            let (mut first, mut reload) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
            for run in 0..runs {
                for rules in [false, true] {
                    let (f, r, armed) = one_load(data.path(), rows, rules).await;
                    println!(
                        "run {run} rules={rules}: first load {f:.0} rows/s, re-load {r:.0} rows/s, {armed} timers armed"
                    );
                    first[usize::from(rules)].push(f);
                    reload[usize::from(rules)].push(r);
                }
            }
            let (f0, f1) = (median(first[0].clone()), median(first[1].clone()));
            let (r0, r1) = (median(reload[0].clone()), median(reload[1].clone()));
            println!("{rows} rows, medians of {runs}:");
            println!(
                "  first load: {f0:.0} rows/s without rules, {f1:.0} with every case armed ({:+.1}%)",
                (f1 / f0 - 1.0) * 100.0
            );
            println!(
                "  re-load 1% changed: {r0:.0} rows/s without rules, {r1:.0} with every case armed ({:+.1}%)",
                (r1 / r0 - 1.0) * 100.0
            );
        }
        "fire" => {
            let dir = tempfile::tempdir().expect("tempdir");
            let config = Arc::new(project(dir.path(), Some("1d")));
            let store = Store::open(&config.store_url).await.expect("store");
            let pipeline = Pipeline::new(store.clone(), config.clone(), Vec::new());
            let (read, secs) = ingest(&pipeline, &data.path().join(format!("day1-{rows}.csv"))).await;
            println!("armed from {read} rows in {secs:.1}s");
            let now = hubsync::store::now_ms() + 2 * 86_400_000;
            let t0 = Instant::now();
            let f = hubsync::journey::fire::fire_due(&store, &config, now)
                .await
                .expect("fire");
            let secs = t0.elapsed().as_secs_f64();
            println!(
                "fired {} stalls ({} sent with their delivery rows) in {secs:.2}s: {:.0} stalls/s",
                f.stalled,
                f.sent,
                f.stalled as f64 / secs
            );
            store.close().await;
        }
        "rss" => {
            let rules = args.get(2).is_some_and(|s| s == "rules");
            let dir = tempfile::tempdir().expect("tempdir");
            let config = Arc::new(project(dir.path(), rules.then_some("30d")));
            let store = Store::open(&config.store_url).await.expect("store");
            let pipeline = Pipeline::new(store.clone(), config.clone(), Vec::new());
            let (read, secs) = ingest(&pipeline, &data.path().join(format!("day1-{rows}.csv"))).await;
            let armed: i64 = store
                .journey_armed_counts()
                .await
                .expect("counts")
                .iter()
                .map(|c| c.armed)
                .sum();
            println!(
                "{read} rows in {secs:.1}s, {armed} timers armed; RSS after load {:.1} MiB",
                rss_mib()
            );
            let shutdown = tokio_util::sync::CancellationToken::new();
            let clock = tokio::spawn(hubsync::journey::fire::run(
                store.clone(),
                config.clone(),
                pipeline.timers.clone(),
                Vec::new(),
                shutdown.clone(),
            ));
            tokio::time::sleep(std::time::Duration::from_secs(3)).await;
            println!(
                "RSS with the clock running over {armed} armed timers: {:.1} MiB",
                rss_mib()
            );
            shutdown.cancel();
            clock.await.expect("clock stops");
            store.close().await;
        }
        other => panic!("unknown mode {other} (load, fire, rss)"),
    }
    println!("peak RSS: {:.1} MiB", peak_rss_mib());
}
