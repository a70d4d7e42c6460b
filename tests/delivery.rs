//! Delivery that manufacturers can trust (issue 6): real receivers on
//! 127.0.0.1:0 verifying signatures independently, a real SQLite file, the
//! daemon in-process (and the `hubsync` binary for operator commands).

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hubsync::config::DEFAULT_RETRY_SCHEDULE;
use hubsync::deliver::retry::{self, Verdict};
use support::{
    admin_get, admin_post, admin_table, fixture, free_port, poll_until, subscriber, wait_admin,
    write_snapshot, Hub, Receiver, Recorder, ADMIN_TOKEN,
};

/// The delivery set-up most tests share: a hub whose one subscriber, `mfr`,
/// posts to `rx` at `/w` with `extra` lines in its table.
fn recorded_hub(rx: &Recorder, extra: &str) -> Hub {
    let hub = Hub::new(&rx.url("/w"), "", "", 1000);
    hub.set_tail(&subscriber("mfr", &rx.url("/w"), extra));
    hub
}

/// Waits until `rx` has accepted `n` requests in all (replays included).
async fn wait_replayed(rx: &Receiver, n: usize) {
    poll_until(Duration::from_secs(10), || {
        let got = rx.accepted().len();
        if got >= n {
            Ok(())
        } else {
            Err(format!("replay not delivered: {got} of {n} requests"))
        }
    })
    .await
}

/// (case, milestone code) of every milestone a file maps to.
fn milestones(hub: &Hub, file: &Path) -> Vec<(String, String)> {
    let config = hub.load();
    let dry = hubsync::pipeline::dry_run(&config, &config.connectors[0], file).expect("dry run");
    dry.milestones
        .iter()
        .map(|(_, c)| (c.case_id.clone(), c.milestone.as_str().to_string()))
        .collect()
}

fn snapshot(hub: &Hub, name: &str, n: usize, change_every: Option<usize>) -> std::path::PathBuf {
    let p = hub.root().join(name);
    write_snapshot(&p, n, change_every);
    p
}

async fn stats(hub: &Hub, sub: &str) -> hubsync::store::SubscriberStats {
    let store = hub.store().await;
    let s = store
        .subscriber_stats()
        .await
        .expect("stats")
        .into_iter()
        .find(|s| s.subscriber == sub)
        .unwrap_or_default();
    store.close().await;
    s
}

