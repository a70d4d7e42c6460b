//! The store test suite: every test runs against both backends (the
//! `store_suite!` macro makes a `sqlite` and a `postgres` module of them), so
//! SQLite and PostgreSQL keep the same behaviour. Tests that need two
//! instances on one database are PostgreSQL-only, at the end.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use hubsync::diff::StateRow;
use hubsync::model::Counts;
use hubsync::outbox::{AttemptOutcome, AttemptResult, OutboxWrite};
use hubsync::store::{
    now_ms, Claim, DueClaim, FileArrival, FileRow, FileStatus, Generation, Progress, RejectRow, Store,
    StoreError, Tx,
};
use support::{Backend, TEST_LEASE};

macro_rules! store_suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let backend = crate::Backend::sqlite().await;
                    crate::$name(&backend).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let backend = crate::Backend::postgres().await;
                    crate::$name(&backend).await;
                }
            )*
        }
    };
}

store_suite!(
    ledger_begin_resume_fail_done,
    state_upsert_and_fetch_by_hash,
    case_sequences_bump,
    outbox_and_deliveries,
    due_is_lane_heads_and_a_parked_head_holds_only_its_lane,
    record_attempts_settle_and_count,
    rejects_are_kept_in_order,
    subscriber_stats_count_by_status,
    schema_newer_than_the_binary_is_refused,
    program_generations,
    console_queries,
    operator_queries,
);

fn owned(c: Claim) -> FileRow {
    match c {
        Claim::Owned(r) => r,
        other => panic!("expected the claim to be granted, got {other:?}"),
    }
}

fn arrival<'a>(connector: &'a str, sha256: &'a str, name: &'a str, size: u64) -> FileArrival<'a> {
    FileArrival {
        connector,
        sha256,
        name,
        size,
    }
}

/// Due heads of `subscriber` at `now_ms`, leased for [`TEST_LEASE`].
fn due_at<'a>(subscriber: &'a str, now_ms: i64, limit: usize, in_flight: &'a HashSet<i64>) -> DueClaim<'a> {
    DueClaim {
        subscriber,
        now_ms,
        limit,
        lease: TEST_LEASE,
        in_flight,
    }
}

async fn progress(
    store: &Store,
    file_id: i64,
    done: u64,
    read: u64,
    finish: Option<(FileStatus, Option<&str>)>,
) {
    let mut tx = store.begin().await.expect("begin");
    let counts = Counts {
        read,
        emitted: read,
        deltas: read,
        ..Counts::default()
    };
    tx.file_progress(&Progress {
        file_id,
        records_done: done,
        counts: &counts,
        finish,
    })
    .await
    .expect("progress");
    tx.commit().await.expect("commit");
}

async fn ledger_begin_resume_fail_done(b: &Backend) {
    let store = b.open().await;
    let row = owned(
        store
            .file_claim(&arrival("acme", "sha-1", "a.csv", 10))
            .await
            .expect("claim"),
    );
    assert_eq!((row.status, row.records_done), (FileStatus::Processing, 0));

    progress(&store, row.id, 5, 5, None).await;
    // The same instance resumes its own file from the checkpoint.
    let again = owned(
        store
            .file_claim(&arrival("acme", "sha-1", "a.csv", 10))
            .await
            .expect("claim"),
    );
    assert_eq!((again.id, again.records_done, again.counts.read), (row.id, 5, 5));

    // A failed file dropped again is processed again (after a lease on a
    // shared store: until then it is the failing instance's to move away).
    store.file_fail(row.id, "bad header").await.expect("fail");
    let failed = store.file_get("acme", "sha-1").await.expect("get").expect("row");
    assert_eq!(
        (failed.status, failed.error.as_deref()),
        (FileStatus::Failed, Some("bad header"))
    );
    if store.is_shared() {
        assert_eq!(
            store
                .file_claim(&arrival("acme", "sha-1", "a.csv", 10))
                .await
                .expect("claim"),
            Claim::Busy
        );
        tokio::time::sleep(TEST_LEASE + Duration::from_millis(100)).await;
    }
    let retried = owned(
        store
            .file_claim(&arrival("acme", "sha-1", "a.csv", 10))
            .await
            .expect("claim"),
    );
    assert_eq!((retried.id, retried.status), (row.id, FileStatus::Processing));

    progress(&store, row.id, 10, 5, Some((FileStatus::Done, None))).await;
    let done = store.file_get("acme", "sha-1").await.expect("get").expect("row");
    assert_eq!(
        (done.status, done.records_done, done.counts.read),
        (FileStatus::Done, 10, 10)
    );
    assert!(done.counts.reconciles());
    if store.is_shared() {
        assert_eq!(
            store
                .file_claim(&arrival("acme", "sha-1", "a.csv", 10))
                .await
                .expect("claim"),
            Claim::Busy
        );
        tokio::time::sleep(TEST_LEASE + Duration::from_millis(100)).await;
    }
    assert!(matches!(
        store.file_claim(&arrival("acme", "sha-1", "a.csv", 10)).await.expect("claim"),
        Claim::Done(r) if r.id == row.id
    ));

    // Same content under another connector is another file.
    let other = owned(
        store
            .file_claim(&arrival("other", "sha-1", "a.csv", 10))
            .await
            .expect("claim"),
    );
    assert_ne!(other.id, row.id);
    let files = store.files(10).await.expect("files");
    assert_eq!(files.len(), 2);
    assert_eq!(files[0].id, other.id, "newest first");
    store.close().await;
}

