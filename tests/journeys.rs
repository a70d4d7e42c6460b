//! Journey rules and durable timers (issue 15), end to end: a real SQLite
//! file or PostgreSQL database, a real receiver verifying signatures, the
//! real daemon in process (or as a child killed with SIGKILL). Deadlines are
//! seconds long, measured from when hubsync learns the trigger, so the wall
//! clock runs for real; day-long waits are covered by the calendar unit
//! tests and by firing with an injected `now` (`timers::fire::fire_due`).

mod support;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use hubsync::journey::timer::TimerStatus;
use support::{poll_until, Hub, Receiver};

const HEADER: &str = "Case ID,Patient ID,Patient Last Name,Patient DOB,Status Code,Status Date,Sub Status,Payer,Plan Type,PA Number,PA Approval Date,PA Start,PA End,Denial Reason,Ship Date,Carrier,Tracking Number,Fill Number,NDC,Quantity,Days Supply,Last Updated";

/// A PA approval (approved on `date`, MM/DD/YYYY) with no dispense.
fn approved(case: &str, date: &str) -> String {
    format!("{case},P{case},Doe,01/01/1970,PAA,{date},Awaiting Dispense,Aetna,Commercial,PA-{case},{date},{date},12/31/2030,,,,,,,,,")
}

/// The same case, shipped on `ship` (its approval still on the row, as hubs send snapshots).
fn shipped(case: &str, date: &str, ship: &str) -> String {
    format!("{case},P{case},Doe,01/01/1970,SHP,{ship},Shipped,Aetna,Commercial,PA-{case},{date},{date},12/31/2030,,{ship},UPS,1Z{case},1,00002-1234-01,30,30,")
}

fn csv(rows: &[String]) -> String {
    let mut s = String::from(HEADER);
    for r in rows {
        s.push('\n');
        s.push_str(r);
    }
    s.push('\n');
    s
}

/// Writes the hub's rule file: PA approval must be followed by a dispense.
fn rules(hub: &Hub, deadline: &str, from: &str, extra: &str) {
    let dir = hub.root().join("journeys");
    std::fs::create_dir_all(&dir).expect("mkdir journeys");
    std::fs::write(
        dir.join("acme-onc.toml"),
        format!(
            "program = \"ACME-ONC\"\n\n[[rule]]\nname = \"approved-not-dispensed\"\nseverity = \"high\"\n\
             trigger = \"pa.approved\"\nawaits = [\"dispense.shipped\", \"dispense.completed\"]\n\
             cancels = [\"case.cancelled\"]\ndeadline = \"{deadline}\"\nfrom = \"{from}\"\n{extra}\n"
        ),
    )
    .expect("write rules");
}

fn drop_text(hub: &Hub, name: &str, text: &str) {
    let src = hub.root().join(format!("src-{name}"));
    std::fs::write(&src, text).expect("write file");
    hub.drop_file(&src, name);
}

fn of_type<'a>(got: &'a BTreeMap<String, support::Received>, kind: &str) -> Vec<&'a support::Received> {
    got.values().filter(|r| r.body["type"] == kind).collect()
}