/// Waits until the store's figures for `sub` satisfy `ok` (outcomes are
/// recorded just after the receiver answers).
async fn wait_stats(
    hub: &Hub,
    sub: &str,
    ok: impl Fn(&hubsync::store::SubscriberStats) -> bool,
) -> hubsync::store::SubscriberStats {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = stats(hub, sub).await;
        if ok(&s) {
            return s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "store figures never settled: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn state(hub: &Hub, sub: &str) -> hubsync::store::SubscriberState {
    let store = hub.store().await;
    let s = store
        .subscriber_states()
        .await
        .expect("states")
        .into_iter()
        .find(|s| s.subscriber == sub)
        .unwrap_or_default();
    store.close().await;
    s
}

// ------------------------------------------------------------------ retries

/// The default schedule (Standard Webhooks: 5 s … 24 h, nine retries after
/// the immediate attempt) runs its three days instantly under a paused clock,
/// each wait within ±20% of its step, then gives up.
#[tokio::test(start_paused = true)]
async fn retry_schedule_under_a_paused_clock() {
    let schedule: Vec<Duration> = DEFAULT_RETRY_SCHEDULE
        .iter()
        .map(|s| Duration::from_secs(*s))
        .collect();
    let start = tokio::time::Instant::now();
    let mut attempts = 1u32; // the immediate first attempt
    let mut waits = Vec::new();
    while let Some(d) = retry::next_delay(&schedule, attempts, None) {
        tokio::time::sleep(d).await;
        waits.push(d);
        attempts += 1;
    }
    assert_eq!(attempts, 10, "one attempt plus nine retries");
    for (w, base) in waits.iter().zip(&schedule) {
        assert!(
            *w >= base.mul_f64(0.8) && *w <= base.mul_f64(1.2),
            "{w:?} is not {base:?} ±20%"
        );
    }
    let sum: Duration = schedule.iter().sum();
    let elapsed = start.elapsed();
    assert!(
        elapsed >= sum.mul_f64(0.8) && elapsed <= sum.mul_f64(1.2),
        "{elapsed:?}"
    );
    assert!(elapsed > Duration::from_secs(3 * 86400 - 3600 * 12));

    // 429 waits at least 60 s even where the schedule says 5 s; Retry-After
    // is honoured but clamped.
    let clamp = Duration::from_secs(3600);
    let Verdict::Retry { min_wait, .. } = retry::classify_status(429, None, clamp) else {
        panic!("429 is retried")
    };
    let d = retry::next_delay(&schedule, 1, min_wait).expect("a retry");
    assert!(d >= Duration::from_secs(60), "{d:?}");
    let Verdict::Retry { min_wait, .. } = retry::classify_status(503, Some("86400"), clamp) else {
        panic!("503 is retried")
    };
    assert_eq!(min_wait, Some(clamp));
    // Other 4xx are permanent; 410 is permanent and marks the endpoint gone.
    assert!(matches!(
        retry::classify_status(404, None, clamp),
        Verdict::Permanent { gone: false, .. }
    ));
    assert!(matches!(
        retry::classify_status(410, None, clamp),
        Verdict::Permanent { gone: true, .. }
    ));
    assert!(matches!(
        retry::classify_status(301, None, clamp),
        Verdict::Permanent { .. }
    ));
}

/// A receiver that accepts and never answers: the timeout is retried, not
/// before 60 s.
#[tokio::test]
async fn timeouts_wait_at_least_a_minute() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let _hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            open.push(s);
        }
    });
    let err = reqwest::Client::new()
        .post(format!("http://{addr}/"))
        .timeout(Duration::from_millis(200))
        .send()
        .await
        .expect_err("never answered");
    let v = retry::classify_error(&err);
    assert!(
        matches!(&v, Verdict::Retry { min_wait: Some(d), .. } if *d >= Duration::from_secs(60)),
        "{v:?}"
    );
}

/// Retry-After is honoured (the next attempt waits for it rather than the
/// 100 ms schedule) and clamped by `retry_after_max` (2 s, not 120 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_with_a_clamp() {
    let rx = Recorder::start().await;
    rx.respond(|_, n| {
        if n == 0 {
            (503, vec![("retry-after".into(), "120".into())])
        } else {
            (204, vec![])
        }
    });
    let hub = recorded_hub(
        &rx,
        "retry_schedule = [\"100ms\", \"100ms\", \"100ms\"]\nretry_after_max = \"2s\"",
    );
    let file = snapshot(&hub, "one.csv", 1, None);
    let daemon = hub.start();
    hub.drop_file(&file, "one.csv");
    rx.wait_accepted(1, Duration::from_secs(15)).await;
    let hits = rx.hits();
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0].id(), hits[1].id(), "a retry keeps its webhook-id");
    assert_eq!(hits[0].raw, hits[1].raw, "and its body");
    let gap = hits[1].at - hits[0].at;
    assert!(
        gap >= Duration::from_millis(1900) && gap < Duration::from_secs(5),
        "Retry-After 120 clamped to 2 s, got {gap:?}"
    );
    daemon.stop().await;
}