fn state(case: &str, key: u64, content: u64) -> StateRow {
    StateRow {
        program: "P".into(),
        case_id: case.into(),
        milestone: "pa.approved".into(),
        occurrence: String::new(),
        key_hash: key,
        content_hash: content,
        body: format!("{{\"case\":\"{case}\",\"c\":{content}}}"),
    }
}

async fn state_upsert_and_fetch_by_hash(b: &Backend) {
    let store = b.open().await;
    let file = owned(
        store
            .file_claim(&arrival("acme", "sha", "a.csv", 1))
            .await
            .expect("claim"),
    );
    let mut tx = store.begin().await.expect("begin");
    // Hashes above i64::MAX survive the round trip; two keys share a hash.
    let big = u64::MAX - 7;
    tx.upsert_state(
        &[state("A", 1, 10), state("B", big, 20), state("C", big, 30)],
        file.id,
    )
    .await
    .expect("upsert");
    tx.commit().await.expect("commit");

    let mut tx = store.begin().await.expect("begin");
    let mut rows = tx.state_rows(&[big, 999]).await.expect("rows");
    rows.sort_by(|a, b| a.case_id.cmp(&b.case_id));
    assert_eq!(rows.len(), 2, "both keys with the colliding hash come back");
    assert_eq!(
        (rows[0].case_id.as_str(), rows[0].key_hash, rows[0].content_hash),
        ("B", big, 20)
    );
    assert_eq!((rows[1].case_id.as_str(), rows[1].content_hash), ("C", 30));
    assert_eq!(rows[1].body, "{\"case\":\"C\",\"c\":30}");
    let mut hashes = tx.state_hashes(&[1, big]).await.expect("hashes");
    hashes.sort_unstable();
    assert_eq!(hashes, vec![(1, 10), (big, 20), (big, 30)]);

    // An upsert replaces the content of an existing key.
    tx.upsert_state(&[state("A", 1, 11)], file.id)
        .await
        .expect("upsert");
    let rows = tx.state_rows(&[1]).await.expect("rows");
    assert_eq!((rows.len(), rows[0].content_hash), (1, 11));
    tx.commit().await.expect("commit");

    let mut index = store
        .state_index(10)
        .await
        .expect("index")
        .expect("under the cap");
    index.sort_unstable();
    assert_eq!(index, vec![(1, 11), (big, 20), (big, 30)]);
    assert_eq!(store.state_index(2).await.expect("index"), None, "over the cap");
    store.close().await;
}

async fn case_sequences_bump(b: &Backend) {
    let store = b.open().await;
    let mut tx = store.begin().await.expect("begin");
    let last = tx
        .bump_cases(&[("P", "B", 2), ("P", "A", 1), ("Q", "A", 3)])
        .await
        .expect("bump");
    assert_eq!(last, vec![2, 1, 3], "in the caller's order");
    tx.commit().await.expect("commit");
    let mut tx = store.begin().await.expect("begin");
    assert_eq!(
        tx.bump_cases(&[("P", "A", 4), ("P", "B", 1)])
            .await
            .expect("bump"),
        vec![5, 3]
    );
    drop(tx); // rolled back
    let mut tx = store.begin().await.expect("begin");
    assert_eq!(tx.bump_cases(&[("P", "A", 1)]).await.expect("bump"), vec![2]);
    tx.commit().await.expect("commit");
    store.close().await;
}

fn message(case: &str, seq: i64, lane: u64, subscribers: &[&str]) -> OutboxWrite {
    OutboxWrite {
        id: hubsync::outbox::new_webhook_id(),
        connector: "acme".into(),
        program: "P".into(),
        case_id: case.into(),
        milestone: "pa.approved".into(),
        seq,
        lane,
        key_hash: lane ^ seq as u64,
        body: format!("{{\"case\":\"{case}\",\"seq\":{seq}}}"),
        subscribers: subscribers.iter().map(|s| s.to_string()).collect(),
    }
}

