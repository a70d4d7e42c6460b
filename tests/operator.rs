//! What an operator meets at the command line (issue 19): one daemon per
//! SQLite store, commands that end quietly on a closed pipe, and files in a
//! watched folder that no connector matches. Real `hubsync` child processes
//! throughout, killed with SIGKILL where a crash is the point.

mod support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{fixture, Hub, Receiver, SECRET};

/// `hubsync ARGS --config <hub>`, reading nothing from stdin.
fn hubsync(hub: &Hub, args: &[&str]) -> Command {
    let mut cmd = hub.command(args);
    cmd.stdin(Stdio::null());
    cmd
}

/// The commands that must work beside a running daemon: dry runs, reads,
/// and the small admin writes.
fn beside_the_daemon(day1: &str) -> Vec<Vec<&str>> {
    vec![
        vec!["status"],
        vec!["check"],
        vec!["map", "--connector", "acme-hub", day1],
        vec!["map", "--connector", "acme-hub", "--format", "table", day1],
        vec!["parse", "--connector", "acme-hub", day1],
        vec!["test"],
        vec!["migrate"],
        vec!["replay", "--subscriber", "mfr", "--failed-only"],
        vec!["enable", "--subscriber", "mfr"],
    ]
}

/// Runs a command to its end, failing the test if it takes over 60 s (a
/// second daemon that starts instead of refusing would never end).
fn finish(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hubsync");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("reap");
            panic!(
                "still running after 60 s; stderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn lock_file(hub: &Hub) -> PathBuf {
    hub.root().join("data/hubsync.db.lock")
}

/// Waits until the store's lock file names `pid` as its holder.
async fn wait_holder(hub: &Hub, pid: u32) {
    let path = lock_file(hub);
    support::poll_until(Duration::from_secs(30), || {
        let t = std::fs::read_to_string(&path).unwrap_or_default();
        if t.contains(&format!("\"pid\":{pid},")) {
            Ok(())
        } else {
            Err(format!("lock file {} says {t:?}", path.display()))
        }
    })
    .await
}

/// A child `hubsync` killed (SIGKILL) when dropped, so that a failing
/// assertion leaves no daemon running.
struct Killed(Child);

impl Killed {
    fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn kill(child: Killed) {
    drop(child);
}

/// A second `hubsync run` (or an `ingest`) on a SQLite store that a daemon
/// holds refuses at once and names the holder; the read-only and admin
/// commands work beside the daemon, which keeps delivering; after a
/// `kill -9` of the daemon a new one starts at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_daemon_per_sqlite_store_and_the_other_commands_beside_it() {
    let rx = Receiver::start().await;
    let hub = Hub::new(&rx.url(), "", "", 1000);
    let daemon = Killed(hub.spawn());
    let pid = daemon.id();
    wait_holder(&hub, pid).await;

    for (what, args) in [
        ("a second daemon", vec!["run"]),
        (
            "an ingest",
            vec![
                "ingest",
                "--connector",
                "acme-hub",
                fixture("status_20261122.csv").to_str().expect("utf-8 path"),
            ],
        ),
    ] {
        let out = finish(hubsync(&hub, &args));
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{what} started beside the daemon:\n{err}");
        for needle in [
            "in use by another hubsync",
            &format!("pid {pid} on "),
            "`hubsync run --config",
            "since 20",
            "hubsync.db.lock",
            "PostgreSQL",
        ] {
            assert!(err.contains(needle), "{what}: no {needle:?} in:\n{err}");
        }
    }

    // Beside the daemon: dry runs, reads and the small admin writes.
    let day1 = fixture("status_20261122.csv");
    let day1 = day1.to_str().expect("utf-8 path");
    for args in beside_the_daemon(day1) {
        let out = finish(hubsync(&hub, &args));
        assert!(
            out.status.success(),
            "`hubsync {}` beside the daemon failed:\n{}",
            args.join(" "),
            text(&out.stderr)
        );
    }
    // The daemon was not disturbed by any of it.
    hub.drop_file(&fixture("status_20261122.csv"), "status_20261122.csv");
    rx.wait_unique(44, Duration::from_secs(30)).await;

    // A crash releases the lock: the next daemon starts at once and works.
    kill(daemon);
    let started = Instant::now();
    let next = Killed(hub.spawn());
    wait_holder(&hub, next.id()).await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    hub.drop_file(&fixture("status_20261123.csv"), "status_20261123.csv");
    rx.wait_unique(47, Duration::from_secs(30)).await;
    kill(next);
}

/// A standard output that nobody reads any more (`hubsync status | head`)
/// ends every command quietly: no panic, no backtrace, exit 0. The pipe's
/// read end is closed before the command starts, so every write fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_exits_quietly_on_a_closed_pipe() {
    let rx = Receiver::start().await;
    let hub = Hub::new(&rx.url(), "", "", 1000);
    // Some history, so that `status` has rows to print.
    let out = hubsync(&hub, &["ingest", "--seed", "--connector", "acme-hub"])
        .arg(fixture("status_20261122.csv"))
        .output()
        .expect("ingest");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let day1 = fixture("status_20261122.csv");
    let day1 = day1.to_str().expect("utf-8 path");
    let mut commands = beside_the_daemon(day1);
    commands.push(vec!["--help"]);
    for args in commands {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let mut cmd = hubsync(&hub, &args);
        if args == ["--help"] {
            cmd = Command::new(env!("CARGO_BIN_EXE_hubsync"));
            cmd.arg("--help");
        }
        let out = cmd
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .expect("run hubsync");
        let err = text(&out.stderr);
        assert!(
            out.status.success() && err.is_empty(),
            "`hubsync {}` on a closed pipe: {:?}\n{err}",
            args.join(" "),
            out.status
        );
    }

    // `listen` prints each event: once nobody reads, it stops quietly and
    // does not acknowledge the event it could not show.
    let port = support::free_port();
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let mut listener = Killed(
        Command::new(env!("CARGO_BIN_EXE_hubsync"))
            .args(["listen", "--addr", &format!("127.0.0.1:{port}")])
            .env("HUBSYNC_LOCAL_SECRET", SECRET)
            .stdout(writer)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn listen"),
    );
    let body = br#"{"type":"pa.approved","data":{"case_id":"C1"}}"#;
    let key = hubsync::deliver::sign::decode_secret(SECRET).expect("test secret");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let ts = chrono::Utc::now().timestamp();
        let sent = client
            .post(format!("http://127.0.0.1:{port}/"))
            .header("webhook-id", "msg_1")
            .header("webhook-timestamp", ts.to_string())
            .header(
                "webhook-signature",
                hubsync::deliver::sign::sign(std::slice::from_ref(&key), "msg_1", ts, body),
            )
            .body(body.to_vec())
            .send()
            .await;
        match sent {
            Ok(r) => break r.status().as_u16(),
            // Not listening yet.
            Err(e) => assert!(Instant::now() < deadline, "listen never answered: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status, 503, "an event nobody saw is not acknowledged");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = listener.0.try_wait().expect("try_wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "listen still running with nobody reading"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    listener
        .0
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut err)
        .expect("stderr");
    assert!(status.success() && !err.contains("panicked"), "{status:?}\n{err}");

    // The daemon's own log lines going nowhere must not stop it: with its
    // stderr closed (`2>&1 | head`) it goes on processing and delivering.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let daemon = Killed(
        hubsync(&hub, &["run"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(writer)
            .spawn()
            .expect("spawn daemon"),
    );
    hub.drop_file(&fixture("status_20261123.csv"), "status_20261123.csv");
    rx.wait_unique(3, Duration::from_secs(30)).await;
    hub.wait_drained(Duration::from_secs(10)).await;
    kill(daemon);
}

/// A file in a watched folder that no connector's pattern matches is never
/// processed: the daemon says so once (not on every rescan), and `status`
/// counts it. Temporary names stay silent; a matching file flows as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_no_connector_matches_are_logged_once_and_counted_in_status() {
    let rx = Receiver::start().await;
    let hub = Hub::new(&rx.url(), "", "", 1000);
    let log_path = hub.root().join("daemon.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let daemon = Killed(
        hubsync(&hub, &["run"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn daemon"),
    );
    let drop_dir = hub.drop_dir();
    std::fs::write(drop_dir.join("status_20261123.txt"), "Case ID\n").expect("stray");
    std::fs::write(drop_dir.join(".upload.part"), "x").expect("temporary");
    hub.drop_file(&fixture("status_20261122.csv"), "status_20261122.csv");
    rx.wait_unique(44, Duration::from_secs(30)).await;
    // Many rescans (every 200 ms) later, still one line.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let lines = |log: &Path| -> Vec<String> {
        std::fs::read_to_string(log)
            .expect("read log")
            .lines()
            .filter(|l| l.contains("matches no connector"))
            .map(str::to_string)
            .collect()
    };
    let found = lines(&log_path);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].contains("status_20261123.txt"), "{}", found[0]);
    assert!(
        found[0].contains("*.csv"),
        "the patterns it was held against: {}",
        found[0]
    );

    let out = finish(hubsync(&hub, &["status"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status = text(&out.stdout);
    let section = status
        .split("UNMATCHED FILES")
        .nth(1)
        .unwrap_or_else(|| panic!("no UNMATCHED FILES section in:\n{status}"));
    let row = section
        .lines()
        .find(|l| l.contains("status_20261123.txt"))
        .unwrap_or_else(|| panic!("stray not listed:\n{status}"));
    let count: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(count[1], "1", "one unmatched file: {row}");
    assert!(!status.contains(".upload.part"), "{status}");

    // Gone from the folder, it is no longer counted.
    std::fs::remove_file(drop_dir.join("status_20261123.txt")).expect("remove");
    let out = finish(hubsync(&hub, &["status"]));
    assert!(
        !text(&out.stdout).contains("UNMATCHED FILES"),
        "{}",
        text(&out.stdout)
    );
    kill(daemon);
}

/// `listen --quiet` prints nothing per event, counts only events whose
/// signature verifies, and reports the count and the first and last arrival
/// when interrupted: the receiver of the throughput benchmarks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_quiet_counts_verified_events_and_reports_at_exit() {
    let port = support::free_port();
    let mut listener = Killed(
        Command::new(env!("CARGO_BIN_EXE_hubsync"))
            .args(["listen", "--quiet", "--addr", &format!("127.0.0.1:{port}")])
            .env("HUBSYNC_LOCAL_SECRET", SECRET)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn listen"),
    );
    let body = br#"{"type":"pa.approved","data":{"case_id":"C1"}}"#;
    let key = hubsync::deliver::sign::decode_secret(SECRET).expect("test secret");
    let client = reqwest::Client::new();
    let before = chrono::Utc::now().timestamp_millis();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut statuses = Vec::new();
    for (i, good) in [true, true, false, true].into_iter().enumerate() {
        let id = format!("msg_{i}");
        loop {
            let ts = chrono::Utc::now().timestamp();
            let signature = if good {
                hubsync::deliver::sign::sign(std::slice::from_ref(&key), &id, ts, body)
            } else {
                "v1,bm90IGEgc2lnbmF0dXJl".to_string()
            };
            let sent = client
                .post(format!("http://127.0.0.1:{port}/"))
                .header("webhook-id", &id)
                .header("webhook-timestamp", ts.to_string())
                .header("webhook-signature", signature)
                .body(body.to_vec())
                .send()
                .await;
            match sent {
                Ok(r) => {
                    statuses.push(r.status().as_u16());
                    break;
                }
                Err(e) => assert!(Instant::now() < deadline, "listen never answered: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(statuses, [204, 204, 401, 204]);
    let after = chrono::Utc::now().timestamp_millis();
    let sigint = Command::new("kill")
        .args(["-INT", &listener.id().to_string()])
        .status()
        .expect("run kill");
    assert!(sigint.success());
    let status = listener.0.wait().expect("wait for listen");
    let mut out = String::new();
    listener
        .0
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut out)
        .expect("stdout");
    assert!(status.success(), "{status:?}");
    let nums: Vec<i64> = out
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("digits"))
        .collect();
    assert!(out.starts_with("received 3 events; first at "), "{out}");
    assert_eq!(out.lines().count(), 1, "one line, nothing per event: {out}");
    let (first, last) = (nums[1], nums[2]);
    assert!(before <= first && first <= last && last <= after, "{out}");
}