/// 410 Gone disables the subscriber and says so (store, `hubsync status`);
/// its messages stay pending; `hubsync enable` resumes delivery. Failed
/// attempts keep only a redacted excerpt of the response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_disables_the_subscriber_until_enabled() {
    let rx = Recorder::start().await;
    rx.respond(|_, _| (410, vec![]));
    let hub = recorded_hub(&rx, "retry_schedule = [\"100ms\", \"100ms\"]\nmax_in_flight = 1");
    let file = snapshot(&hub, "three.csv", 3, None);
    let daemon = hub.start();
    hub.drop_file(&file, "three.csv");
    rx.wait_hits(1, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(rx.hits().len(), 1, "nothing is sent after a 410");
    let st = state(&hub, "mfr").await;
    assert!(st.disabled_at.is_some(), "{st:?}");
    assert_eq!(st.disabled_reason.as_deref(), Some("HTTP 410 Gone"));
    let s = stats(&hub, "mfr").await;
    assert_eq!((s.pending, s.failed), (3, 0), "messages stay pending: {s:?}");

    let status = hub.cli(&["status"]);
    let out = String::from_utf8_lossy(&status.stdout);
    assert!(out.contains("DISABLED (HTTP 410 Gone)"), "{out}");

    // The attempt log has the status and a redacted excerpt, never the raw body.
    let store = hub.store().await;
    let id = rx.hits()[0].id().to_string();
    let attempts = store.attempts(&id).await.expect("attempts");
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].status, Some(410));
    let excerpt = attempts[0].response_excerpt.clone().unwrap_or_default();
    assert!(
        excerpt.contains("rejected") && !excerpt.contains("123456789"),
        "{excerpt}"
    );
    store.close().await;

    rx.respond(|_, _| (204, vec![]));
    let out = hub.cli(&["enable", "--subscriber", "mfr"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = rx.wait_accepted(3, Duration::from_secs(10)).await;
    assert!(
        got.iter().any(|h| h.id() == id),
        "the message that got the 410 is delivered"
    );
    assert!(state(&hub, "mfr").await.disabled_at.is_none());
    daemon.stop().await;
}

/// Keys rotate: with two secrets, every request carries two signatures, one
/// per key, each verifying on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_rotation_signs_with_every_key() {
    let rx = Recorder::start().await;
    let hub = Hub::new(&rx.url("/w"), "", "", 1000);
    hub.set_tail(
        &subscriber("mfr", &rx.url("/w"), "")
            .replace("HUBSYNC_TEST_SECRET\"", "HUBSYNC_TEST_SECRETS_ROTATING\""),
    );
    let file = snapshot(&hub, "two.csv", 2, None);
    let daemon = hub.start();
    hub.drop_file(&file, "two.csv");
    let got = rx.wait_accepted(2, Duration::from_secs(15)).await;
    for h in &got {
        assert_eq!(h.verified_by, vec![true, true], "both keys verify");
        assert_eq!(h.header("webhook-signature").split(' ').count(), 2);
    }
    daemon.stop().await;
}

// ------------------------------------------------------- breaker and order

/// A subscriber that keeps failing is parked after 3 failures and probed
/// every 400 ms; probes use up no retries, so with a 3-retry schedule that
/// would dead-letter everything in 200 ms, nothing is dropped, and the first
/// good probe resumes delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circuit_breaker_parks_and_resumes() {
    let rx = Recorder::start().await;
    let healthy = rx.down_until_healthy();
    let hub = recorded_hub(
        &rx,
        "retry_schedule = [\"50ms\", \"50ms\", \"50ms\"]\nmax_in_flight = 2\nbreaker_failures = 3\nbreaker_probe_interval = \"400ms\"",
    );
    let file = snapshot(&hub, "ten.csv", 10, None);
    let daemon = hub.start();
    hub.drop_file(&file, "ten.csv");
    rx.wait_hits(3, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let while_down = rx.hits().len();
    // Without the breaker: 10 messages × 4 attempts = 40 requests by now.
    assert!(while_down <= 14, "{while_down} requests while parked");
    let st = state(&hub, "mfr").await;
    assert!(st.parked_until.is_some(), "parked: {st:?}");
    let status = String::from_utf8_lossy(&hub.cli(&["status"]).stdout).to_string();
    assert!(status.contains("PARKED"), "{status}");

    healthy.store(true, Ordering::SeqCst);
    rx.wait_accepted(10, Duration::from_secs(10)).await;
    let s = wait_stats(&hub, "mfr", |s| s.pending == 0).await;
    assert_eq!((s.delivered, s.failed, s.pending), (10, 0, 0), "{s:?}");
    assert!(state(&hub, "mfr").await.parked_until.is_none());
    daemon.stop().await;
}

