//! A cluster of real `hubsync run` processes on one PostgreSQL database and
//! one shared drop folder, and a webhook receiver on 127.0.0.1:0 that checks
//! Standard Webhooks signatures and remembers what it got (its first
//! arrivals, for order checks). Used by `tests/instances.rs`.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::hub::lay_out;
use super::process::sigterm;
use super::receiver::{key_of, serve, signed_id};
use super::{Hub, PSEUDONYM_KEY, SECRET};

/// One webhook as first received.
#[derive(Debug, Clone)]
pub struct Arrival {
    pub id: String,
    /// program + case: the lane.
    pub case: String,
    /// case + milestone + occurrence: the state key.
    pub key: String,
    pub sequence: i64,
    pub change: String,
}

#[derive(Debug, Default)]
pub struct Received {
    /// webhook-id → body, from the first delivery of each id.
    pub bodies: HashMap<String, Vec<u8>>,
    /// First arrivals, in arrival order.
    pub arrivals: Vec<Arrival>,
    pub requests: u64,
    /// Ids seen again with a different body: must stay empty.
    pub conflicts: Vec<String>,
    /// Requests whose signature did not verify: must stay zero.
    pub refused: u64,
}

/// An HTTP receiver that verifies signatures; `delay_ms` slows every answer.
pub struct Receiver {
    pub addr: SocketAddr,
    pub got: Arc<Mutex<Received>>,
    pub delay_ms: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        use axum::body::Bytes;
        use axum::http::{HeaderMap, StatusCode};
        let got = Arc::new(Mutex::new(Received::default()));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let key = Arc::new(key_of(SECRET));
        let (g, d) = (got.clone(), delay_ms.clone());
        let handler = move |headers: HeaderMap, body: Bytes| {
            let (got, delay, key) = (g.clone(), d.clone(), key.clone());
            async move {
                let ms = delay.load(Ordering::Relaxed);
                if ms > 0 {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                }
                let mut got = got.lock().expect("receiver state lock");
                got.requests += 1;
                let Some(id) = signed_id(&key, &headers, &body) else {
                    got.refused += 1;
                    return StatusCode::UNAUTHORIZED;
                };
                match got.bodies.get(&id) {
                    Some(b) if b[..] != body[..] => got.conflicts.push(id.clone()),
                    Some(_) => {}
                    None => {
                        let v: serde_json::Value = serde_json::from_slice(&body).expect("a JSON body");
                        let d = &v["data"];
                        let s = |f: &serde_json::Value| f.as_str().unwrap_or("").to_string();
                        got.arrivals.push(Arrival {
                            id: id.clone(),
                            case: format!("{}/{}", s(&d["program"]), s(&d["case_id"])),
                            key: format!(
                                "{}/{}/{}/{}",
                                s(&d["program"]),
                                s(&d["case_id"]),
                                s(&d["milestone"]),
                                s(&d["occurrence"])
                            ),
                            sequence: d["sequence"].as_i64().expect("a sequence"),
                            change: s(&d["change"]["kind"]),
                        });
                        got.bodies.insert(id, body.to_vec());
                    }
                }
                StatusCode::NO_CONTENT
            }
        };
        let (addr, task) = serve(axum::Router::new().fallback(axum::routing::post(handler))).await;
        Receiver {
            addr,
            got,
            delay_ms,
            task,
        }
    }

    pub fn unique(&self) -> usize {
        self.got.lock().expect("receiver state lock").bodies.len()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub struct ClusterOpts {
    pub chunk_rows: usize,
    pub lease: &'static str,
    pub max_in_flight: usize,
    pub timeout: &'static str,
    pub settle: &'static str,
    pub log: &'static str,
}

impl Default for ClusterOpts {
    fn default() -> Self {
        ClusterOpts {
            chunk_rows: 50,
            lease: "2s",
            max_in_flight: 16,
            timeout: "1s",
            settle: "300ms",
            log: "info,sqlx=warn",
        }
    }
}

/// Config files, a shared drop folder, and the `hubsync run` children.
pub struct Cluster {
    pub root: tempfile::TempDir,
    pub config: PathBuf,
    pub drop: PathBuf,
    pub archive: PathBuf,
    pub error: PathBuf,
    binary: PathBuf,
    log: String,
    children: Vec<Option<Child>>,
}

impl Cluster {
    pub fn new(binary: &Path, store_url: &str, receiver: SocketAddr, opts: &ClusterOpts) -> Cluster {
        let root = tempfile::tempdir().expect("tempdir");
        let r = root.path();
        let (drop, archive, error) = (r.join("drop"), r.join("archive"), r.join("error"));
        lay_out(r, &["acme-hub-status"]);
        for d in ["drop", "logs"] {
            std::fs::create_dir_all(r.join(d)).expect("mkdir");
        }
        std::fs::write(
            r.join("connectors/acme-hub.toml"),
            format!(
                "program = \"ACME-ONC\"\nmapping = \"acme-hub-status\"\ntime_zone = \"America/New_York\"\n\n\
                 [source]\nkind = \"local\"\npath = \"drop\"\npattern = \"status_*.csv\"\nsettle = \"{}\"\nrescan = \"500ms\"\n\
                 archive = \"archive\"\nerror = \"error\"\n\n[format]\nkind = \"csv\"\n",
                opts.settle
            ),
        )
        .expect("write the connector");
        let config = r.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[store]\nurl = \"{store_url}\"\nchunk_rows = {}\nlease = \"{}\"\n\n\
                 [pseudonymization]\nkey_env = \"HUBSYNC_PSEUDONYM_KEY\"\n\n\
                 [delivery]\npoll_interval = \"200ms\"\nshutdown_grace = \"2s\"\n\n\
                 [[subscribers]]\nname = \"receiver\"\nurl = \"http://{receiver}/hooks\"\nsecret_env = \"HUBSYNC_TEST_SECRET\"\n\
                 timeout = \"{}\"\nmax_in_flight = {}\nretry_schedule = [\"200ms\", \"500ms\", \"1s\", \"1s\", \"1s\", \"1s\", \"1s\", \"1s\"]\n",
                opts.chunk_rows, opts.lease, opts.timeout, opts.max_in_flight
            ),
        )
        .expect("write the config");
        Cluster {
            config,
            drop,
            archive,
            error,
            binary: binary.to_path_buf(),
            log: opts.log.to_string(),
            children: Vec::new(),
            root,
        }
    }

    /// The config as the binary loads it (for dry runs).
    pub fn load_config(&self) -> hubsync::setup::Config {
        hubsync::setup::load_with_env(&self.config, &Hub::env()).unwrap_or_else(|d| panic!("config: {d}"))
    }

    /// Starts one more `hubsync run`; returns its index.
    pub fn spawn(&mut self) -> usize {
        let i = self.children.len();
        let log =
            std::fs::File::create(self.root.path().join(format!("logs/instance-{i}.log"))).expect("log file");
        let child = Command::new(&self.binary)
            .args(["run", "--config"])
            .arg(&self.config)
            .env("HUBSYNC_PSEUDONYM_KEY", PSEUDONYM_KEY)
            .env("HUBSYNC_TEST_SECRET", SECRET)
            .env("RUST_LOG", &self.log)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start hubsync run");
        self.children.push(Some(child));
        i
    }

    pub fn pid(&self, i: usize) -> Option<u32> {
        self.children[i].as_ref().map(Child::id)
    }

    pub fn index_of_pid(&self, pid: u32) -> Option<usize> {
        (0..self.children.len()).find(|i| self.pid(*i) == Some(pid))
    }

    /// SIGKILL: the instance gets no chance to release anything.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM to every live instance, then wait for each.
    pub fn stop_all(&mut self) {
        for c in self.children.iter().flatten() {
            sigterm(c.id());
        }
        for c in self.children.iter_mut() {
            if let Some(mut child) = c.take() {
                let _ = child.wait();
            }
        }
    }

    pub fn log_of(&self, i: usize) -> String {
        std::fs::read_to_string(self.root.path().join(format!("logs/instance-{i}.log"))).unwrap_or_default()
    }

    pub fn logs(&self) -> String {
        (0..self.children.len())
            .map(|i| format!("---- instance {i}\n{}", tail(&self.log_of(i), 40)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Writes a file into the drop folder atomically (as `.tmp`, then renamed).
    pub fn drop_file(&self, name: &str, content: &str) {
        let tmp = self.drop.join(format!("{name}.tmp"));
        let mut f = std::fs::File::create(&tmp).expect("create");
        f.write_all(content.as_bytes()).expect("write");
        f.sync_all().expect("sync");
        std::fs::rename(&tmp, self.drop.join(name)).expect("rename");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in self.children.iter_mut() {
            if let Some(mut child) = c.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

pub const HEADER: &str = "Case ID,Patient ID,Patient Last Name,Patient DOB,Status Code,Status Date,Sub Status,Payer,Plan Type,PA Number,PA Approval Date,PA Start,PA End,Denial Reason,Ship Date,Carrier,Tracking Number,Fill Number,NDC,Quantity,Days Supply,Last Updated";

/// One Acme Hub row for case `n` at journey `stage` (0 referral, 1 benefits
/// verified, 2 PA approved, 3 shipped); later stages carry more milestones.
pub fn row(n: u64, stage: u8) -> String {
    let case = format!("AC-{:07}", n);
    let patient = format!("P{:07}", 1_000_000 + n % 8_999_999);
    let (code, date, sub) = match stage {
        0 => ("REF", "11/02/2026", "Intake"),
        1 => ("BC", "11/17/2026", "Benefits Verified"),
        2 => ("PAA", "11/20/2026", "Awaiting Dispense"),
        _ => ("SHP", "11/22/2026", "On Therapy"),
    };
    let pa = if stage >= 2 {
        format!("PA{:08},11/20/2026,11/20/2026,11/20/2027", 10_000_000 + n)
    } else {
        ",,,".to_string()
    };
    let ship = if stage >= 3 {
        format!("11/22/2026,FedEx,1Z{:016},1,50242-0041-01,30,30", n)
    } else {
        ",,,,,,".to_string()
    };
    format!("{case},{patient},Doe,01/02/1960,{code},{date},{sub},Aetna,Commercial,{pa},,{ship},2026-11-23 23:00:00")
}

/// A snapshot file: a header and one row per case.
pub fn snapshot(cases: impl Iterator<Item = (u64, u8)>) -> String {
    let mut s = String::from(HEADER);
    s.push('\n');
    for (n, stage) in cases {
        s.push_str(&row(n, stage));
        s.push('\n');
    }
    s
}
