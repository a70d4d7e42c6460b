//! Several `hubsync run` processes on one PostgreSQL database and one shared
//! drop folder: the file claim decides who processes each file, deliveries
//! are shared through leases, and killing instances (`kill -9`) mid-file and
//! mid-delivery loses nothing. The receiver verifies every signature.

mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use hubsync::store::{FileRow, FileStatus, Store};
use support::cluster::{snapshot, Cluster, ClusterOpts, Receiver};
use support::process::bin_under_test;
use support::PgDb;

/// Milestones a set of files produces when no case is shared between files.
fn expected_deltas(cluster: &Cluster, files: &[(String, String)]) -> u64 {
    let config = cluster.load_config();
    let connector = config.connectors[0].clone();
    let dir = tempfile::tempdir().expect("tempdir");
    files
        .iter()
        .map(|(name, content)| {
            let p = dir.path().join(name);
            std::fs::write(&p, content).expect("write");
            let dry = hubsync::pipeline::dry_run(&config, &connector, &p).expect("dry run");
            assert!(
                dry.failed.is_none() && dry.rejects.is_empty(),
                "{name}: {:?}",
                dry.failed
            );
            dry.counts.deltas
        })
        .sum()
}

struct Totals {
    files: Vec<FileRow>,
    pending: i64,
    delivered: i64,
    failed: i64,
}

async fn totals(store: &Store) -> Totals {
    let files = store.files(10_000).await.expect("files");
    let stats = store.subscriber_stats().await.expect("stats");
    let (pending, delivered, failed) = stats.iter().fold((0, 0, 0), |(p, d, f), s| {
        (p + s.pending, d + s.delivered, f + s.failed)
    });
    Totals {
        files,
        pending,
        delivered,
        failed,
    }
}