async fn insert(store: &Store, rows: &[OutboxWrite]) {
    let file = owned(
        store
            .file_claim(&arrival("acme", &format!("sha-{}", rows[0].id), "a.csv", 1))
            .await
            .expect("claim"),
    );
    let mut tx: Tx = store.begin().await.expect("begin");
    tx.insert_outbox(rows, file.id).await.expect("insert");
    tx.commit().await.expect("commit");
}

async fn claim(store: &Store, sub: &str, limit: usize) -> Vec<hubsync::outbox::Due> {
    store
        .claim_due(&due_at(sub, now_ms(), limit, &HashSet::new()))
        .await
        .expect("claim due")
}

fn result(sub: &str, pos: i64, attempt: u32, outcome: AttemptOutcome) -> AttemptResult {
    AttemptResult {
        subscriber: sub.into(),
        pos,
        attempt,
        at_ms: now_ms(),
        duration_ms: 3,
        http_status: Some(if outcome == AttemptOutcome::Delivered {
            204
        } else {
            503
        }),
        error: (outcome != AttemptOutcome::Delivered).then(|| "HTTP 503".to_string()),
        excerpt: None,
        outcome,
    }
}

async fn outbox_and_deliveries(b: &Backend) {
    let store = b.open().await;
    let rows = vec![
        message("A", 1, 1, &["s1", "s2"]),
        message("B", 1, 2, &["s1"]),
        message("C", 1, 3, &[]),
    ];
    insert(&store, &rows).await;
    let s1 = claim(&store, "s1", 10).await;
    assert_eq!(s1.len(), 2);
    assert!(s1[0].pos < s1[1].pos, "oldest first");
    assert_eq!(
        (
            s1[0].webhook_id.as_str(),
            s1[0].body.as_deref().expect("body kept")
        ),
        (rows[0].id.as_str(), rows[0].body.as_str())
    );
    assert_eq!((s1[0].lane, s1[0].attempts), (1, 0));
    assert_eq!(s1[1].webhook_id, rows[1].id);
    let s2 = claim(&store, "s2", 10).await;
    assert_eq!(s2.len(), 1);
    assert_eq!(s2[0].pos, s1[0].pos, "one message, one position, two subscribers");
    assert!(claim(&store, "nobody", 10).await.is_empty());
    assert!(store.next_due("s1").await.expect("next").is_some());
    store.close().await;
}

async fn due_is_lane_heads_and_a_parked_head_holds_only_its_lane(b: &Backend) {
    let store = b.open().await;
    // Lane 1: A1, A2, A3; lane 2: B1, B2 — interleaved positions.
    insert(
        &store,
        &[
            message("A", 1, 1, &["s"]),
            message("B", 1, 2, &["s"]),
            message("A", 2, 1, &["s"]),
            message("B", 2, 2, &["s"]),
            message("A", 3, 1, &["s"]),
        ],
    )
    .await;
    let heads = claim(&store, "s", 10).await;
    assert_eq!(heads.iter().map(|d| d.lane).collect::<Vec<_>>(), vec![1, 2]);
    let (a1, b1) = (heads[0].pos, heads[1].pos);
    // In flight: not claimed again, and their lanes have nothing else due.
    let in_flight: HashSet<i64> = [a1, b1].into();
    assert!(store
        .claim_due(&due_at("s", now_ms(), 10, &in_flight))
        .await
        .expect("claim")
        .is_empty());

    // A1 fails and is parked for an hour; B1 is delivered.
    store
        .record_attempts(&[
            result("s", a1, 1, AttemptOutcome::RetryAt(now_ms() + 3_600_000)),
            result("s", b1, 1, AttemptOutcome::Delivered),
        ])
        .await
        .expect("record");
    let heads = claim(&store, "s", 10).await;
    assert_eq!(heads.len(), 1, "lane 1 is parked behind A1; lane 2 moves on");
    assert_eq!(heads[0].lane, 2);
    assert!(heads[0].pos > b1);
    let next = store.next_due("s").await.expect("next").expect("pending");
    assert!(next >= now_ms() - 1000);

    // Once A1 is due again it is the lane's head, with its attempt count.
    store
        .record_attempts(&[result("s", heads[0].pos, 1, AttemptOutcome::Delivered)])
        .await
        .expect("record");
    let later = store
        .claim_due(&due_at("s", now_ms() + 3_700_000, 10, &HashSet::new()))
        .await
        .expect("claim");
    assert_eq!(later.len(), 1);
    assert_eq!((later[0].pos, later[0].attempts), (a1, 1));
    store.close().await;
}