/// A quiet case stalls from the wall clock, with no further file; a case
/// whose dispense arrives with its approval never arms; the stall is sent
/// once, signed, in the case's sequence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_case_stalls_on_time_and_once() {
    let rx = Receiver::start().await;
    let hub = Hub::new(&rx.url(), "", "", 1000);
    rules(&hub, "2s", "learned_at", "");
    let port = support::free_port();
    let text = std::fs::read_to_string(&hub.config).expect("config");
    std::fs::write(
        &hub.config,
        format!("{text}\n[admin]\nlisten = \"127.0.0.1:{port}\"\ntoken_env = \"HUBSYNC_TEST_ADMIN_TOKEN\"\n"),
    )
    .expect("config");
    let daemon = hub.start();
    let t0 = std::time::Instant::now();
    drop_text(
        &hub,
        "status_20261201.csv",
        &csv(&[
            approved("Q-1", "11/30/2026"),
            shipped("Q-2", "11/29/2026", "11/30/2026"),
        ]),
    );
    // pa.approved ×2 + dispense.shipped, then one stall.
    let got = rx.wait_unique(4, Duration::from_secs(20)).await;
    let stalls = of_type(&got, "journey.stalled");
    assert_eq!(stalls.len(), 1, "{got:#?}");
    let s = &stalls[0].body["data"];
    assert_eq!(s["case_id"], "Q-1");
    assert_eq!(s["rule"]["name"], "approved-not-dispensed");
    assert_eq!(s["rule"]["severity"], "high");
    assert_eq!(s["trigger"]["milestone"], "pa.approved");
    assert_eq!(s["trigger"]["occurred_at"], "2026-11-30");
    assert_eq!(s["sequence"], 2, "the stall follows the case's approval");
    assert!(s["late_by_seconds"].as_i64().is_some_and(|l| l < 5), "{s}");
    assert!(
        stalls[0].at.duration_since(t0) >= Duration::from_secs(2),
        "not before the deadline"
    );
    // Fires once: nothing more, however long we wait.
    rx.assert_stays(4, Duration::from_secs(3)).await;
    assert_eq!(rx.bad_signatures(), 0);
    let store = hub.store().await;
    let timers = store.journey_case("ACME-ONC", "Q-1").await.expect("timers");
    assert_eq!(timers.len(), 1);
    assert_eq!(timers[0].status, TimerStatus::Stalled);
    assert_eq!(timers[0].stalled_webhook.as_deref(), Some(stalls[0].id.as_str()));
    assert!(
        store
            .journey_case("ACME-ONC", "Q-2")
            .await
            .expect("timers")
            .is_empty(),
        "an approval that arrives with its dispense never arms"
    );
    let open = store.journey_open_counts().await.expect("counts");
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].open, 1);
    // The admin API lists it, and /metrics counts it.
    let http = reqwest::Client::new();
    let get = |path: &str| {
        http.get(format!("http://127.0.0.1:{port}{path}"))
            .bearer_auth(support::ADMIN_TOKEN)
            .send()
    };
    let v: serde_json::Value = serde_json::from_str(
        &get("/v1/journeys/stalls")
            .await
            .expect("GET stalls")
            .text()
            .await
            .expect("body"),
    )
    .expect("json");
    assert_eq!(v["counts"][0]["open"], 1, "{v}");
    assert_eq!(v["stalls"][0]["case_id"], "Q-1", "{v}");
    assert_eq!(v["stalls"][0]["notified"], true, "{v}");
    let metrics = get("/metrics")
        .await
        .expect("GET metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics
            .contains("hubsync_journey_open_stalls{program=\"ACME-ONC\",rule=\"approved-not-dispensed\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hubsync_journey_timers_total{event=\"fired\"}"),
        "{metrics}"
    );
    let stats = get("/v1/journeys/stats?window=3650d").await.expect("GET stats");
    assert!(stats.status().is_success());
    daemon.stop().await;
}