/// Per-case FIFO holds for every case while another case's receiver keeps
/// failing: each case arrives as sequence 1, 2, … with no gap; the failing
/// case delivers nothing and holds up no one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_case_order_holds_while_another_case_keeps_failing() {
    let rx = Receiver::start().await;
    rx.fail_case("AC-100205", 503);
    let hub = Hub::new(&rx.url(), "retry_schedule = [\"150ms\", \"150ms\", \"150ms\", \"150ms\", \"150ms\", \"150ms\", \"150ms\", \"150ms\", \"150ms\", \"150ms\", \"150ms\", \"150ms\", \"150ms\", \"150ms\"]\nmax_in_flight = 4", "", 1000);
    let day1 = milestones(&hub, &fixture("status_20261122.csv"));
    let failing = day1.iter().filter(|(c, _)| c == "AC-100205").count();
    assert!(failing > 0);
    let expected = day1.len() - failing + 3;
    let daemon = hub.start();
    hub.drop_file(&fixture("status_20261122.csv"), "a.csv");
    hub.wait_drained(Duration::from_secs(10)).await;
    hub.drop_file(&fixture("status_20261123.csv"), "b.csv");
    rx.wait_unique(expected, Duration::from_secs(30)).await;
    rx.assert_stays(expected, Duration::from_millis(500)).await;
    let mut per_case: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for r in rx.accepted() {
        per_case
            .entry(r.body["data"]["case_id"].as_str().expect("case").to_string())
            .or_default()
            .push(r.body["data"]["sequence"].as_i64().expect("sequence"));
    }
    assert!(!per_case.contains_key("AC-100205"));
    for (case, seqs) in &per_case {
        let want: Vec<i64> = (1..=seqs.len() as i64).collect();
        assert_eq!(seqs, &want, "case {case} out of order or with a gap");
    }
    assert!(
        per_case.values().any(|s| s.len() >= 2),
        "some case got two deltas"
    );
    daemon.stop().await;
}

/// Coalescing: while the subscriber is down, a never-sent update that a later
/// update of the same milestone supersedes is marked `coalesced`, its outbox
/// row kept; the receiver gets the latest (and sees the sequence gap).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalescing_collapses_superseded_updates_while_down() {
    let rx = Recorder::start().await;
    let healthy = rx.down_until_healthy();
    let hub = recorded_hub(
        &rx,
        "coalesce = true\nmax_in_flight = 1\nbreaker_failures = 1\nbreaker_probe_interval = \"300ms\"\nretry_schedule = [\"100ms\", \"100ms\", \"100ms\"]",
    );
    let a = snapshot(&hub, "a.csv", 20, None);
    let b = snapshot(&hub, "b.csv", 20, Some(2)); // even cases move on
    let daemon = hub.start();
    hub.drop_file(&a, "status_a.csv");
    hub.wait_drained(Duration::from_secs(10)).await;
    hub.drop_file(&b, "status_b.csv");
    hub.wait_drained(Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(900)).await; // a probe or two: coalescing runs
    healthy.store(true, Ordering::SeqCst);
    // 20 + 10 updates; the 9 superseded and never attempted are collapsed
    // (case 0's first update was attempted before the breaker opened: kept).
    let got = rx.wait_accepted(21, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.accepted().len(), 21);
    let s = wait_stats(&hub, "mfr", |s| s.pending == 0).await;
    assert_eq!((s.coalesced, s.pending, s.failed), (9, 0, 0), "{s:?}");
    let mut per_case: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for h in &got {
        per_case
            .entry(h.json["data"]["case_id"].as_str().expect("case").to_string())
            .or_default()
            .push(h.json["data"]["sequence"].as_i64().expect("seq"));
    }
    assert_eq!(per_case["C00000000"], vec![1, 2]);
    assert_eq!(
        per_case["C00000002"],
        vec![2],
        "sequence 1 coalesced: a gap the receiver can see"
    );
    assert_eq!(per_case["C00000001"], vec![1]);
    // The superseded outbox rows are still there (timeline shows them).
    let store = hub.store().await;
    let case2 = got
        .iter()
        .find(|h| h.json["data"]["case_id"] == "C00000002")
        .expect("case 2");
    let program = case2.json["data"]["program"].as_str().expect("program");
    let timeline = store.case_timeline(program, "C00000002").await.expect("timeline");
    assert_eq!(timeline.len(), 2);
    assert_eq!(
        timeline[0].deliveries[0].status,
        hubsync::store::DeliveryStatus::Coalesced
    );
    store.close().await;
    daemon.stop().await;
}

