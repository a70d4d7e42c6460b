//! Webhook receivers on 127.0.0.1:0 that check every Standard Webhooks
//! signature with their own HMAC (never with hubsync's signer, so a signing
//! bug cannot vouch for itself): [`Receiver`] keeps what it accepted and can
//! be told to fail; [`Recorder`] keeps every request and answers what its
//! responder says.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{poll_until, SECRET, SECRET2};

/// The HMAC key behind a `whsec_…` secret.
pub fn key_of(secret: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(secret.trim_start_matches("whsec_"))
        .expect("test secret is base64")
}

/// `(webhook-id, webhook-timestamp, webhook-signature)`, empty where missing.
pub fn webhook_headers(headers: &HeaderMap) -> (String, String, String) {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    (h("webhook-id"), h("webhook-timestamp"), h("webhook-signature"))
}

/// The webhook-id, if one `v1` signature verifies under `key` and the
/// timestamp is within five minutes of now.
pub fn signed_id(key: &[u8], headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let (id, ts, sig) = webhook_headers(headers);
    let t: i64 = ts.parse().ok()?;
    if (chrono::Utc::now().timestamp() - t).abs() > 300 || id.is_empty() {
        return None;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    sig.split(' ')
        .any(|s| s.strip_prefix("v1,") == Some(expected.as_str()))
        .then_some(id)
}

/// Serves `app` on a fresh loopback port until the returned task is aborted.
pub async fn serve(app: axum::Router) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, task)
}

/// One request the receiver accepted (valid signature, answered 2xx).
#[derive(Debug, Clone)]
pub struct Received {
    /// The URL path it was posted to (one receiver can serve several subscribers).
    pub path: String,
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

/// A webhook receiver on 127.0.0.1:0 that accepts what is signed with
/// [`SECRET`] (401 otherwise) on any path, unless told to fail.
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let key = key_of(SECRET);
        let state = Arc::new(Mutex::new(State {
            fail_status: 500,
            ..Default::default()
        }));
        let st = state.clone();
        let handler = move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let st = st.clone();
            let key = key.clone();
            async move {
                let mut s = st.lock().expect("receiver state lock");
                s.requests += 1;
                let Some(id) = signed_id(&key, &headers, &body) else {
                    s.bad_signatures += 1;
                    return StatusCode::UNAUTHORIZED;
                };
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
                s.accepted.push(Received {
                    path: uri.path().to_string(),
                    id,
                    raw: body.to_vec(),
                    body: json,
                    at: Instant::now(),
                });
                StatusCode::NO_CONTENT
            }
        };
        let (addr, task) = serve(axum::Router::new().fallback(axum::routing::post(handler))).await;
        Receiver { addr, state, task }
    }

    pub fn url(&self) -> String {
        self.url_at("/webhooks")
    }

    /// This receiver under another path: one per subscriber, to tell them apart.
    pub fn url_at(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
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

    /// How many requests were accepted (re-deliveries included).
    pub fn count(&self) -> usize {
        self.state.lock().expect("lock").accepted.len()
    }

    /// Accepted webhooks whose body says it came from file `name`.
    pub fn count_from_file(&self, name: &str) -> usize {
        self.accepted()
            .iter()
            .filter(|r| r.body["data"]["source"]["file"] == name)
            .count()
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
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    pub async fn start() -> Recorder {
        let keys: Vec<Vec<u8>> = [SECRET, SECRET2].iter().map(|s| key_of(s)).collect();
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let responder: Arc<Mutex<Responder>> = Arc::new(Mutex::new(Arc::new(|_: &Hit, _| (204, vec![]))));
        let (h, r) = (hits.clone(), responder.clone());
        let handler = move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let (hits, responder, keys) = (h.clone(), r.clone(), keys.clone());
            async move {
                let verified_by: Vec<bool> = keys
                    .iter()
                    .map(|k| signed_id(k, &headers, &body).is_some())
                    .collect();
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
        let (addr, task) = serve(axum::Router::new().fallback(axum::routing::post(handler))).await;
        Recorder {
            addr,
            hits,
            responder,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn respond(&self, f: impl Fn(&Hit, usize) -> (u16, Vec<(String, String)>) + Send + Sync + 'static) {
        *self.responder.lock().expect("lock") = Arc::new(f);
    }

    /// Answers 503 until the returned switch is set, 204 after: a
    /// subscriber that is down, then comes back.
    pub fn down_until_healthy(&self) -> Arc<AtomicBool> {
        let healthy = Arc::new(AtomicBool::new(false));
        let h = healthy.clone();
        self.respond(move |_, _| {
            if h.load(Ordering::SeqCst) {
                (204, vec![])
            } else {
                (503, vec![])
            }
        });
        healthy
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

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}