/// The awaited milestone in time clears the timer; no stall. Arriving after
/// the stall, it resumes it: `journey.resumed` follows, in case order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_time_clears_and_late_resumes() {
    let rx = Receiver::start().await;
    let hub = Hub::new(&rx.url(), "", "", 1000);
    rules(&hub, "3s", "learned_at", "");
    let daemon = hub.start();
    drop_text(
        &hub,
        "status_20261201.csv",
        &csv(&[approved("T-1", "11/30/2026"), approved("L-1", "11/30/2026")]),
    );
    rx.wait_unique(2, Duration::from_secs(20)).await;
    // T-1 ships in time (well before 3 s).
    drop_text(
        &hub,
        "status_20261202.csv",
        &csv(&[
            shipped("T-1", "11/30/2026", "12/01/2026"),
            approved("L-1", "11/30/2026"),
        ]),
    );
    // L-1 stalls; T-1 does not.
    let got = rx.wait_unique(4, Duration::from_secs(20)).await;
    let stalls = of_type(&got, "journey.stalled");
    assert_eq!(stalls.len(), 1, "{got:#?}");
    assert_eq!(stalls[0].body["data"]["case_id"], "L-1");
    let store = hub.store().await;
    let t1 = store.journey_case("ACME-ONC", "T-1").await.expect("timers");
    assert_eq!(t1[0].status, TimerStatus::Cleared);
    assert_eq!(t1[0].settled_by.as_deref(), Some("dispense.shipped"));
    // L-1 ships late: shipped, then resumed.
    drop_text(
        &hub,
        "status_20261203.csv",
        &csv(&[shipped("L-1", "11/30/2026", "12/02/2026")]),
    );
    let got = rx.wait_unique(6, Duration::from_secs(20)).await;
    rx.assert_stays(6, Duration::from_secs(1)).await;
    let resumed = of_type(&got, "journey.resumed");
    assert_eq!(resumed.len(), 1, "{got:#?}");
    let r = &resumed[0].body["data"];
    assert_eq!(r["case_id"], "L-1");
    assert_eq!(r["stalled_id"], stalls[0].id.as_str());
    assert_eq!(r["resumed_by"]["milestone"], "dispense.shipped");
    let seq = |kind: &str| {
        got.values()
            .find(|x| x.body["type"] == kind && x.body["data"]["case_id"] == "L-1")
            .map(|x| x.body["data"]["sequence"].as_i64().expect("sequence"))
            .expect(kind)
    };
    assert!(
        seq("pa.approved") < seq("journey.stalled")
            && seq("journey.stalled") < seq("dispense.shipped")
            && seq("dispense.shipped") < seq("journey.resumed"),
        "per-case order"
    );
    let l1 = store.journey_case("ACME-ONC", "L-1").await.expect("timers");
    assert_eq!(l1[0].status, TimerStatus::Resumed);
    assert_eq!(l1[0].resumed_webhook.as_deref(), Some(resumed[0].id.as_str()));
    assert!(store.journey_open_counts().await.expect("counts").is_empty());
    daemon.stop().await;
}

/// `kill -9` after the timer is armed and before it fires: the stall fires
/// once after the restart, from the timer the store kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_arming_and_firing_fires_once_after_restart() {
    let rx = Receiver::start().await;
    let hub = Hub::new(&rx.url(), "", "", 1000);
    rules(&hub, "3s", "learned_at", "");
    let mut child = hub.spawn();
    drop_text(
        &hub,
        "status_20261201.csv",
        &csv(&[approved("K-1", "11/30/2026")]),
    );
    let store = hub.store().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let t = store.journey_case("ACME-ONC", "K-1").await.expect("timers");
        if t.first().is_some_and(|t| t.status == TimerStatus::Armed) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the timer never armed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    // The deadline passes while hubsync is down.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        of_type(&rx.unique(), "journey.stalled").is_empty(),
        "fired before the deadline or by a dead process"
    );
    let mut child = hub.spawn();
    poll_until(Duration::from_secs(20), || {
        let n = of_type(&rx.unique(), "journey.stalled").len();
        if n >= 1 {
            Ok(())
        } else {
            Err("no stall after the restart".to_string())
        }
    })
    .await;
    // Restart again: nothing fires twice.
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let mut child = hub.spawn();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = rx.unique();
    assert_eq!(of_type(&got, "journey.stalled").len(), 1, "{got:#?}");
    let t = store.journey_case("ACME-ONC", "K-1").await.expect("timers");
    assert_eq!(t[0].status, TimerStatus::Stalled);
    child.kill().expect("kill");
    child.wait().expect("reap");
}