/// Waits until `n_files` are done and nothing is pending; panics with the
/// instances' logs after `limit`.
async fn wait_until_settled(
    store: &Store,
    cluster: &Cluster,
    receiver: &Receiver,
    n_files: usize,
    limit: Duration,
) -> Totals {
    let started = Instant::now();
    loop {
        let t = totals(store).await;
        let done = t.files.iter().filter(|f| f.status == FileStatus::Done).count();
        let deltas: u64 = t.files.iter().map(|f| f.counts.deltas).sum();
        if done == n_files
            && t.pending == 0
            && t.delivered as u64 == deltas
            && receiver.unique() as u64 == deltas
        {
            return t;
        }
        if started.elapsed() > limit {
            panic!(
                "not settled after {limit:?}: {done}/{n_files} files done, {} pending, {} delivered, {} received, {deltas} deltas\n{}",
                t.pending,
                t.delivered,
                receiver.unique(),
                cluster.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The receiver-side invariants: signatures, one payload per id, per-case order.
fn check_arrivals(receiver: &Receiver) {
    let got = receiver.got.lock().expect("receiver state lock");
    assert_eq!(got.refused, 0, "every signature verifies");
    assert!(
        got.conflicts.is_empty(),
        "a webhook-id was sent with two payloads: {:?}",
        got.conflicts
    );
    // Per case, first arrivals carry sequences 1, 2, 3, … in that order: the
    // lane FIFO held across instances, and no case sequence was skipped.
    let mut per_case: HashMap<&str, Vec<i64>> = HashMap::new();
    for a in &got.arrivals {
        per_case.entry(a.case.as_str()).or_default().push(a.sequence);
    }
    for (case, seqs) in &per_case {
        let want: Vec<i64> = (1..=seqs.len() as i64).collect();
        assert_eq!(seqs, &want, "case {case}: sequences out of order or with gaps");
    }
    // Chunk commits of one program serialize: no key is "created" twice.
    let mut created: HashMap<&str, u32> = HashMap::new();
    for a in got.arrivals.iter().filter(|a| a.change == "created") {
        *created.entry(a.key.as_str()).or_default() += 1;
    }
    let twice: Vec<_> = created.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "keys created twice: {twice:?}");
}

fn check_files(cluster: &Cluster, t: &Totals, n_files: usize, rows: u64) {
    assert_eq!(t.files.len(), n_files, "one ledger row per file");
    for f in &t.files {
        assert_eq!(f.status, FileStatus::Done, "{}: {:?}", f.name, f.error);
        assert!(f.counts.reconciles(), "{}: {:?}", f.name, f.counts);
    }
    let read: u64 = t.files.iter().map(|f| f.counts.read).sum();
    assert_eq!(read, rows, "every record read exactly once across instances");
    assert_eq!(t.failed, 0);
    let names = |dir: &Path| -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for p in support::files_in(dir) {
            *m.entry(p.file_name().expect("a name").to_string_lossy().into_owned())
                .or_default() += 1;
        }
        m
    };
    let left = names(&cluster.drop);
    assert!(left.is_empty(), "files left in the drop folder: {left:?}");
    let archived = names(&cluster.archive);
    assert_eq!(archived.len(), n_files, "{archived:?}");
    assert!(archived.values().all(|n| *n == 1), "archived twice: {archived:?}");
    assert!(names(&cluster.error).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_a_drop_of_many_files() {
    let db = PgDb::create().await;
    let receiver = Receiver::start().await;
    let opts = ClusterOpts {
        chunk_rows: 15,
        ..ClusterOpts::default()
    };
    let mut cluster = Cluster::new(&bin_under_test(), &db.url, receiver.addr, &opts);
    for _ in 0..3 {
        cluster.spawn();
    }
    // Twelve first-day snapshots, and twelve next-day snapshots of the same
    // cases moved on: whichever order they are processed in, instances write
    // the same cases concurrently.
    let mut rows = 0;
    for day in 0..2u8 {
        for f in 0..12u64 {
            let cases = (f * 40..(f + 1) * 40).map(|n| (n, (n % 3) as u8 + day));
            cluster.drop_file(&format!("status_d{day}_{f:02}.csv"), &snapshot(cases));
            rows += 40;
        }
    }
    let store = Store::open(&db.url).await.expect("open");
    let t = wait_until_settled(&store, &cluster, &receiver, 24, Duration::from_secs(120)).await;
    cluster.stop_all();
    check_files(&cluster, &t, 24, rows);
    check_arrivals(&receiver);
    let deltas: u64 = t.files.iter().map(|f| f.counts.deltas).sum();
    assert_eq!(receiver.unique() as u64, deltas, "every milestone delivered once");
    // 480 cases at 1–2 milestones each, at least once.
    assert!(deltas >= 480, "{deltas}");
    let workers = (0..3)
        .filter(|i| cluster.log_of(*i).contains("file processed"))
        .count();
    assert!(
        workers >= 2,
        "the work was shared: {workers} instance(s) processed files\n{}",
        cluster.logs()
    );
    store.close().await;
}

/// The pid in an instance id `host:pid:suffix`.
fn pid_of(owner: &str) -> Option<u32> {
    owner.split(':').nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_instances_mid_file_and_mid_delivery_loses_nothing() {
    let db = PgDb::create().await;
    let receiver = Receiver::start().await;
    receiver.delay_ms.store(5, std::sync::atomic::Ordering::Relaxed);
    let opts = ClusterOpts {
        chunk_rows: 100,
        max_in_flight: 8,
        ..ClusterOpts::default()
    };
    let mut cluster = Cluster::new(&bin_under_test(), &db.url, receiver.addr, &opts);
    for _ in 0..3 {
        cluster.spawn();
    }
    let per_file = 1500u64;
    let files: Vec<(String, String)> = (0..6u64)
        .map(|f| {
            let cases = (f * per_file..(f + 1) * per_file).map(|n| (n, (n % 4) as u8));
            (format!("status_{f:02}.csv"), snapshot(cases))
        })
        .collect();
    let expected = expected_deltas(&cluster, &files);
    for (name, content) in &files {
        cluster.drop_file(name, content);
    }
    let store = Store::open(&db.url).await.expect("open");
    let sql = sqlx::PgPool::connect(&db.url).await.expect("connect");
    let live = |cluster: &Cluster, pid: u32| cluster.index_of_pid(pid);

    // 1. Kill -9 an instance in the middle of a file.
    let started = Instant::now();
    let victim = loop {
        let owners: Vec<String> = sqlx::query_scalar(
            "SELECT lease_owner FROM files WHERE status = 'processing' AND records_done > 0 AND lease_owner IS NOT NULL",
        )
        .fetch_all(&sql)
        .await
        .expect("query");
        if let Some(i) = owners
            .iter()
            .filter_map(|o| pid_of(o))
            .find_map(|p| live(&cluster, p))
        {
            break i;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no file mid-way\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    cluster.kill(victim);
    eprintln!("killed instance {victim} mid-file after {:?}", started.elapsed());

    // 2. Kill -9 another in the middle of deliveries it has claimed.
    let started = Instant::now();
    let second = loop {
        let owners: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT lease_owner FROM deliveries WHERE status = 0 AND lease_owner IS NOT NULL",
        )
        .fetch_all(&sql)
        .await
        .expect("query");
        let found = owners
            .iter()
            .filter_map(|o| pid_of(o))
            .find_map(|p| live(&cluster, p));
        if let (Some(i), true) = (found, receiver.unique() > 0) {
            break i;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no delivery in flight\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_ne!(second, victim);
    cluster.kill(second);
    eprintln!(
        "killed instance {second} mid-delivery after {:?} more ({} received)",
        started.elapsed(),
        receiver.unique()
    );
    let started = Instant::now();

    // 3. The last instance finishes everything.
    let t = wait_until_settled(&store, &cluster, &receiver, files.len(), Duration::from_secs(180)).await;
    eprintln!(
        "settled {:?} after the second kill ({expected} milestones)",
        started.elapsed()
    );
    cluster.stop_all();
    eprintln!("{}", cluster.logs());
    check_files(&cluster, &t, files.len(), per_file * files.len() as u64);
    check_arrivals(&receiver);
    let deltas: u64 = t.files.iter().map(|f| f.counts.deltas).sum();
    assert_eq!(
        deltas, expected,
        "each milestone committed once, across the takeover"
    );
    assert_eq!(t.delivered as u64, expected);
    {
        let got = receiver.got.lock().expect("receiver state lock");
        assert_eq!(got.bodies.len() as u64, expected, "every milestone delivered");
        assert!(got.arrivals.iter().all(|a| a.change == "created"));
        let ids: HashSet<&str> = got.arrivals.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids.len() as u64, expected);
        // Re-sends after the kill are allowed, and only as the same payloads.
        assert!(got.requests as u64 >= expected);
    }
    sql.close().await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_creates_the_schema_and_startup_refuses_a_newer_one() {
    let db = PgDb::create().await;
    let receiver = Receiver::start().await;
    let cluster = Cluster::new(&bin_under_test(), &db.url, receiver.addr, &ClusterOpts::default());
    let hubsync = |args: &[&str]| {
        std::process::Command::new(bin_under_test())
            .args(args)
            .arg("--config")
            .arg(&cluster.config)
            .env("HUBSYNC_PSEUDONYM_KEY", support::PSEUDONYM_KEY)
            .env("HUBSYNC_TEST_SECRET", support::SECRET)
            .output()
            .expect("run hubsync")
    };
    let out = hubsync(&["migrate"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = stdout
        .trim()
        .strip_prefix("schema at version ")
        .and_then(|r| r.split_once(' '))
        .map(|(v, _)| v.to_string())
        .unwrap_or_else(|| panic!("unexpected output: {stdout}"));
    assert!(
        stdout.contains(&format!("(this binary supports {v})")),
        "{stdout}"
    );
    // Again: nothing to do, same answer.
    assert!(hubsync(&["migrate"]).status.success());

    let sql = sqlx::PgPool::connect(&db.url).await.expect("connect");
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (99990101000000, 'from a newer hubsync', TRUE, '\\x00'::bytea, 0)",
    )
    .execute(&sql)
    .await
    .expect("insert");
    sql.close().await;
    for cmd in ["migrate", "run"] {
        let out = hubsync(&[cmd]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "`hubsync {cmd}` must refuse a newer schema"
        );
        assert!(
            stderr.contains(&format!(
                "schema is at version 99990101000000, newer than this binary supports ({v})"
            )),
            "{cmd}: {stderr}"
        );
    }
}
