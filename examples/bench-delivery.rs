//! Delivery benchmark: signed deliveries per second to a local receiver, and
//! latency from outbox commit to receipt. See `docs/bench-delivery.md` and
//! `scripts/bench-delivery`.
//!
//! Modes:
//! - `drain N`: commit N messages (N/2 cases, two deltas each), then start
//!   one delivery worker and time the drain: the sustained ceiling.
//! - `rate R SECS`: commit R messages per second (in 100 ms chunks) while the
//!   worker delivers: commit-to-receipt latency at that load.
//! - `serve PORT`: only the receiver, for `wrk`; writes `post.lua` with a
//!   signed request so wrk does exactly the work hubsync's requests cause.
//!
//! The receiver verifies every Standard Webhooks signature and parses the
//! JSON body, as a real receiver would. Latency is measured from just
//! before each chunk's commit (the body's `timestamp`) to receipt, so it
//! includes the commit itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use hubsync::config::{Envelope, PayloadMode};
use hubsync::deliver::Subscriber;
use hubsync::deliver::{http_client, sign, Worker};
use hubsync::outbox::OutboxWrite;
use hubsync::store::{FileArrival, Store};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[derive(Default)]
struct Rx {
    received: AtomicU64,
    bad: AtomicU64,
    latencies_ms: Mutex<Vec<f64>>,
}