/// A backfill of 10,000 historical cases (approvals in 2024, half shipped)
/// sends no stale stall: shipped cases never arm, the others are recorded
/// as stalls older than the horizon and not sent. `--seed` does the same
/// with timers and sends no milestone either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_sends_no_stale_stalls() {
    let rx = Receiver::start().await;
    for seed in [false, true] {
        let hub = Hub::new(&rx.url(), "", "", 5000);
        rules(&hub, "5 business days", "occurred_at", "");
        let mut rows = Vec::with_capacity(10_000);
        for i in 0..10_000 {
            let case = format!("H-{i:05}");
            rows.push(if i % 2 == 0 {
                shipped(&case, "03/04/2024", "03/08/2024")
            } else {
                approved(&case, "03/04/2024")
            });
        }
        let file = hub.root().join("history_20240315.csv");
        std::fs::write(&file, csv(&rows)).expect("write history");
        let config = hub.load();
        let store = hubsync::store::Store::open(&config.store_url)
            .await
            .expect("store");
        let mut pipeline =
            hubsync::pipeline::Pipeline::new(store.clone(), std::sync::Arc::new(config), Vec::new());
        pipeline.seed = seed;
        let (sha256, size) = hubsync::source::local::hash_file(&file).expect("hash");
        let ready = hubsync::source::ReadyFile {
            path: file.clone(),
            name: "history_20240315.csv".into(),
            size,
            sha256,
            marker: None,
        };
        let connector = pipeline.config.connectors[0].clone();
        let outcome = pipeline
            .process(&connector, &ready, &tokio_util::sync::CancellationToken::new())
            .await
            .expect("process");
        assert!(matches!(outcome, hubsync::pipeline::FileOutcome::Done(_)));
        // The clock, now: every armed timer is years overdue.
        let fired = hubsync::timers::fire::fire_due(&store, &pipeline.config, hubsync::store::now_ms())
            .await
            .expect("fire");
        assert_eq!(fired.stalled, 5_000, "seed={seed}");
        assert_eq!(fired.suppressed, 5_000, "seed={seed}");
        assert_eq!(fired.sent, 0, "seed={seed}");
        let counts = store.journey_open_counts().await.expect("counts");
        assert_eq!(
            counts.iter().map(|c| c.open).sum::<i64>(),
            5_000,
            "recorded as open stalls"
        );
        assert!(
            store
                .journey_case("ACME-ONC", "H-00000")
                .await
                .expect("timers")
                .is_empty(),
            "a shipped case never arms"
        );
        assert_eq!(store.journey_next_due().await.expect("next"), None);
        let open = store.journey_open(None, 10).await.expect("open");
        assert!(open.iter().all(|t| t.stalled_webhook.is_none()));
        store.close().await;
    }
    // Nothing reached a receiver: milestones go only to a running daemon,
    // and no stall was queued.
    assert!(of_type(&rx.unique(), "journey.stalled").is_empty());
}

