//! Shared test harness: a real HTTP receiver that verifies every Standard
//! Webhooks signature on its own (not with hubsync's signer), and an isolated
//! hubsync environment (temp folder, real SQLite file, config on disk).
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const PSEUDONYM_KEY: &str = "test-pseudonym-key-0123456789";
/// A second signing secret, for key rotation tests.
pub const SECRET2: &str = "whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldY";
/// The admin API's bearer token in tests.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";

/// Polls `f` every 20 ms until it returns `Ok`; after `timeout`, fails the
/// test with `f`'s last explanation of what it was still waiting for.
pub async fn poll_until<T>(timeout: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return v,
            Err(why) => assert!(Instant::now() < deadline, "timed out after {timeout:?}: {why}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One request the receiver accepted (valid signature, answered 2xx).
#[derive(Debug, Clone)]
pub struct Received {
    pub id: String,
    pub raw: Vec<u8>,
    pub body: serde_json::Value,
    pub at: Instant,
}

#[derive(Default)]
struct State {
    accepted: Vec<Received>,
    requests: u64,
    bad_signatures: u64,
    /// Status to answer while `fail_until` is in the future.
    fail_until: Option<Instant>,
    fail_status: u16,
    /// Answer this status for these case ids, forever.
    failing_cases: HashMap<String, u16>,
}

/// A webhook receiver on 127.0.0.1:0.
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    _task: tokio::task::JoinHandle<()>,
}

fn verify(key: &[u8], headers: &HeaderMap, body: &[u8]) -> bool {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let (id, ts, sig) = (h("webhook-id"), h("webhook-timestamp"), h("webhook-signature"));
    let Ok(t) = ts.parse::<i64>() else { return false };
    if (chrono::Utc::now().timestamp() - t).abs() > 300 || id.is_empty() {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    sig.split(' ')
        .any(|s| s.strip_prefix("v1,") == Some(expected.as_str()))
}

impl Receiver {
    pub async fn start() -> Receiver {
        let key = base64::engine::general_purpose::STANDARD
            .decode(SECRET.trim_start_matches("whsec_"))
            .expect("test secret is base64");
        let state = Arc::new(Mutex::new(State {
            fail_status: 500,
            ..Default::default()
        }));
        let st = state.clone();
        let handler = move |headers: HeaderMap, body: Bytes| {
            let st = st.clone();
            let key = key.clone();
            async move {
                let mut s = st.lock().expect("receiver state lock");
                s.requests += 1;
                if !verify(&key, &headers, &body) {
                    s.bad_signatures += 1;
                    return StatusCode::UNAUTHORIZED;
                }
                if let Some(until) = s.fail_until {
                    if Instant::now() < until {
                        return StatusCode::from_u16(s.fail_status).expect("valid status");
                    }
                }
                let json: serde_json::Value = serde_json::from_slice(&body).expect("body is JSON");
                let case = json["data"]["case_id"].as_str().unwrap_or("").to_string();
                if let Some(code) = s.failing_cases.get(&case) {
                    return StatusCode::from_u16(*code).expect("valid status");
                }
                let id = headers
                    .get("webhook-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                s.accepted.push(Received {
                    id,
                    raw: body.to_vec(),
                    body: json,
                    at: Instant::now(),
                });
                StatusCode::NO_CONTENT
            }
        };
        let app = axum::Router::new().fallback(axum::routing::post(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("receiver serves");
        });
        Receiver {
            addr,
            state,
            _task: task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/webhooks", self.addr)
    }

    /// Answer `status` to every request for `d`.
    pub fn fail_for(&self, d: Duration, status: u16) {
        let mut s = self.state.lock().expect("lock");
        s.fail_until = Some(Instant::now() + d);
        s.fail_status = status;
    }

    pub fn fail_case(&self, case: &str, status: u16) {
        self.state
            .lock()
            .expect("lock")
            .failing_cases
            .insert(case.to_string(), status);
    }

    pub fn accepted(&self) -> Vec<Received> {
        self.state.lock().expect("lock").accepted.clone()
    }

    pub fn requests(&self) -> u64 {
        self.state.lock().expect("lock").requests
    }

    pub fn bad_signatures(&self) -> u64 {
        self.state.lock().expect("lock").bad_signatures
    }

    /// Distinct webhook ids accepted so far.
    pub fn unique(&self) -> BTreeMap<String, Received> {
        let mut m = BTreeMap::new();
        for r in self.accepted() {
            m.entry(r.id.clone()).or_insert(r);
        }
        m
    }

    /// Waits until at least `n` distinct ids were accepted.
    pub async fn wait_unique(&self, n: usize, timeout: Duration) -> BTreeMap<String, Received> {
        poll_until(timeout, || {
            let u = self.unique();
            if u.len() >= n {
                Ok(u)
            } else {
                Err(format!("{} of {n} webhooks", u.len()))
            }
        })
        .await
    }

    /// Asserts that the count of distinct ids stays at `n` for `quiet`.
    pub async fn assert_stays(&self, n: usize, quiet: Duration) {
        tokio::time::sleep(quiet).await;
        assert_eq!(self.unique().len(), n, "unexpected extra webhooks");
    }

    /// Every id was always delivered with byte-identical bodies; returns the
    /// number of re-deliveries (retries of an id already accepted).
    pub fn assert_ids_stable(&self) -> usize {
        let mut bodies: HashMap<String, Vec<u8>> = HashMap::new();
        let mut repeats = 0;
        for r in self.accepted() {
            match bodies.get(&r.id) {
                Some(b) => {
                    assert_eq!(
                        b, &r.raw,
                        "webhook-id {} delivered with two different payloads",
                        r.id
                    );
                    repeats += 1;
                }
                None => {
                    bodies.insert(r.id.clone(), r.raw.clone());
                }
            }
        }
        repeats
    }
}

/// An isolated hubsync: its own folder, SQLite file, connector and mapping.
pub struct Hub {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

impl Hub {
    /// A hub with the acme-hub connector and mapping, pointing at `receiver_url`.
    /// `subscriber_extra` and `connector_extra` are appended TOML lines.
    pub fn new(receiver_url: &str, subscriber_extra: &str, connector_extra: &str, chunk_rows: usize) -> Hub {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("connectors")).expect("mkdir");
        std::fs::create_dir_all(root.join("mappings")).expect("mkdir");
        std::fs::copy(
            repo().join("mappings/acme-hub-status.toml"),
            root.join("mappings/acme-hub-status.toml"),
        )
        .expect("copy mapping");
        std::fs::write(
            root.join("connectors/acme-hub.toml"),
            format!(
                "program = \"ACME-ONC\"\nmapping = \"acme-hub-status\"\ntime_zone = \"America/New_York\"\n{connector_extra}\n\
                 [source]\nkind = \"local\"\npath = \"drop\"\npattern = \"*.csv\"\nsettle = \"300ms\"\nrescan = \"200ms\"\n\
                 [format]\nkind = \"csv\"\n"
            ),
        )
        .expect("write connector");
        std::fs::write(
            root.join("config.toml"),
            format!(
                "data_dir = \"data\"\n[store]\nchunk_rows = {chunk_rows}\n[pseudonymization]\nkey_env = \"HUBSYNC_PSEUDONYM_KEY\"\n\
                 [delivery]\npoll_interval = \"100ms\"\nshutdown_grace = \"2s\"\n\
                 [[subscribers]]\nname = \"mfr\"\nurl = \"{receiver_url}\"\nsecret_env = \"HUBSYNC_TEST_SECRET\"\ntimeout = \"5s\"\n{subscriber_extra}\n"
            ),
        )
        .expect("write config");
        std::fs::create_dir_all(root.join("drop")).expect("mkdir drop");
        Hub {
            config: root.join("config.toml"),
            dir,
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn drop_dir(&self) -> PathBuf {
        self.root().join("drop")
    }

    pub fn env() -> impl Fn(&str) -> Option<String> {
        |k| match k {
            "HUBSYNC_PSEUDONYM_KEY" => Some(PSEUDONYM_KEY.to_string()),
            "HUBSYNC_TEST_SECRET" => Some(SECRET.to_string()),
            "HUBSYNC_TEST_SECRETS_ROTATING" => Some(format!("{SECRET} {SECRET2}")),
            "HUBSYNC_TEST_ADMIN_TOKEN" => Some(ADMIN_TOKEN.to_string()),
            _ => None,
        }
    }

    pub fn load(&self) -> hubsync::setup::Config {
        hubsync::setup::load_with_env(&self.config, &Hub::env())
            .unwrap_or_else(|d| panic!("config loads:\n{d}"))
    }

    /// Drops a file the way hubs do: written under a temporary name, then renamed.
    pub fn drop_file(&self, from: &Path, name: &str) {
        let tmp = self.drop_dir().join(format!(".{name}.part"));
        std::fs::copy(from, &tmp).expect("copy into drop");
        std::fs::rename(&tmp, self.drop_dir().join(name)).expect("rename into drop");
    }

    /// Starts the daemon in this process.
    pub fn start(&self) -> Running {
        let config = self.load();
        let token = tokio_util::sync::CancellationToken::new();
        let t = token.clone();
        let task = tokio::spawn(async move { hubsync::runtime::run(config, t).await.expect("daemon runs") });
        Running {
            token,
            task: Some(task),
        }
    }

    /// Starts the daemon as a child process (for crash tests).
    pub fn spawn(&self) -> std::process::Child {
        self.command(&["run"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn hubsync")
    }

    /// `hubsync ARGS --config <this hub>` with the hub's environment.
    pub fn command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hubsync"));
        cmd.args(args)
            .arg("--config")
            .arg(&self.config)
            .env("HUBSYNC_PSEUDONYM_KEY", PSEUDONYM_KEY)
            .env("HUBSYNC_TEST_SECRET", SECRET)
            .env("HUBSYNC_TEST_SECRETS_ROTATING", format!("{SECRET} {SECRET2}"))
            .env("HUBSYNC_TEST_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("RUST_LOG", "warn");
        cmd
    }

    pub async fn store(&self) -> hubsync::store::Store {
        let c = self.load();
        hubsync::store::Store::open(&c.store_url)
            .await
            .expect("open store")
    }

    /// Waits until the drop folder has no partner files left.
    pub async fn wait_drained(&self, timeout: Duration) {
        poll_until(timeout, || {
            let left: Vec<_> = std::fs::read_dir(self.drop_dir())
                .expect("read drop")
                .filter_map(Result::ok)
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .map(|e| e.file_name())
                .collect();
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("drop folder not drained: {left:?}"))
            }
        })
        .await
    }

    /// Files under `sub` (archive or error), recursively.
    pub fn files_under(&self, sub: &str) -> Vec<PathBuf> {
        fn walk(p: &Path, out: &mut Vec<PathBuf>) {
            if let Ok(rd) = std::fs::read_dir(p) {
                for e in rd.filter_map(Result::ok) {
                    let path = e.path();
                    if path.is_dir() {
                        walk(&path, out);
                    } else {
                        out.push(path);
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.root().join("data").join(sub), &mut out);
        out.sort();
        out
    }
}

/// A daemon running in this process.
pub struct Running {
    token: tokio_util::sync::CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    pub async fn stop(mut self) {
        self.token.cancel();
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .expect("daemon stops in time")
                .expect("daemon task");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

/// Writes a synthetic acme-hub snapshot of `n` cases. Rows whose index is a
/// multiple of `change_every` (if any) get a later status date, so a re-load
/// changes exactly those.
pub fn write_snapshot(path: &Path, n: usize, change_every: Option<usize>) {
    use std::io::Write;
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).expect("create snapshot"));
    writeln!(w, "Case ID,Patient ID,Status Code,Status Date,Payer,PA Number").expect("write");
    let codes = ["REF", "BI", "BC", "PAS", "PAP", "PAD", "CPE"];
    for i in 0..n {
        let day = if change_every.is_some_and(|k| i % k == 0) {
            21
        } else {
            20
        };
        writeln!(
            w,
            "C{i:08},P{:09},{},11/{day}/2026,Aetna,PA{i:08}",
            i * 7 + 3,
            codes[i % codes.len()]
        )
        .expect("write");
    }
    w.flush().expect("flush");
}

// ------------------------------------------------------------ added for delivery tests

impl Hub {
    /// Replaces the config's subscriber section (and anything after it) with
    /// `tail`: several `[[subscribers]]`, an `[admin]` table, and so on.
    pub fn set_tail(&self, tail: &str) {
        let text = std::fs::read_to_string(&self.config).expect("read config");
        let head = &text[..text.find("[[subscribers]]").expect("config has a subscriber")];
        std::fs::write(&self.config, format!("{head}{tail}\n")).expect("write config");
    }

    /// Inserts `lines` into the `[delivery]` table.
    pub fn set_delivery(&self, lines: &str) {
        let text = std::fs::read_to_string(&self.config).expect("read config");
        let text = text.replacen("[delivery]\n", &format!("[delivery]\n{lines}\n"), 1);
        std::fs::write(&self.config, text).expect("write config");
    }

    /// Runs the `hubsync` binary with this hub's config and environment.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        self.command(args).output().expect("run hubsync")
    }
}

/// A free loopback port (bound, then released: good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// One request a [`Recorder`] saw, whatever it answered.
#[derive(Debug, Clone)]
pub struct Hit {
    pub at: Instant,
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub raw: Vec<u8>,
    pub json: serde_json::Value,
    /// For each known secret (SECRET, SECRET2): whether one `v1` entry verifies.
    pub verified_by: Vec<bool>,
    pub answered: u16,
}

impl Hit {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }
    pub fn id(&self) -> &str {
        self.header("webhook-id")
    }
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.answered)
    }
}

/// What a [`Recorder`] answers: a status and extra response headers.
pub type Responder = Arc<dyn Fn(&Hit, usize) -> (u16, Vec<(String, String)>) + Send + Sync>;

/// A webhook receiver on 127.0.0.1:0 that records every request (any path),
/// verifies signatures independently against both test secrets, and answers
/// what its responder says (given the request and how many came before).
pub struct Recorder {
    pub addr: SocketAddr,
    hits: Arc<Mutex<Vec<Hit>>>,
    responder: Arc<Mutex<Responder>>,
    _task: tokio::task::JoinHandle<()>,
}

fn signed_by(key: &[u8], headers: &HeaderMap, body: &[u8]) -> bool {
    verify(key, headers, body)
}

impl Recorder {
    pub async fn start() -> Recorder {
        let keys: Vec<Vec<u8>> = [SECRET, SECRET2]
            .iter()
            .map(|s| {
                base64::engine::general_purpose::STANDARD
                    .decode(s.trim_start_matches("whsec_"))
                    .expect("test secret is base64")
            })
            .collect();
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let responder: Arc<Mutex<Responder>> = Arc::new(Mutex::new(Arc::new(|_: &Hit, _| (204, vec![]))));
        let (h, r) = (hits.clone(), responder.clone());
        let handler = move |uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
            let (hits, responder, keys) = (h.clone(), r.clone(), keys.clone());
            async move {
                let verified_by: Vec<bool> = keys.iter().map(|k| signed_by(k, &headers, &body)).collect();
                let mut hit = Hit {
                    at: Instant::now(),
                    path: uri.path().to_string(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
                        .collect(),
                    raw: body.to_vec(),
                    json: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
                    verified_by,
                    answered: 0,
                };
                let respond = responder.lock().expect("lock").clone();
                let mut hits = hits.lock().expect("lock");
                let (status, extra) = if hit.verified_by.iter().any(|v| *v) {
                    respond(&hit, hits.len())
                } else {
                    (401, vec![])
                };
                hit.answered = status;
                hits.push(hit);
                let mut resp = axum::response::Response::builder().status(status);
                for (k, v) in extra {
                    resp = resp.header(k, v);
                }
                resp.body(axum::body::Body::from(
                    "{\"error\":\"member 123456789 rejected\"}",
                ))
                .expect("response builds")
            }
        };
        let app = axum::Router::new().fallback(axum::routing::post(handler));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("recorder serves");
        });
        Recorder {
            addr,
            hits,
            responder,
            _task: task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn respond(&self, f: impl Fn(&Hit, usize) -> (u16, Vec<(String, String)>) + Send + Sync + 'static) {
        *self.responder.lock().expect("lock") = Arc::new(f);
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().expect("lock").clone()
    }

    /// Accepted (2xx) hits, first per (path, webhook-id): one message goes
    /// to every matching subscriber with the same id.
    pub fn accepted(&self) -> Vec<Hit> {
        let mut seen = std::collections::HashSet::new();
        self.hits()
            .into_iter()
            .filter(|h| h.ok() && seen.insert((h.path.clone(), h.id().to_string())))
            .collect()
    }

    pub async fn wait_accepted(&self, n: usize, timeout: Duration) -> Vec<Hit> {
        poll_until(timeout, || {
            let a = self.accepted();
            if a.len() >= n {
                Ok(a)
            } else {
                Err(format!(
                    "{} of {n} accepted ({} requests)",
                    a.len(),
                    self.hits().len()
                ))
            }
        })
        .await
    }

    pub async fn wait_hits(&self, n: usize, timeout: Duration) -> Vec<Hit> {
        poll_until(timeout, || {
            let a = self.hits();
            if a.len() >= n {
                Ok(a)
            } else {
                Err(format!("{} of {n} requests", a.len()))
            }
        })
        .await
    }
}

/// GET/POST against the admin API.
pub async fn admin_get(port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new().get(format!("http://127.0.0.1:{port}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("admin API answers");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("body"))
}

pub async fn admin_post(
    port: u16,
    path: &str,
    token: Option<&str>,
    body: serde_json::Value,
) -> (u16, String) {
    let mut req = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}{path}"))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("admin API answers");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("body"))
}

/// Waits until the admin API answers /healthz.
pub async fn wait_admin(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(r) = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
        {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("admin API did not come up on port {port}");
}