async fn receiver(rx: Arc<Rx>, port: u16) -> std::net::SocketAddr {
    let key = hubsync::deliver::sign::decode_secret(SECRET).expect("valid secret");
    let keys = Arc::new(vec![key]);
    let handler = move |headers: HeaderMap, body: Bytes| {
        let (rx, keys) = (rx.clone(), keys.clone());
        async move {
            let h = |n: &str| {
                headers
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string()
            };
            let now = chrono::Utc::now();
            if sign::verify(
                &keys,
                &h("webhook-id"),
                &h("webhook-timestamp"),
                &h("webhook-signature"),
                &body,
                now.timestamp(),
                300,
            )
            .is_err()
            {
                rx.bad.fetch_add(1, Ordering::Relaxed);
                return StatusCode::UNAUTHORIZED;
            }
            let v: serde_json::Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(_) => return StatusCode::BAD_REQUEST,
            };
            if let Some(ts) = v["timestamp"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            {
                let ms = (now - ts.with_timezone(&chrono::Utc))
                    .num_microseconds()
                    .unwrap_or(0) as f64
                    / 1000.0;
                rx.latencies_ms.lock().expect("lock").push(ms);
            }
            rx.received.fetch_add(1, Ordering::Relaxed);
            StatusCode::NO_CONTENT
        }
    };
    let app = axum::Router::new().fallback(axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    addr
}

fn body(i: u64, case: u64, seq: i64) -> String {
    let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    // About the size of a real milestone body (~900 bytes).
    format!(
        r#"{{"type":"pa.approved","timestamp":"{ts}","data":{{"program":"BENCH","case_id":"C{case:08}","milestone":"pa.approved","occurrence":"","occurred_at":"2026-11-20","occurred_precision":"date","time_zone":"America/New_York","patient_ref":"pt_{i:032x}","status":"PENDING","sub_status":null,"reasons":[{{"system":"source:bench:status_code","code":"PAA"}}],"attributes":{{"auth_number":"PA{i:08}","payer":"Aetna","plan_type":"Commercial","pa_start":"2026-11-20","pa_end":"2027-11-20"}},"source":{{"connector":"bench","file":"bench.csv","sha256":"{:064x}","locator":"line {i}"}},"change":{{"kind":"created","fields":[]}},"sequence":{seq}}}}}"#,
        i
    )
}

async fn commit(store: &Store, file_id: i64, from: u64, n: u64, cases: u64) {
    let mut rows = Vec::with_capacity(n as usize);
    for i in from..from + n {
        let case = i % cases;
        let seq = (i / cases) as i64 + 1;
        rows.push(OutboxWrite {
            id: hubsync::outbox::new_webhook_id(),
            connector: "bench".into(),
            program: "BENCH".into(),
            case_id: format!("C{case:08}"),
            milestone: "pa.approved".into(),
            seq,
            lane: xxhash_rust::xxh3::xxh3_64(format!("BENCH/C{case:08}").as_bytes()),
            body: body(i, case, seq),
            key_hash: i,
            subscribers: vec!["bench".into()],
        });
    }
    let mut tx = store.begin().await.expect("begin");
    tx.insert_outbox(&rows, file_id).await.expect("insert");
    tx.commit().await.expect("commit");
}

fn subscriber(url: &str, in_flight: usize) -> Subscriber {
    Subscriber {
        name: "bench".into(),
        url: reqwest::Url::parse(url).expect("url"),
        keys: vec![hubsync::deliver::sign::decode_secret(SECRET).expect("secret")],
        timeout: Duration::from_secs(15),
        max_in_flight: in_flight,
        retry_schedule: vec![Duration::from_secs(5)],
        retry_after_max: Duration::from_secs(60),
        milestones: vec![],
        programs: vec![],
        connectors: vec![],
        allow_link_local: false,
        headers: vec![],
        identity: None,
        payload: PayloadMode::Full,
        link_base: None,
        envelope: Envelope::Standard,
        coalesce: false,
        breaker_failures: 0,
        breaker_probe_interval: Duration::from_secs(30),
        feed_missing: false,
    }
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map(String::as_str).unwrap_or("drain");
    let arg = |i: usize, d: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    let in_flight: usize = std::env::var("IN_FLIGHT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let rx = Arc::new(Rx::default());
    if mode == "serve" {
        let addr = receiver(rx.clone(), arg(1, 9911) as u16).await;
        let id = "msg_wrkbench0000000000000000000000";
        let ts = chrono::Utc::now().timestamp();
        let b = body(1, 1, 1);
        let key = hubsync::deliver::sign::decode_secret(SECRET).expect("secret");
        let sig = sign::sign(&[key], id, ts, b.as_bytes());
        let lua = format!(
            "wrk.method = \"POST\"\nwrk.body = {}\nwrk.headers[\"content-type\"] = \"application/json\"\nwrk.headers[\"webhook-id\"] = \"{id}\"\nwrk.headers[\"webhook-timestamp\"] = \"{ts}\"\nwrk.headers[\"webhook-signature\"] = \"{sig}\"\n",
            serde_json::Value::from(b.as_str())
        );
        std::fs::write("post.lua", lua).expect("write post.lua");
        eprintln!("receiver on http://{addr}/ ; post.lua written (valid for 5 minutes)");
        let mut last = 0;
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let n = rx.received.load(Ordering::Relaxed);
            if n != last {
                eprintln!("received {n} (bad signatures {})", rx.bad.load(Ordering::Relaxed));
                last = n;
            }
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("bench.db");
    let url = format!("sqlite://{}", db.display());
    let store = Store::open(&url).await.expect("store");
    let file = match store
        .file_claim(&FileArrival {
            connector: "bench",
            sha256: "0",
            name: "bench.csv",
            size: 0,
        })
        .await
        .expect("ledger row")
    {
        hubsync::store::Claim::Owned(row) => row,
        other => panic!("a fresh store hands the file to this process: {other:?}"),
    };
    let addr = receiver(rx.clone(), 0).await;
    let sub = Arc::new(subscriber(&format!("http://{addr}/hook"), in_flight));
    let wake = Arc::new(tokio::sync::Notify::new());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let start_worker = |store: Store| {
        let w = Worker {
            store,
            sub: sub.clone(),
            client: http_client(),
            wake: wake.clone(),
            poll: Duration::from_millis(100),
            metrics: Arc::default(),
            // As the daemon does on SQLite.
            journal: hubsync::deliver::journal::dir_for(&url, &sub.name),
        };
        let t = shutdown.clone();
        tokio::spawn(async move { w.run(t, Duration::from_secs(5)).await })
    };
    match mode {
        "drain" => {
            let n = arg(1, 50_000);
            let cases = (n / 2).max(1);
            let mut i = 0;
            while i < n {
                let k = 4096.min(n - i);
                commit(&store, file.id, i, k, cases).await;
                i += k;
            }
            rx.latencies_ms.lock().expect("lock").clear();
            let t0 = Instant::now();
            let worker = start_worker(store.clone());
            while rx.received.load(Ordering::Relaxed) < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let secs = t0.elapsed().as_secs_f64();
            // Wait until the last outcomes are recorded too.
            loop {
                let s = store.subscriber_stats().await.expect("stats");
                if s.first().is_some_and(|s| s.pending == 0) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let settled = t0.elapsed().as_secs_f64();
            println!(
                "drain: {n} messages, max_in_flight {in_flight}: {:.0} deliveries/s received ({secs:.2}s), {:.0}/s settled in the store ({settled:.2}s); bad signatures {}",
                n as f64 / secs,
                n as f64 / settled,
                rx.bad.load(Ordering::Relaxed)
            );
            shutdown.cancel();
            let _ = worker.await;
        }
        "rate" => {
            let rate = arg(1, 2000);
            let secs = arg(2, 10);
            let cases = (rate * secs / 2).max(1);
            let worker = start_worker(store.clone());
            let t0 = Instant::now();
            let per_tick = (rate / 10).max(1);
            let mut i = 0;
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            while t0.elapsed() < Duration::from_secs(secs) {
                tick.tick().await;
                commit(&store, file.id, i, per_tick, cases).await;
                wake.notify_one();
                i += per_tick;
            }
            let deadline = Instant::now() + Duration::from_secs(60);
            while rx.received.load(Ordering::Relaxed) < i && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let got = rx.received.load(Ordering::Relaxed);
            let mut l = rx.latencies_ms.lock().expect("lock").clone();
            println!(
                "rate: {rate}/s offered for {secs}s ({i} messages, {got} received), max_in_flight {in_flight}: commit-to-receipt p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                pct(&mut l, 0.5),
                pct(&mut l, 0.99),
                pct(&mut l, 1.0)
            );
            shutdown.cancel();
            let _ = worker.await;
        }
        other => eprintln!("unknown mode `{other}`: drain N | rate R SECS | serve PORT"),
    }
    store.close().await;
}