/// `hubsync check` fails a broken rule with file:line:col and a caret.
#[test]
fn a_broken_rule_fails_check_with_its_position() {
    let hub = Hub::new("http://127.0.0.1:9/", "", "", 1000);
    rules(
        &hub,
        "5 buisness days",
        "occurred_at",
        "when = \"$payr == 'Aetna'\"",
    );
    let out = hub.cli(&["check"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("journeys/acme-onc.toml:9:12: impossible deadline"),
        "{err}"
    );
    assert!(
        err.contains("journeys/acme-onc.toml:11:9: in when: unknown attribute `$payr`"),
        "{err}"
    );
    assert!(err.contains("did you mean `$payer`?"), "{err}");
    assert!(err.contains("^^^"), "{err}");
    // Fixed, it passes and counts the rule.
    rules(
        &hub,
        "5 business days",
        "occurred_at",
        "when = \"$payer == 'Aetna'\"",
    );
    let out = hub.cli(&["check"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 journey rule(s)"));
}

/// Points `hub` at a PostgreSQL database.
fn use_postgres(hub: &Hub, url: &str) {
    let text = std::fs::read_to_string(&hub.config).expect("read config");
    std::fs::write(
        &hub.config,
        text.replacen(
            "[store]\n",
            &format!("[store]\nurl = \"{url}\"\nlease = \"2s\"\n"),
            1,
        ),
    )
    .expect("write config");
}

/// A hub whose subscriber is at `url`, on SQLite (`pg` false) or on a fresh
/// PostgreSQL database (returned, so it lives as long as the test needs it).
async fn hub_on(pg: bool, url: &str) -> (Hub, Option<support::PgDb>) {
    let db = if pg {
        Some(support::PgDb::create().await)
    } else {
        None
    };
    let hub = Hub::new(url, "", "", 1000);
    if let Some(db) = &db {
        use_postgres(&hub, &db.url);
    }
    (hub, db)
}

/// PostgreSQL: timers arm in the chunk transaction there too, and with
/// three instances running their clocks on one database, each stall is
/// fired and delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_postgres_deliver_each_stall_once() {
    let db = support::PgDb::create().await;
    let rx = Receiver::start().await;
    let hub = Hub::new(&rx.url(), "", "", 200);
    use_postgres(&hub, &db.url);
    rules(&hub, "3s", "learned_at", "");
    let cases = 300;
    let rows: Vec<String> = (0..cases)
        .map(|i| approved(&format!("M-{i:04}"), "11/30/2026"))
        .collect();
    // Three daemons, one database, one drop folder.
    let daemons = [hub.start(), hub.start(), hub.start()];
    drop_text(&hub, "status_20261201.csv", &csv(&rows));
    let got = rx.wait_unique(2 * cases, Duration::from_secs(60)).await;
    rx.assert_stays(2 * cases, Duration::from_secs(2)).await;
    let stalls = of_type(&got, "journey.stalled");
    assert_eq!(stalls.len(), cases);
    let distinct: HashSet<&str> = stalls
        .iter()
        .map(|s| s.body["data"]["case_id"].as_str().expect("case"))
        .collect();
    assert_eq!(distinct.len(), cases, "one stall per case, never two");
    rx.assert_ids_stable();
    let store = hubsync::store::Store::open(&db.url).await.expect("store");
    let open = store.journey_open(None, 10_000).await.expect("open");
    assert_eq!(open.len(), cases);
    for d in daemons {
        d.stop().await;
    }
    store.close().await;
}

/// Firing with an injected clock on both backends: nothing before the
/// deadline, everything due once at it, and a second call fires nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fire_due_respects_the_injected_clock_on_both_backends() {
    for pg in [false, true] {
        let (hub, _db) = hub_on(pg, "http://127.0.0.1:9/").await;
        rules(&hub, "72h", "learned_at", "");
        let (config, store) = process_in_process(
            &hub,
            &[approved("C-1", "11/30/2026"), approved("C-2", "11/30/2026")],
        )
        .await;
        let next = store.journey_next_due().await.expect("next").expect("armed");
        let now = hubsync::store::now_ms();
        assert!((next - now - 72 * 3600 * 1000).abs() < 60_000, "72 h from now");
        let f = hubsync::timers::fire::fire_due(&store, &config, next - 1)
            .await
            .expect("fire");
        assert_eq!(f.stalled, 0, "pg={pg}: not a millisecond early");
        let f = hubsync::timers::fire::fire_due(&store, &config, next + 1000)
            .await
            .expect("fire");
        assert_eq!((f.stalled, f.sent), (2, 2), "pg={pg}");
        let f = hubsync::timers::fire::fire_due(&store, &config, next + 2000)
            .await
            .expect("fire");
        assert_eq!(f.stalled, 0, "pg={pg}: fires once");
        let t = store.journey_case("ACME-ONC", "C-1").await.expect("timers");
        assert_eq!(t[0].status, TimerStatus::Stalled);
        let msg = store
            .message(t[0].stalled_webhook.as_deref().expect("sent"))
            .await
            .expect("message")
            .expect("in the outbox");
        assert_eq!(msg.milestone, "journey.stalled");
        assert_eq!(msg.sequence, 2);
        store.close().await;
    }
}

/// Journey statistics from the stored state, on both backends: approved →
/// shipped per payer, p50 and p90 by nearest rank over whole days (a
/// date-only value counts from the end of its day on both sides), cases
/// outside the window left out, and a case with no shipment not counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journey_statistics_come_from_the_stored_state_on_both_backends() {
    for pg in [false, true] {
        let (hub, _db) = hub_on(pg, "http://127.0.0.1:9/").await;
        // Aetna: shipped 1..=10 days after approval (11/01/2026); Cigna:
        // 3 and 5 days; one Aetna case never ships; one shipped long ago.
        let mut rows: Vec<String> = (1..=10)
            .map(|d| shipped(&format!("A-{d}"), "11/01/2026", &format!("11/{:02}/2026", 1 + d)))
            .collect();
        for (case, ship) in [("C-1", "11/04/2026"), ("C-2", "11/06/2026")] {
            rows.push(shipped(case, "11/01/2026", ship).replace("Aetna", "Cigna"));
        }
        rows.push(approved("A-none", "11/01/2026"));
        rows.push(shipped("A-old", "01/01/2020", "01/11/2020"));
        let (_config, store) = process_in_process(&hub, &rows).await;
        let tz: chrono_tz::Tz = "America/New_York".parse().expect("zone");
        let since = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .expect("rfc3339")
            .with_timezone(&chrono::Utc);
        let stats = hubsync::timers::stats::compute(&store, &[("ACME-ONC".into(), tz)], since)
            .await
            .expect("stats");
        let shipped: Vec<_> = stats.iter().filter(|s| s.pair == "approved→shipped").collect();
        let got: Vec<(&str, usize, f64, f64)> = shipped
            .iter()
            .map(|s| (s.payer.as_str(), s.cases, s.p50_hours, s.p90_hours))
            .collect();
        assert_eq!(
            got,
            vec![
                ("Aetna", 10, 5.0 * 24.0, 9.0 * 24.0),
                ("Cigna", 2, 3.0 * 24.0, 5.0 * 24.0)
            ],
            "pg={pg}: {stats:?}"
        );
        store.close().await;
    }
}