// --------------------------------------------------------- replay, filters

/// `hubsync replay` by time range re-sends exactly that range, by message id
/// exactly that message, with the same webhook-id and byte-identical body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_by_time_range_and_by_message() {
    let rx = Receiver::start().await;
    let hub = Hub::new(&rx.url(), "", "", 1000);
    let n1 = milestones(&hub, &fixture("status_20261122.csv")).len();
    let daemon = hub.start();
    hub.drop_file(&fixture("status_20261122.csv"), "a.csv");
    rx.wait_unique(n1, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let t1 = chrono::Utc::now().to_rfc3339();
    tokio::time::sleep(Duration::from_millis(20)).await;
    hub.drop_file(&fixture("status_20261123.csv"), "b.csv");
    let all = rx.wait_unique(n1 + 3, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let t2 = chrono::Utc::now().to_rfc3339();
    assert_eq!(rx.accepted().len(), n1 + 3);

    let out = hub.cli(&["replay", "--subscriber", "mfr", "--since", &t1, "--until", &t2]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("3 message(s)"));
    wait_replayed(&rx, n1 + 6).await;
    let replayed: Vec<_> = rx.accepted()[n1 + 3..].to_vec();
    for r in &replayed {
        assert_eq!(r.body["data"]["source"]["file"], "b.csv", "only the day-2 range");
    }
    assert_eq!(rx.assert_ids_stable(), 3, "same ids, byte-identical bodies");

    let one = all.keys().next().expect("an id").clone();
    let out = hub.cli(&["replay", "--subscriber", "mfr", "--message", &one]);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("1 message(s)"));
    wait_replayed(&rx, n1 + 7).await;
    assert_eq!(rx.accepted().last().expect("one").id, one);
    rx.assert_stays(n1 + 3, Duration::from_millis(300)).await;
    assert_eq!(rx.accepted().len(), n1 + 7);
    daemon.stop().await;
}

/// Filters by milestone pattern, program and connector.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_by_milestone_program_and_connector() {
    let rx = Recorder::start().await;
    let hub = Hub::new(&rx.url("/x"), "", "", 1000);
    hub.set_tail(&format!(
        "{}{}{}{}",
        subscriber("pa", &rx.url("/pa"), "milestones = [\"pa.*\"]"),
        subscriber("bv", &rx.url("/bv"), "connectors = [\"acme-hub\"]\nmilestones = [\"bv.*\", \"dispense.shipped\"]\nprograms = [\"ACME-ONC\"]"),
        subscriber("other-program", &rx.url("/op"), "programs = [\"OTHER\"]"),
        subscriber("other-connector", &rx.url("/oc"), "connectors = [\"nope\"]"),
    ));
    let all = milestones(&hub, &fixture("status_20261122.csv"));
    let n_pa = all.iter().filter(|(_, m)| m.starts_with("pa.")).count();
    let n_bv = all
        .iter()
        .filter(|(_, m)| m.starts_with("bv.") || m == "dispense.shipped")
        .count();
    assert!(n_pa > 0 && n_bv > 0 && n_pa + n_bv < all.len());
    let daemon = hub.start();
    hub.drop_file(&fixture("status_20261122.csv"), "a.csv");
    rx.wait_accepted(n_pa + n_bv, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let hits = rx.accepted();
    assert_eq!(hits.len(), n_pa + n_bv);
    let on = |p: &str| hits.iter().filter(|h| h.path == p).collect::<Vec<_>>();
    assert_eq!(on("/pa").len(), n_pa);
    assert!(on("/pa")
        .iter()
        .all(|h| h.json["type"].as_str().is_some_and(|t| t.starts_with("pa."))));
    assert_eq!(on("/bv").len(), n_bv);
    assert!(on("/op").is_empty() && on("/oc").is_empty());
    assert_eq!(stats(&hub, "other-program").await.pending, 0);
    daemon.stop().await;
}