async fn record_attempts_settle_and_count(b: &Backend) {
    let store = b.open().await;
    insert(
        &store,
        &[
            message("A", 1, 1, &["s"]),
            message("B", 1, 2, &["s"]),
            message("C", 1, 3, &["s"]),
        ],
    )
    .await;
    let due = claim(&store, "s", 10).await;
    assert_eq!(due.len(), 3);
    store
        .record_attempts(&[
            result("s", due[0].pos, 1, AttemptOutcome::Delivered),
            result("s", due[1].pos, 1, AttemptOutcome::Failed),
            result("s", due[2].pos, 1, AttemptOutcome::RetryAt(now_ms() - 1)),
        ])
        .await
        .expect("record");
    let stats = store.subscriber_stats().await.expect("stats");
    assert_eq!(stats.len(), 1);
    assert_eq!((stats[0].pending, stats[0].delivered, stats[0].failed), (1, 1, 1));
    // The retry is due at once and carries its attempt count.
    let again = claim(&store, "s", 10).await;
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].pos, again[0].attempts), (due[2].pos, 1));
    // A late duplicate result never un-delivers a message.
    store
        .record_attempts(&[
            result("s", again[0].pos, 2, AttemptOutcome::Delivered),
            result("s", due[0].pos, 2, AttemptOutcome::RetryAt(now_ms())),
        ])
        .await
        .expect("record");
    let stats = store.subscriber_stats().await.expect("stats");
    assert_eq!((stats[0].pending, stats[0].delivered, stats[0].failed), (0, 2, 1));
    assert!(claim(&store, "s", 10).await.is_empty());
    assert_eq!(store.next_due("s").await.expect("next"), None);
    store.record_attempts(&[]).await.expect("empty batch");
    store.close().await;
}