/// Two rules on one trigger: `gone-soon` (1 s, removed later) and `kept`
/// (72 h, a rule that stays).
fn two_rules(hub: &Hub, rules: &[&str]) {
    let dir = hub.root().join("journeys");
    std::fs::create_dir_all(&dir).expect("mkdir journeys");
    let mut text = String::from("program = \"ACME-ONC\"\n");
    for (name, deadline) in [("gone-soon", "1s"), ("kept", "72h")] {
        if rules.contains(&name) {
            text.push_str(&format!(
                "\n[[rule]]\nname = \"{name}\"\nseverity = \"high\"\ntrigger = \"pa.approved\"\n\
                 awaits = [\"dispense.shipped\"]\ndeadline = \"{deadline}\"\nfrom = \"learned_at\"\n"
            ));
        }
    }
    std::fs::write(dir.join("acme-onc.toml"), text).expect("write rules");
}

/// Timers of a rule that is no longer loaded are retired at start, before
/// the clock fires anything: a removed rule (its timers overdue while
/// hubsync was down) never sends a `journey.stalled`, its timers end
/// cancelled by "rule removed" without having fired, and the rule that
/// stays keeps its timers armed. Then the whole rule file goes, and the
/// remaining timers are retired too (a program with no rules used to leave
/// them armed forever). Both backends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_of_a_removed_rule_are_retired_at_start_and_never_fire() {
    use hubsync::journey::timer::RULE_REMOVED;
    for pg in [false, true] {
        let rx = Receiver::start().await;
        let (hub, _db) = hub_on(pg, &rx.url()).await;
        two_rules(&hub, &["gone-soon", "kept"]);
        // Arm with both rules, with no clock running (a daemon that stopped
        // right after the commit).
        let (_, store) = process_in_process(
            &hub,
            &[approved("R-1", "11/30/2026"), approved("R-2", "11/30/2026")],
        )
        .await;
        let by_rule = |ts: &[hubsync::journey::timer::TimerRow], rule: &str| {
            ts.iter()
                .find(|t| t.timer.rule == rule)
                .unwrap_or_else(|| panic!("pg={pg}: a {rule} timer in {ts:#?}"))
                .clone()
        };
        for case in ["R-1", "R-2"] {
            let ts = store.journey_case("ACME-ONC", case).await.expect("timers");
            assert_eq!(ts.len(), 2, "pg={pg}: both rules armed");
            assert!(ts.iter().all(|t| t.status == TimerStatus::Armed));
        }
        // `gone-soon` is overdue by the restart; and it is gone from the file.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        two_rules(&hub, &["kept"]);
        let daemon = hub.start();
        // The two approvals are delivered; no stall, ever.
        rx.wait_unique(2, Duration::from_secs(20)).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let ts = loop {
            let ts = store.journey_case("ACME-ONC", "R-1").await.expect("timers");
            if by_rule(&ts, "gone-soon").status == TimerStatus::Cancelled {
                break ts;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "pg={pg}: gone-soon not retired: {ts:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        rx.assert_stays(2, Duration::from_secs(2)).await;
        assert!(of_type(&rx.unique(), "journey.stalled").is_empty(), "pg={pg}");
        let gone = by_rule(&ts, "gone-soon");
        assert_eq!(gone.settled_by.as_deref(), Some(RULE_REMOVED), "pg={pg}");
        assert_eq!(gone.fired_at_ms, None, "pg={pg}: retired, never fired");
        assert_eq!(gone.stalled_webhook, None, "pg={pg}");
        for case in ["R-1", "R-2"] {
            let ts = store.journey_case("ACME-ONC", case).await.expect("timers");
            assert_eq!(
                by_rule(&ts, "gone-soon").status,
                TimerStatus::Cancelled,
                "pg={pg}"
            );
            let kept = by_rule(&ts, "kept");
            assert_eq!(
                kept.status,
                TimerStatus::Armed,
                "pg={pg}: a loaded rule is untouched"
            );
            assert_eq!(kept.settled_by, None, "pg={pg}");
        }
        let armed = store.journey_armed_counts().await.expect("armed");
        assert_eq!(
            armed
                .iter()
                .map(|a| (a.rule.as_str(), a.armed))
                .collect::<Vec<_>>(),
            [("kept", 2)],
            "pg={pg}"
        );
        daemon.stop().await;
        // A missing rules folder (an unmounted volume, a wrong path) is not
        // "every rule removed": nothing is retired.
        let journeys = hub.root().join("journeys");
        let aside = hub.root().join("journeys.aside");
        std::fs::rename(&journeys, &aside).expect("move rules aside");
        let retired = hubsync::timers::fire::retire_gone(&store, &hub.load(), hubsync::store::now_ms())
            .await
            .expect("retire");
        assert!(retired.is_empty(), "pg={pg}: {retired:?}");
        assert_eq!(
            store.journey_armed_counts().await.expect("armed").len(),
            1,
            "pg={pg}"
        );
        std::fs::rename(&aside, &journeys).expect("move rules back");
        // The rule file itself is deleted: the program has no rules.
        std::fs::remove_file(hub.root().join("journeys/acme-onc.toml")).expect("rm rules");
        let daemon = hub.start();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let armed = store.journey_armed_counts().await.expect("armed");
            if armed.is_empty() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "pg={pg}: still armed: {armed:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for case in ["R-1", "R-2"] {
            let kept = by_rule(
                &store.journey_case("ACME-ONC", case).await.expect("timers"),
                "kept",
            );
            assert_eq!(kept.status, TimerStatus::Cancelled, "pg={pg}");
            assert_eq!(kept.settled_by.as_deref(), Some(RULE_REMOVED), "pg={pg}");
            assert_eq!(kept.fired_at_ms, None, "pg={pg}");
        }
        assert_eq!(store.journey_next_due().await.expect("next"), None, "pg={pg}");
        rx.assert_stays(2, Duration::from_millis(500)).await;
        daemon.stop().await;
        store.close().await;
    }
}

/// Writes `rows` as `s.csv` and runs it through an in-process pipeline (no
/// daemon, so no clock fires the timers it arms); returns the loaded config
/// and the store for the test to inspect.
async fn process_in_process(
    hub: &Hub,
    rows: &[String],
) -> (std::sync::Arc<hubsync::setup::Config>, hubsync::store::Store) {
    let file = hub.root().join("s.csv");
    std::fs::write(&file, csv(rows)).expect("write");
    let config = std::sync::Arc::new(hub.load());
    let store = hubsync::store::Store::open(&config.store_url)
        .await
        .expect("store");
    let pipeline = hubsync::pipeline::Pipeline::new(store.clone(), config.clone(), Vec::new());
    let (sha256, size) = hubsync::source::local::hash_file(&file).expect("hash");
    let ready = hubsync::source::ReadyFile {
        path: file,
        name: "s.csv".into(),
        size,
        sha256,
        marker: None,
    };
    pipeline
        .process(
            &config.connectors[0],
            &ready,
            &tokio_util::sync::CancellationToken::new(),
        )
        .await
        .expect("process");
    (config, store)
}