// ----------------------------------------------- CloudEvents, thin, admin

/// CloudEvents binary mode: `ce-*` headers with the case as partition key
/// and its sequence; the body is the `data`. Thin payloads carry ids and a
/// link the admin API serves (with the token only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudevents_binary_mode_and_thin_payloads() {
    let rx = Recorder::start().await;
    let port = free_port();
    let hub = Hub::new(&rx.url("/x"), "", "", 1000);
    hub.set_tail(&format!(
        "{}{}{}",
        subscriber("ce", &rx.url("/ce"), "envelope = \"cloudevents\""),
        subscriber("thin", &rx.url("/thin"), "payload = \"thin\""),
        admin_table(port),
    ));
    let file = snapshot(&hub, "two.csv", 2, None);
    let daemon = hub.start();
    wait_admin(port).await;
    hub.drop_file(&file, "two.csv");
    let hits = rx.wait_accepted(4, Duration::from_secs(15)).await;
    for h in hits.iter().filter(|h| h.path == "/ce") {
        assert!(h.verified_by[0], "signed over the data body");
        assert_eq!(h.header("ce-specversion"), "1.0");
        assert_eq!(h.header("ce-id"), h.id());
        assert_eq!(h.header("ce-source"), "/hubsync/connectors/acme-hub");
        assert_eq!(
            h.header("ce-type"),
            h.json["milestone"].as_str().expect("milestone")
        );
        let case = h.json["case_id"].as_str().expect("body is the data");
        let program = h.json["program"].as_str().expect("program");
        assert_eq!(h.header("ce-subject"), case);
        assert_eq!(h.header("ce-partitionkey"), format!("{program}/{case}"));
        assert_eq!(h.header("ce-sequence"), h.json["sequence"].to_string());
        assert!(chrono::DateTime::parse_from_rfc3339(h.header("ce-time")).is_ok());
        assert!(h.json.get("data").is_none() && h.json["source"]["file"] == "two.csv");
    }
    for h in hits.iter().filter(|h| h.path == "/thin") {
        let d = &h.json["data"];
        assert_eq!(d["id"], h.id());
        assert!(
            d.get("patient_ref").is_none() && d.get("attributes").is_none(),
            "thin: ids only"
        );
        let href = d["href"].as_str().expect("href");
        let path = href.trim_start_matches(&format!("http://127.0.0.1:{port}"));
        let (code, _) = admin_get(port, path, None).await;
        assert_eq!(code, 401);
        let (code, body) = admin_get(port, path, Some(ADMIN_TOKEN)).await;
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["payload"]["data"]["case_id"], d["case_id"]);
        assert_eq!(v["payload"]["data"]["sequence"], d["sequence"]);
    }
    daemon.stop().await;
}