/// The operator console's reads (issue 17): file summaries and a file's
/// messages, attempt tallies, latencies, recent cases, replay preview and
/// the audit log.
async fn console_queries(b: &Backend) {
    use hubsync::store::{AuditEntry, FileQuery, ReplayFilter};
    let store = b.open().await;
    let t0 = now_ms();
    let rows = [
        message("A", 1, 1, &["s"]),
        message("A", 2, 1, &["s"]),
        message("B", 1, 2, &["s"]),
    ];
    insert(&store, &rows).await;
    let files = store
        .file_summaries(&FileQuery {
            connector: Some("acme".into()),
            since_ms: Some(t0 - 1000),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("file summaries");
    assert_eq!(files.len(), 1);
    let f = &files[0];
    assert_eq!((f.file.name.as_str(), f.size), ("a.csv", 1));
    assert!(f.started_at_ms >= t0 - 1000 && f.finished_at_ms.is_none());
    assert_eq!(
        store.file_summary(f.file.id).await.expect("one").as_ref(),
        Some(f)
    );
    assert_eq!(store.file_summary(f.file.id + 100).await.expect("none"), None);
    let failed_only = FileQuery {
        failed_only: true,
        limit: 10,
        ..Default::default()
    };
    assert!(store
        .file_summaries(&failed_only)
        .await
        .expect("failed")
        .is_empty());
    let msgs = store.file_messages(f.file.id, 2).await.expect("file messages");
    assert_eq!(
        msgs.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        [rows[0].id.as_str(), rows[1].id.as_str()]
    );
    assert_eq!(msgs[0].deliveries.len(), 1);

    // A: one delivered, one failed (a dead letter); B still pending.
    let due = claim(&store, "s", 10).await;
    store
        .record_attempts(&[result("s", due[0].pos, 1, AttemptOutcome::Delivered)])
        .await
        .expect("record");
    let due = claim(&store, "s", 10).await;
    let a2 = due
        .iter()
        .find(|d| d.webhook_id == rows[1].id)
        .expect("A's second is due");
    store
        .record_attempts(&[result("s", a2.pos, 1, AttemptOutcome::Failed)])
        .await
        .expect("record");
    let tallies = store.attempt_tallies(t0 - 1000).await.expect("tallies");
    assert_eq!(tallies.len(), 1);
    assert_eq!((tallies[0].attempts, tallies[0].failed), (2, 1));
    assert!(store
        .attempt_tallies(now_ms() + 60_000)
        .await
        .expect("none")
        .is_empty());
    let lat = store
        .delivery_latencies("s", t0 - 1000, 10)
        .await
        .expect("latencies");
    assert_eq!(lat.len(), 1);
    assert!(lat[0].latency_ms >= 0 && lat[0].delivered_at_ms >= t0 - 1000);

    let cases = store.recent_cases(10).await.expect("recent cases");
    assert_eq!(
        cases.iter().map(|c| c.case_id.as_str()).collect::<Vec<_>>(),
        ["B", "A"],
        "newest first, each case once"
    );

    let filter = |failed_only| ReplayFilter {
        subscriber: "s".into(),
        failed_only,
        ..Default::default()
    };
    let preview = store.replay_preview(&filter(true)).await.expect("preview");
    assert_eq!((preview.replayed, preview.purged), (1, 0));
    assert_eq!(
        store
            .replay_preview(&filter(false))
            .await
            .expect("preview")
            .replayed,
        2
    );
    let stats = store.subscriber_stats().await.expect("stats");
    assert_eq!(stats[0].failed, 1, "a preview changes nothing");
    assert_eq!(store.replay(&filter(true)).await.expect("replay").replayed, 1);

    for (i, action) in ["login", "replay"].iter().enumerate() {
        store
            .audit_record(&AuditEntry {
                at_ms: t0 + i as i64,
                operator: "Dana".into(),
                action: action.to_string(),
                target: "s".into(),
                detail: format!("detail {i}"),
            })
            .await
            .expect("audit");
    }
    let audit = store.audit_recent(10).await.expect("audit log");
    assert_eq!(
        audit.iter().map(|a| a.action.as_str()).collect::<Vec<_>>(),
        ["replay", "login"]
    );
    assert_eq!((audit[1].operator.as_str(), audit[1].at_ms), ("Dana", t0));
    store.close().await;
}

/// The admin API's and the watchdog's statements (one text on both
/// backends, `store::shared`): a message and a case's timeline with their
/// deliveries, attempts, dead letters, coalescing, payload purge,
/// subscriber states, the remote-file ledger, arrivals and missed drops.
async fn operator_queries(b: &Backend) {
    use hubsync::store::{MissingDrop, RemoteKey, RemoteStatus, SubscriberState};
    let store = b.open().await;
    let t0 = now_ms();
    // Lane 1: A1 then two updates of A2's key (the first superseded);
    // lane 2: B1.
    let mut a3 = message("A", 3, 1, &["s", "t"]);
    a3.key_hash = 1 ^ 2;
    let rows = [
        message("A", 1, 1, &["s"]),
        message("A", 2, 1, &["s", "t"]),
        a3,
        message("B", 1, 2, &["s"]),
    ];
    insert(&store, &rows).await;

    let m = store
        .message(&rows[1].id)
        .await
        .expect("message")
        .expect("stored");
    assert_eq!(
        (m.case_id.as_str(), m.sequence, m.file.as_deref()),
        ("A", 2, Some("a.csv"))
    );
    assert_eq!(
        m.deliveries
            .iter()
            .map(|d| d.subscriber.as_str())
            .collect::<Vec<_>>(),
        ["s", "t"]
    );
    assert!(store.message("nope").await.expect("no message").is_none());
    let timeline = store.case_timeline("P", "A").await.expect("timeline");
    assert_eq!(timeline.iter().map(|m| m.sequence).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(timeline[2].deliveries.len(), 2);

    // A1 is the failing head of lane 1: A2 (never attempted, superseded by
    // A3) is coalesced for `s`; `t`'s lane is not failing. B1 is a dead letter.
    let due = claim(&store, "s", 10).await;
    let a1 = due.iter().find(|d| d.webhook_id == rows[0].id).expect("A1 due");
    let b1 = due.iter().find(|d| d.webhook_id == rows[3].id).expect("B1 due");
    store
        .record_attempts(&[
            result("s", a1.pos, 1, AttemptOutcome::RetryAt(now_ms() + 3_600_000)),
            result("s", b1.pos, 1, AttemptOutcome::Failed),
        ])
        .await
        .expect("record");
    assert_eq!(store.coalesce("t", false).await.expect("coalesce t"), 0);
    assert_eq!(store.coalesce("s", false).await.expect("coalesce s"), 1);
    assert_eq!(store.coalesce("s", true).await.expect("again"), 0);
    let attempts = store.attempts(&rows[0].id).await.expect("attempts");
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        (attempts[0].subscriber.as_str(), attempts[0].status),
        ("s", Some(503))
    );
    let dead = store.dead_letters("s", 10).await.expect("dead letters");
    assert_eq!(
        dead.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        [rows[3].id.as_str()]
    );
    assert_eq!((dead[0].attempts, dead[0].last_status), (1, Some(503)));
    // Only messages settled everywhere lose their body: B1 is a dead letter
    // (kept), A2 is still pending for `t`, the others are pending.
    assert_eq!(store.purge_payloads(now_ms() + 1000, 10).await.expect("purge"), 0);

    assert!(store.subscriber_states().await.expect("states").is_empty());
    let parked = SubscriberState {
        subscriber: "s".into(),
        parked_until: Some(t0 + 60_000),
        parked_reason: Some("5 failures".into()),
        ..Default::default()
    };
    store.set_subscriber_state(&parked).await.expect("park");
    let gone = SubscriberState {
        disabled_at: Some(t0),
        disabled_reason: Some("410 Gone".into()),
        disabled_url: Some("http://h/x".into()),
        ..parked.clone()
    };
    store.set_subscriber_state(&gone).await.expect("disable");
    assert_eq!(store.subscriber_states().await.expect("states"), [gone]);

    let key = RemoteKey {
        connector: "acme",
        path: "/in/a.csv",
        size: 10,
        mtime: 7,
    };
    assert_eq!(store.remote_file_status(&key).await.expect("status"), None);
    store
        .remote_file_record(&key, "sha", RemoteStatus::Failed)
        .await
        .expect("record");
    store
        .remote_file_record(&key, "sha", RemoteStatus::Done)
        .await
        .expect("record again");
    assert_eq!(
        store.remote_file_status(&key).await.expect("status"),
        Some(RemoteStatus::Done)
    );
    let last = store
        .last_arrival("acme", now_ms() + 1000)
        .await
        .expect("arrival");
    assert!(last.is_some_and(|t| t >= t0 - 1000));
    assert_eq!(store.last_arrival("acme", t0 - 60_000).await.expect("none"), None);
    assert_eq!(store.last_arrival("other", now_ms()).await.expect("none"), None);

    let drop = MissingDrop {
        connector: "acme".into(),
        expected_by_ms: t0,
        detected_at_ms: t0 + 5,
        last_arrival_ms: last,
        webhook_id: None,
    };
    assert!(store.missing_drop(&drop, None).await.expect("missing"));
    assert!(!store.missing_drop(&drop, None).await.expect("once"));
    assert_eq!(store.missing_drops(10).await.expect("drops"), [drop]);
    store.close().await;
}

async fn rejects_are_kept_in_order(b: &Backend) {
    let store = b.open().await;
    let file = owned(
        store
            .file_claim(&arrival("acme", "sha", "a.csv", 1))
            .await
            .expect("claim"),
    );
    let rows: Vec<RejectRow> = (0..3)
        .map(|i| RejectRow {
            locator: format!("line {}", i + 2),
            column: (i != 1).then(|| "Status Date".to_string()),
            reason: format!("reason {i}"),
        })
        .collect();
    let mut tx = store.begin().await.expect("begin");
    tx.insert_rejects(file.id, &rows[..2]).await.expect("rejects");
    tx.insert_rejects(file.id, &rows[2..]).await.expect("rejects");
    tx.commit().await.expect("commit");
    assert_eq!(store.rejects(file.id).await.expect("rejects"), rows);
    assert!(store.rejects(file.id + 1).await.expect("rejects").is_empty());
    store.close().await;
}

async fn subscriber_stats_count_by_status(b: &Backend) {
    let store = b.open().await;
    assert!(store.subscriber_stats().await.expect("stats").is_empty());
    insert(
        &store,
        &[message("A", 1, 1, &["a", "b"]), message("B", 1, 2, &["b"])],
    )
    .await;
    let due = claim(&store, "b", 10).await;
    store
        .record_attempts(&[result("b", due[0].pos, 1, AttemptOutcome::Delivered)])
        .await
        .expect("record");
    let stats = store.subscriber_stats().await.expect("stats");
    let figures: Vec<(&str, i64, i64, i64)> = stats
        .iter()
        .map(|s| (s.subscriber.as_str(), s.pending, s.delivered, s.failed))
        .collect();
    assert_eq!(figures, vec![("a", 1, 0, 0), ("b", 1, 1, 0)]);
    assert!(stats
        .iter()
        .all(|s| s.oldest_pending_ms.is_some_and(|ms| ms >= 0)));
    store.close().await;
}

async fn schema_newer_than_the_binary_is_refused(b: &Backend) {
    let store = b.open().await;
    let v = store.schema_version().await.expect("version");
    assert_eq!(v.applied, v.supported);
    store.close().await;
    // Pretend a newer hubsync migrated this database.
    let url = b.url();
    let sql = "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
               VALUES (99990101000000, 'from the future', TRUE, x'00', 0)";
    match b {
        Backend::Sqlite(_) => {
            let pool = sqlx::SqlitePool::connect(&url).await.expect("connect");
            sqlx::query(sql).execute(&pool).await.expect("insert");
            pool.close().await;
        }
        Backend::Postgres(_) => {
            let pool = sqlx::PgPool::connect(&url).await.expect("connect");
            sqlx::query(&sql.replace("x'00'", "'\\x00'::bytea"))
                .execute(&pool)
                .await
                .expect("insert");
            pool.close().await;
        }
    }
    match Store::open(&url).await {
        Err(
            e @ StoreError::SchemaTooNew {
                found: 99990101000000,
                ..
            },
        ) => {
            assert!(e.to_string().contains("newer than this binary supports"), "{e}")
        }
        Err(e) => panic!("expected SchemaTooNew, got {e}"),
        Ok(_) => panic!("a newer schema must be refused"),
    }
}

async fn program_generations(b: &Backend) {
    let store = b.open().await;
    let mut tx = store.begin().await.expect("begin");
    let g0 = tx.lock_program("P").await.expect("lock");
    let g1 = tx.bump_program("P").await.expect("bump");
    tx.commit().await.expect("commit");
    match (g0, g1) {
        (Generation::SingleWriter, Generation::SingleWriter) => {
            assert!(!store.is_shared());
            assert!(store.state_generations().await.expect("gens").is_empty());
        }
        (Generation::Shared(0), Generation::Shared(1)) => {
            let gens = store.state_generations().await.expect("gens");
            assert_eq!(gens.get("P"), Some(&1));
            let mut tx = store.begin().await.expect("begin");
            assert_eq!(tx.lock_program("P").await.expect("lock"), Generation::Shared(1));
            drop(tx);
        }
        other => panic!("unexpected generations {other:?}"),
    }
    store.close().await;
}

// ---------------------------------------------------------------- PostgreSQL: several instances

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_a_file_is_claimed_by_one_instance_and_taken_over_after_its_lease() {
    let b = Backend::postgres().await;
    let (one, two) = (b.open().await, b.open().await);
    assert_ne!(one.instance(), two.instance());
    let row = owned(
        one.file_claim(&arrival("acme", "sha", "a.csv", 1))
            .await
            .expect("claim"),
    );
    progress(&one, row.id, 7, 7, None).await;
    assert_eq!(
        two.file_claim(&arrival("acme", "sha", "a.csv", 1))
            .await
            .expect("claim"),
        Claim::Busy
    );
    // Renewal keeps it; then `one` goes quiet (dies) and the lease runs out.
    tokio::time::sleep(TEST_LEASE / 2).await;
    assert!(one.file_renew(row.id).await.expect("renew"));
    tokio::time::sleep(TEST_LEASE / 2 + Duration::from_millis(50)).await;
    assert_eq!(
        two.file_claim(&arrival("acme", "sha", "a.csv", 1))
            .await
            .expect("claim"),
        Claim::Busy
    );
    tokio::time::sleep(TEST_LEASE).await;
    let taken = owned(
        two.file_claim(&arrival("acme", "sha", "a.csv", 1))
            .await
            .expect("claim"),
    );
    assert_eq!(
        (taken.id, taken.records_done),
        (row.id, 7),
        "resumes from the checkpoint"
    );
    // The old owner's next chunk is fenced off and rolls back.
    let mut tx = one.begin().await.expect("begin");
    tx.upsert_state(&[state("A", 1, 1)], row.id)
        .await
        .expect("upsert");
    let progress = Progress {
        file_id: row.id,
        records_done: 9,
        counts: &Counts::default(),
        finish: None,
    };
    match tx.file_progress(&progress).await {
        Err(StoreError::LeaseLost { file_id }) => assert_eq!(file_id, row.id),
        other => panic!("expected LeaseLost, got {other:?}"),
    }
    drop(tx);
    assert!(!one.file_renew(row.id).await.expect("renew"));
    let mut tx = two.begin().await.expect("begin");
    assert!(
        tx.state_rows(&[1]).await.expect("rows").is_empty(),
        "the fenced chunk left nothing"
    );
    drop(tx);
    // A release hands the file over at once.
    two.file_release(row.id).await.expect("release");
    assert!(matches!(
        one.file_claim(&arrival("acme", "sha", "a.csv", 1)).await.expect("claim"),
        Claim::Owned(r) if r.records_done == 7
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_a_lane_leased_by_one_instance_is_not_due_for_another() {
    let b = Backend::postgres().await;
    let (one, two) = (b.open().await, b.open().await);
    insert(
        &one,
        &[
            message("A", 1, 1, &["s"]),
            message("A", 2, 1, &["s"]),
            message("B", 1, 2, &["s"]),
        ],
    )
    .await;
    let mine = claim(&one, "s", 1).await;
    assert_eq!((mine.len(), mine[0].lane), (1, 1));
    let theirs = claim(&two, "s", 10).await;
    assert_eq!(theirs.len(), 1, "lane 1's head is leased: A2 is not due");
    assert_eq!(theirs[0].lane, 2);
    assert!(claim(&one, "s", 10).await.is_empty(), "everything due is leased");

    // `one` dies holding A1: after the lease, `two` re-sends the same message.
    tokio::time::sleep(TEST_LEASE + Duration::from_millis(100)).await;
    let retaken = claim(&two, "s", 10).await;
    let ids: Vec<&str> = retaken.iter().map(|d| d.webhook_id.as_str()).collect();
    assert!(ids.contains(&mine[0].webhook_id.as_str()), "{ids:?}");
    let a1 = retaken.iter().find(|d| d.pos == mine[0].pos).expect("A1 again");
    assert_eq!(a1.body, mine[0].body, "same webhook-id, same payload");
    // A late failure from the old owner is ignored; its success would count.
    one.record_attempts(&[result(
        "s",
        a1.pos,
        1,
        AttemptOutcome::RetryAt(now_ms() + 3_600_000),
    )])
    .await
    .expect("record");
    two.record_attempts(&[result("s", a1.pos, 1, AttemptOutcome::Delivered)])
        .await
        .expect("record");
    let next = claim(&two, "s", 10).await;
    assert!(
        next.iter().any(|d| d.lane == 1 && d.pos > a1.pos),
        "A2 is the new head"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_concurrent_claims_never_hand_out_a_message_twice() {
    let b = Backend::postgres().await;
    let seed = b.open().await;
    let rows: Vec<OutboxWrite> = (0..400)
        .map(|i| message(&format!("C{i}"), 1, i, &["s"]))
        .collect();
    insert(&seed, &rows).await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let store = b.open().await;
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let due = claim(&store, "s", 25).await;
                if due.is_empty() {
                    return got;
                }
                let results: Vec<AttemptResult> = due
                    .iter()
                    .map(|d| result("s", d.pos, 1, AttemptOutcome::Delivered))
                    .collect();
                store.record_attempts(&results).await.expect("record");
                got.extend(due.into_iter().map(|d| d.pos));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    let unique: HashSet<i64> = all.iter().copied().collect();
    assert_eq!((all.len(), unique.len()), (400, 400));
    let stats = seed.subscriber_stats().await.expect("stats");
    assert_eq!((stats[0].pending, stats[0].delivered), (0, 400));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_chunk_commits_of_one_program_serialize() {
    let b = Backend::postgres().await;
    let (one, two) = (b.open().await, b.open().await);
    let mut first = one.begin().await.expect("begin");
    assert_eq!(
        first.lock_program("P").await.expect("lock"),
        Generation::Shared(0)
    );
    let waiter = tokio::spawn(async move {
        let mut tx = two.begin().await.expect("begin");
        let g = tx.lock_program("P").await.expect("lock");
        tx.commit().await.expect("commit");
        g
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiter.is_finished(), "the second chunk waits for the first");
    assert_eq!(
        first.bump_program("P").await.expect("bump"),
        Generation::Shared(1)
    );
    first.commit().await.expect("commit");
    assert_eq!(
        waiter.await.expect("task"),
        Generation::Shared(1),
        "and sees its write"
    );
}

/// The outcome journal (SQLite: `deliver::journal`) is applied after a
/// crash: once, whatever the number of times, and never over a replay an
/// operator queued in between.
#[tokio::test]
async fn sqlite_a_journal_applies_once_and_a_replay_wins() {
    let backend = Backend::sqlite().await;
    let store = backend.open().await;
    let rows = [
        message("A", 1, 1, &["s"]),
        message("B", 1, 2, &["s"]),
        message("C", 1, 3, &["s"]),
    ];
    insert(&store, &rows).await;
    let due = claim(&store, "s", 10).await;
    assert_eq!(due.len(), 3);
    let sent = |pos, outcome| result("s", pos, 1, outcome);
    let journal = [
        sent(due[0].pos, AttemptOutcome::Delivered),
        sent(due[1].pos, AttemptOutcome::RetryAt(now_ms() + 60_000)),
        sent(due[2].pos, AttemptOutcome::Delivered),
    ];
    assert_eq!(store.apply_journal(&journal).await.expect("apply"), 3);
    let stats = store.subscriber_stats().await.expect("stats");
    assert_eq!((stats[0].pending, stats[0].delivered), (1, 2));
    assert!(claim(&store, "s", 10).await.is_empty(), "B waits for its retry");
    // Applied again (a crash before the segment was removed): no change,
    // and no second attempt row.
    assert_eq!(store.apply_journal(&journal).await.expect("apply"), 0);
    assert_eq!(store.attempts(&rows[0].id).await.expect("attempts").len(), 1);
    // An operator replays C before the daemon restarts: the journal's old
    // answer for C does not settle it again.
    tokio::time::sleep(Duration::from_millis(10)).await;
    let replay = hubsync::store::ReplayFilter {
        subscriber: "s".into(),
        since_ms: None,
        until_ms: None,
        program: None,
        case_id: None,
        message_id: Some(rows[2].id.clone()),
        failed_only: false,
        allow_purged: false,
    };
    assert_eq!(store.replay(&replay).await.expect("replay").replayed, 1);
    assert_eq!(store.apply_journal(&journal[2..]).await.expect("apply"), 0);
    let again = claim(&store, "s", 10).await;
    assert_eq!(again.iter().map(|d| d.pos).collect::<Vec<_>>(), vec![due[2].pos]);
    store.close().await;
}