/// The admin API refuses requests without the right bearer token, and
/// serves health, Prometheus metrics, backlog, attempts, dead letters, a
/// case's timeline and replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_metrics_and_operations() {
    let rx = Receiver::start().await;
    let port = free_port();
    let hub = Hub::new(&rx.url(), "", "", 1000);
    hub.set_tail(&format!(
        "{}{}",
        subscriber("mfr", &rx.url(), ""),
        admin_table(port)
    ));
    let n1 = milestones(&hub, &fixture("status_20261122.csv")).len();
    let daemon = hub.start();
    wait_admin(port).await;

    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/subscribers",
        "/v1/subscribers/mfr/dead-letters",
    ] {
        assert_eq!(admin_get(port, path, None).await.0, 401, "{path} without a token");
        assert_eq!(
            admin_get(port, path, Some("wrong-token-wrong-token")).await.0,
            401,
            "{path}"
        );
    }
    let (code, _) = admin_post(port, "/v1/replay", None, serde_json::json!({"subscriber": "mfr"})).await;
    assert_eq!(code, 401);
    assert_eq!(admin_get(port, "/healthz", Some(ADMIN_TOKEN)).await.0, 200);
    assert_eq!(admin_get(port, "/readyz", Some(ADMIN_TOKEN)).await.0, 200);

    hub.drop_file(&fixture("status_20261122.csv"), "a.csv");
    rx.wait_unique(n1, Duration::from_secs(20)).await;
    hub.drop_file(&fixture("status_20261123.csv"), "b.csv");
    let all = rx.wait_unique(n1 + 3, Duration::from_secs(20)).await;
    let n = n1 + 3;

    // Metrics: counters, the latency histogram and store-derived gauges.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let text = loop {
        let (code, text) = admin_get(port, "/metrics", Some(ADMIN_TOKEN)).await;
        assert_eq!(code, 200);
        // Counters move when the receiver answers; store gauges once the
        // batch is committed a moment later.
        if text.contains(&format!(
            "hubsync_delivery_attempts_total{{subscriber=\"mfr\",result=\"delivered\"}} {n}\n"
        )) && text.contains("hubsync_delivery_backlog{subscriber=\"mfr\"} 0\n")
        {
            break text;
        }
        assert!(std::time::Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(name)
                    .map(|v| v.trim().parse::<f64>().expect("number"))
            })
            .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
    };
    assert!(text.contains("# TYPE hubsync_delivery_latency_seconds histogram"));
    assert_eq!(
        value("hubsync_delivery_latency_seconds_count{subscriber=\"mfr\"}"),
        n as f64
    );
    assert_eq!(
        value("hubsync_delivery_latency_seconds_bucket{subscriber=\"mfr\",le=\"+Inf\"}"),
        n as f64
    );
    assert_eq!(
        value("hubsync_delivery_backlog{subscriber=\"mfr\"}"),
        0.0,
        "accepted {} unique {} stats {:?}\n{text}",
        rx.accepted().len(),
        rx.unique().len(),
        stats(&hub, "mfr").await
    );
    assert_eq!(value("hubsync_delivery_dead_letters{subscriber=\"mfr\"}"), 0.0);
    assert_eq!(value("hubsync_subscriber_breaker_open{subscriber=\"mfr\"}"), 0.0);
    assert_eq!(value("hubsync_subscriber_disabled{subscriber=\"mfr\"}"), 0.0);

    let (_, body) = admin_get(port, "/v1/subscribers", Some(ADMIN_TOKEN)).await;
    let subs: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(subs[0]["name"], "mfr");
    assert_eq!(subs[0]["pending"], 0);
    assert_eq!(subs[0]["delivered"], n as i64);
    assert!(
        !body.contains("127.0.0.1"),
        "no subscriber URL in the API: {body}"
    );

    // A case's timeline: every milestone in sequence order with provenance.
    let day2 = all
        .values()
        .find(|r| r.body["data"]["source"]["file"] == "b.csv")
        .expect("a day-2 delta");
    let (program, case) = (
        day2.body["data"]["program"].as_str().expect("program"),
        day2.body["data"]["case_id"].as_str().expect("case"),
    );
    let (code, body) = admin_get(
        port,
        &format!("/v1/cases/{program}/{case}/timeline"),
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let tl: Vec<serde_json::Value> = serde_json::from_str(&body).expect("json");
    let seqs: Vec<i64> = tl.iter().map(|m| m["sequence"].as_i64().expect("seq")).collect();
    assert_eq!(seqs, (1..=tl.len() as i64).collect::<Vec<_>>());
    assert_eq!(tl.last().expect("last")["file"], "b.csv");
    assert!(tl[0]["sha256"].as_str().is_some_and(|s| s.len() == 64));
    assert!(tl[0]["locator"].as_str().is_some_and(|l| l.starts_with("line")));
    assert_eq!(tl[0]["deliveries"][0]["status"], "delivered");
    assert!(
        tl[0].get("payload").is_none_or(|p| p.is_null()),
        "the timeline carries no payloads"
    );

    // Attempts of a message; dead letters (none); replay through the API.
    let id = day2.id.clone();
    let (_, body) = admin_get(port, &format!("/v1/messages/{id}/attempts"), Some(ADMIN_TOKEN)).await;
    let attempts: Vec<serde_json::Value> = serde_json::from_str(&body).expect("json");
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["status"], 204);
    let (_, body) = admin_get(port, "/v1/subscribers/mfr/dead-letters", Some(ADMIN_TOKEN)).await;
    assert_eq!(body, "[]");
    assert_eq!(
        admin_get(port, "/v1/messages/msg_nope", Some(ADMIN_TOKEN))
            .await
            .0,
        404
    );
    let (code, body) = admin_post(
        port,
        "/v1/replay",
        Some(ADMIN_TOKEN),
        serde_json::json!({"subscriber": "mfr", "program": program, "case_id": case}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let count: serde_json::Value = serde_json::from_str(&body).expect("json");
    let replayed = count["replayed"].as_u64().expect("count") as usize;
    assert_eq!(replayed, tl.len());
    wait_replayed(&rx, n + replayed).await;
    rx.assert_ids_stable();
    daemon.stop().await;
}

// ------------------------------------------------------------- privacy, mTLS

/// The cleaner nulls delivered payloads past retention (ids and metadata
/// stay); a dead letter keeps its body for replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_cleaner_purges_delivered_payloads() {
    let rx = Recorder::start().await;
    rx.respond(|h, _| {
        if h.json["data"]["case_id"] == "C00000001" {
            (400, vec![])
        } else {
            (204, vec![])
        }
    });
    let hub = Hub::new(&rx.url("/w"), "", "", 1000);
    hub.set_delivery("payload_retention = \"0s\"\ncleaner_interval = \"100ms\"");
    let file = snapshot(&hub, "three.csv", 3, None);
    let daemon = hub.start();
    hub.drop_file(&file, "three.csv");
    rx.wait_hits(3, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let store = hub.store().await;
    for h in rx.hits() {
        let m = store.message(h.id()).await.expect("query").expect("row kept");
        if h.ok() {
            assert!(m.body.is_none(), "delivered payload purged");
            assert_eq!(m.deliveries[0].status, hubsync::store::DeliveryStatus::Delivered);
        } else {
            assert!(m.body.is_some(), "a dead letter keeps its payload");
            assert_eq!(m.deliveries[0].status, hubsync::store::DeliveryStatus::Failed);
        }
    }
    assert_eq!(store.dead_letters("mfr", 10).await.expect("dead").len(), 1);
    store.close().await;
    daemon.stop().await;
}

/// mTLS: a client certificate and key in config load into a client; a
/// missing key file is reported with its location.
#[tokio::test]
async fn mtls_client_certificate_loads() {
    let hub = Hub::new("https://127.0.0.1:9/w", "", "", 1000);
    let (cert, key) = (hub.root().join("client.pem"), hub.root().join("client.key"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=hubsync-test",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output();
    if !made.is_ok_and(|o| o.status.success()) {
        eprintln!("openssl unavailable; skipping the certificate part");
        return;
    }
    hub.set_tail(&subscriber(
        "mfr",
        "https://127.0.0.1:9/w",
        "client_cert = \"client.pem\"\nclient_key = \"client.key\"",
    ));
    let config = hub.load();
    let sub = &config.subscribers[0];
    assert!(sub.identity.is_some());
    assert!(
        !format!("{sub:?}").contains("PRIVATE"),
        "the key is never printed"
    );
    hubsync::deliver::client_for(sub, &hubsync::deliver::http_client()).expect("client with identity");

    hub.set_tail(&subscriber(
        "mfr",
        "https://127.0.0.1:9/w",
        "client_cert = \"client.pem\"\nclient_key = \"missing.key\"",
    ));
    let err = hubsync::setup::load_with_env(&hub.config, &Hub::env()).expect_err("missing key");
    let text = err.to_string();
    assert!(
        text.contains("missing.key") && text.contains("config.toml:"),
        "{text}"
    );
}
