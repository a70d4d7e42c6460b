//! SFTP drops against a real OpenSSH server (Debian's `openssh-server`,
//! started by each test on a loopback port). Never skipped: without sshd
//! these tests fail, and say how to install it.

mod support;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use hubsync::source::sftp::{SftpDrop, SftpError};
use support::sftp::{fingerprint_of, keygen, subscriber, SftpRig, CONNECTOR};
use support::{eventually, fixture, PSEUDONYM_KEY};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_to_end_file_becomes_signed_webhooks_and_is_archived_remotely() -> Result<()> {
    // A passphrase-protected key: the passphrase comes from the environment.
    let mut rig = SftpRig::builder().passphrase("correct horse").start().await?;
    let pass = rig.sshd.client_passphrase.clone();
    rig.inst.env.insert("TEST_KEY_PASS".into(), pass);
    rig.connector("key_passphrase_env = \"TEST_KEY_PASS\"\n")?;
    let expected = rig.expected("status_20261122.csv")?;
    ensure!(expected > 0, "the fixture produces webhooks");

    let daemon = rig.inst.start()?;
    rig.put("status_20261122.csv")?;
    rig.wait_webhooks("all webhooks", expected, WAIT).await?;
    let archived = rig.remote("archive/status_20261122.csv");
    eventually("the remote file archived", WAIT, || {
        archived.is_file().then_some(())
    })
    .await?;
    // Give a straggler (a duplicate send) the chance to show up before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    daemon.stop().await;

    let got = rig.rx.accepted();
    assert_eq!(got.len(), expected, "each delta exactly once");
    assert_eq!(rig.rx.bad_signatures(), 0, "every signature verified");
    let ids: std::collections::HashSet<_> = got.iter().map(|r| r.id.clone()).collect();
    assert_eq!(ids.len(), got.len(), "webhook ids are unique");
    assert!(got
        .iter()
        .all(|r| r.body["data"]["source"]["connector"] == CONNECTOR));
    assert!(got
        .iter()
        .all(|r| r.body["data"]["source"]["file"] == "status_20261122.csv"));
    assert!(
        !rig.remote("status_20261122.csv").exists(),
        "moved out of the drop"
    );
    assert_eq!(
        std::fs::read(&archived)?,
        std::fs::read(fixture("status_20261122.csv"))?,
        "archived intact"
    );
    let leftovers: Vec<_> = std::fs::read_dir(rig.inst.staging(CONNECTOR))?.collect();
    assert!(leftovers.is_empty(), "staging is cleaned up: {leftovers:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_is_never_read_early() -> Result<()> {
    let rig = SftpRig::start().await?;
    // settle 2s, polled every 200ms: every listing during the upload sees a
    // new size, so none may count the file as complete.
    let conn = rig
        .connector_text("")?
        .replace("settle = \"1s\"", "settle = \"2s\"");
    rig.inst.connector(CONNECTOR, &conn)?;
    let full = std::fs::read(fixture("status_20261122.csv"))?;
    let expected = rig.expected("status_20261122.csv")?;
    let daemon = rig.inst.start()?;

    // Written in 8 chunks, 700 ms apart: about 5 s for the whole file.
    let path = rig.remote("status_20261122.csv");
    let mut f = std::fs::File::create(&path)?;
    let chunk = full.len().div_ceil(8);
    let started = Instant::now();
    for part in full.chunks(chunk) {
        f.write_all(part)?;
        f.flush()?;
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(
            rig.rx.count(),
            0,
            "nothing may be sent while the file is being written"
        );
    }
    drop(f);
    assert!(started.elapsed() >= Duration::from_secs(5));
    rig.wait_webhooks("all webhooks", expected, WAIT).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    daemon.stop().await;

    assert_eq!(rig.rx.count(), expected);
    let store = rig.inst.store().await?;
    let files = store.files(10).await?;
    assert_eq!(files.len(), 1, "one version of the file was processed: {files:?}");
    assert_eq!(files[0].counts.read, 40, "all 40 records, not a prefix");
    store.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_host_key_is_refused() -> Result<()> {
    let rig = SftpRig::start().await?;
    rig.put("status_20261122.csv")?;

    // A key the server does not have.
    let impostor = rig.tmp.path().join("impostor");
    keygen(&impostor, "")?;
    let wrong = fingerprint_of(&impostor.with_extension("pub"))?;
    let good = rig.sshd.host_fingerprint()?;
    assert_ne!(wrong, good);
    let with_wrong_key = rig.connector_text("")?.replace(&good, &wrong);

    // Pinned fingerprint.
    rig.inst.connector(CONNECTOR, &with_wrong_key)?;
    let mut remote = SftpDrop::new(rig.source()?);
    let err = remote
        .connect()
        .await
        .expect_err("a wrong pinned key must be refused");
    match &err {
        SftpError::HostKeyMismatch {
            offered, expected, ..
        } => {
            assert_eq!(offered, &good);
            assert_eq!(expected, &wrong);
        }
        other => panic!("expected HostKeyMismatch, got {other:?}"),
    }
    assert_eq!(
        err.scope(),
        hubsync::source::sftp::Scope::Fatal,
        "a changed key stops the connector"
    );
    assert!(err.to_string().contains("does not match"), "{err}");

    // known_hosts with another key for this host:port, then with the right one.
    let kh = rig.tmp.path().join("known_hosts");
    let impostor_line = std::fs::read_to_string(impostor.with_extension("pub"))?;
    let mut parts = impostor_line.split_whitespace();
    let (algo, b64) = (parts.next().context("algo")?, parts.next().context("key")?);
    std::fs::write(&kh, format!("[127.0.0.1]:{} {algo} {b64}\n", rig.sshd.port))?;
    let with_known_hosts = rig
        .connector_text(&format!("known_hosts = \"{}\"\n", kh.display()))?
        .replace(&format!("host_key_fingerprint = \"{good}\"\n"), "");
    rig.inst.connector(CONNECTOR, &with_known_hosts)?;
    let mut remote = SftpDrop::new(rig.source()?);
    assert!(matches!(
        remote.connect().await,
        Err(SftpError::HostKeyMismatch { .. })
    ));
    std::fs::write(&kh, rig.sshd.known_hosts_line()?)?;
    let mut remote = SftpDrop::new(rig.source()?);
    remote
        .connect()
        .await
        .context("the right known_hosts entry is accepted")?;
    remote.disconnect().await;

    // The daemon with a wrong key: the connector stops, nothing is fetched.
    rig.inst.connector(CONNECTOR, &with_wrong_key)?;
    let daemon = rig.inst.start()?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    daemon.stop().await;
    assert_eq!(rig.rx.count(), 0);
    assert!(
        rig.remote("status_20261122.csv").is_file(),
        "the file was not touched"
    );
    assert!(!rig.remote("archive").exists());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_nothing_is_processed_twice() -> Result<()> {
    let rig = SftpRig::start().await?;
    // "leave": the file stays on the server, as with a read-only account.
    rig.connector("after_commit = \"leave\"\n")?;
    let day1 = rig.put("status_20261122.csv")?;
    let first = rig.expected("status_20261122.csv")?;

    let daemon = rig.inst.start()?;
    rig.wait_webhooks("the first file's webhooks", first, WAIT)
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    daemon.stop().await;
    assert_eq!(rig.rx.count(), first);

    // Restart. The first file is still there; a second one arrives. The second
    // file's webhooks prove the restarted connector listed the folder (and
    // reached the first file before it, in path order).
    let daemon = rig.inst.start()?;
    let day2 = rig.put("status_20261123.csv")?;
    eventually("the second file's webhooks", WAIT, || {
        (rig.rx.count_from_file("status_20261123.csv") > 0).then_some(())
    })
    .await?;
    // And a third poll round after that, to be sure nothing more comes.
    tokio::time::sleep(Duration::from_secs(1)).await;
    daemon.stop().await;

    assert_eq!(
        rig.rx.count_from_file("status_20261122.csv"),
        first,
        "the first file was not processed again"
    );
    assert!(day1.is_file(), "left in place");
    assert_eq!(
        rig.sshd.opens_of(&day1),
        1,
        "the remote-file ledger (path, size, mtime) kept it from being downloaded again; sshd log:\n{}",
        rig.sshd.log()
    );
    assert_eq!(rig.sshd.opens_of(&day2), 1);
    let store = rig.inst.store().await?;
    let files = store.files(10).await?;
    assert_eq!(files.len(), 2, "{files:?}");
    store.close().await;
    Ok(())
}

/// A file large enough for the test to catch its download in flight: the
/// fixture followed by many copies of its first record (the same milestone
/// again changes nothing, so the webhooks are the fixture's).
fn write_big_file(path: &Path, target_bytes: u64) -> Result<u64> {
    let text = std::fs::read_to_string(fixture("status_20261122.csv"))?;
    let repeat = text.lines().nth(1).context("a record")?.to_string() + "\n";
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    f.write_all(text.as_bytes())?;
    let mut written = text.len() as u64;
    while written < target_bytes {
        f.write_all(repeat.as_bytes())?;
        written += repeat.len() as u64;
    }
    f.flush()?;
    Ok(written)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cut_mid_transfer_recovers_without_half_processing() -> Result<()> {
    let rig = SftpRig::start().await?;
    rig.connector("")?;
    let expected = rig.expected("status_20261122.csv")?;
    // Written beside the drop, then renamed in: it appears whole.
    let staged_remote = rig.tmp.path().join("remote/status_20261122.csv");
    let size = write_big_file(&staged_remote, 120 * 1024 * 1024)?;
    let daemon = rig.inst.start()?;
    std::fs::rename(&staged_remote, rig.remote("status_20261122.csv"))?;

    // Wait until the download is in flight (a partial file in staging), then
    // kill the server's per-connection processes.
    let staging = rig.inst.staging(CONNECTOR);
    let partial = eventually("a download in flight", WAIT, || {
        std::fs::read_dir(&staging).ok()?.flatten().find_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let len = e.metadata().ok()?.len();
            (name.ends_with(".part") && len > 1024 * 1024).then_some(len)
        })
    })
    .await?;
    let killed = rig.sshd.kill_sessions();
    assert!(killed > 0, "a session process was killed");
    assert!(partial < size, "cut mid-transfer ({partial} of {size} bytes)");

    rig.wait_webhooks("all webhooks after recovery", expected, WAIT * 2)
        .await?;
    eventually("the remote file archived", WAIT, || {
        rig.remote("archive/status_20261122.csv").is_file().then_some(())
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    daemon.stop().await;

    assert_eq!(rig.rx.count(), expected, "each delta once");
    let store = rig.inst.store().await?;
    let files = store.files(10).await?;
    assert_eq!(
        files.len(),
        1,
        "only the whole file reached the pipeline: {files:?}"
    );
    assert_eq!(files[0].status, hubsync::store::FileStatus::Done);
    assert!(files[0].counts.reconciles());
    store.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_drop_fires_its_alert_through_the_outbox() -> Result<()> {
    let rig = SftpRig::builder()
        .subscribers(|rx| {
            subscriber("ops", rx, "/ops", "feed_missing = true") + &subscriber("crm", rx, "/crm", "")
        })
        .start()
        .await?;
    // Due a few seconds from now, in the connector's zone (UTC here).
    let due = chrono::Utc::now() + chrono::Duration::seconds(4);
    let top = format!("[expect]\ndaily_by = \"{}\"\n", due.format("%H:%M:%S"));
    let conn = rig
        .connector_text("")?
        .replace("America/New_York", "UTC")
        .replace("[source]", &format!("{top}\n[source]"));
    rig.inst.connector(CONNECTOR, &conn)?;
    let daemon = rig.inst.start()?;

    let alert = eventually("a feed.missing webhook", WAIT, || {
        rig.rx
            .accepted()
            .into_iter()
            .find(|r| r.body["type"] == "feed.missing")
    })
    .await?;
    daemon.stop().await;

    assert_eq!(alert.path, "/ops", "only the subscriber that asked for it");
    let data = &alert.body["data"];
    assert_eq!(data["connector"], CONNECTOR);
    assert_eq!(data["program"], "ACME-ONC");
    assert_eq!(data["time_zone"], "UTC");
    assert_eq!(data["expected_by"], due.format("%Y-%m-%dT%H:%M:%SZ").to_string());
    assert!(data["last_arrival_at"].is_null());
    assert!(alert.body["timestamp"].is_string());
    assert!(alert.id.starts_with("msg_"));

    let store = rig.inst.store().await?;
    let missing = store.missing_drops(10).await?;
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert_eq!(missing[0].webhook_id.as_deref(), Some(alert.id.as_str()));
    let stats = store.subscriber_stats().await?;
    assert!(
        stats.iter().all(|s| s.subscriber != "crm"),
        "crm did not ask: {stats:?}"
    );
    store.close().await;
    assert_eq!(rig.rx.accepted().iter().filter(|r| r.path == "/crm").count(), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_done_marker_decides_and_is_tidied_with_the_file() -> Result<()> {
    let rig = SftpRig::start().await?;
    rig.connector("done_marker = \"{name}.ok\"\n")?;
    let expected = rig.expected("status_20261122.csv")?;
    let daemon = rig.inst.start()?;
    let file = rig.put("status_20261122.csv")?;
    // Long past the settle window, with many listings: no marker, no fetch.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(rig.rx.count(), 0, "not complete without its marker");
    assert_eq!(rig.sshd.opens_of(&file), 0);
    let marker = rig.remote("status_20261122.csv.ok");
    std::fs::write(&marker, "")?;
    rig.wait_webhooks("all webhooks", expected, WAIT).await?;
    eventually("file archived and marker removed", WAIT, || {
        (rig.remote("archive/status_20261122.csv").is_file() && !marker.exists()).then_some(())
    })
    .await?;
    daemon.stop().await;
    assert_eq!(rig.rx.count(), expected);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_account_and_an_unreadable_file_do_not_stop_the_connector() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    // The SFTP server runs as `nobody` and read-only (`-R`): the account can
    // list and read what `nobody` may read, and cannot rename or delete.
    let rig = SftpRig::builder()
        .sftp_server("setpriv --reuid=65534 --regid=65534 --clear-groups", "-R")
        .start()
        .await?;
    let tmp = rig.tmp.path();
    for d in [tmp, &tmp.join("remote"), &rig.drop_dir] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))?;
    }
    // The default after_commit ("archive") needs write access this account lacks.
    rig.connector("")?;
    let expected = rig.expected("status_20261123.csv")?;
    let unreadable = rig.put("status_20261122.csv")?;
    std::fs::set_permissions(&unreadable, std::fs::Permissions::from_mode(0o000))?;
    let readable = rig.put("status_20261123.csv")?;
    std::fs::set_permissions(&readable, std::fs::Permissions::from_mode(0o644))?;

    let daemon = rig.inst.start()?;
    // The unreadable file comes first in path order; the readable one still goes through.
    rig.wait_webhooks("the readable file's webhooks", expected, WAIT)
        .await?;
    // Several more poll rounds: the committed file, which could not be
    // archived, is not fetched again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    daemon.stop().await;

    assert_eq!(rig.rx.count(), expected);
    assert_eq!(rig.rx.count_from_file("status_20261122.csv"), 0);
    assert!(
        unreadable.is_file() && readable.is_file(),
        "nothing could be moved"
    );
    assert_eq!(
        rig.sshd.opens_of(&readable),
        1,
        "fetched once; sftp log:\n{}",
        rig.sshd.log()
    );
    // After the readable file was read, the tidy-up (mkdir of the archive
    // folder) was refused: the account really is read-only.
    let log = rig.sshd.log();
    let after_read = log
        .split(&format!("open \"{}\" flags READ", readable.display()))
        .nth(1)
        .context("the readable file was opened")?;
    assert!(
        after_read.contains("sent status Permission denied"),
        "the tidy-up was refused: {log}"
    );
    let store = rig.inst.store().await?;
    assert_eq!(store.files(10).await?.len(), 1);
    store.close().await;
    Ok(())
}

#[test]
fn sftp_config_mistakes_are_diagnosed_at_their_keys() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();
    support::hub::lay_out(root, &["acme-hub-status"]);
    std::fs::write(
        root.join("config.toml"),
        "[pseudonymization]\nkey_env = \"TEST_PSEUDO\"\n",
    )?;
    let load = || {
        hubsync::setup::load_with_env(&root.join("config.toml"), &|k| {
            (k == "TEST_PSEUDO").then(|| PSEUDONYM_KEY.to_string())
        })
        .expect_err("bad connector")
    };
    std::fs::write(
        root.join("connectors/bad.toml"),
        "program = \"P\"\nmapping = \"acme-hub-status\"\ntime_zone = \"UTC\"\n\
         [source]\nkind = \"sftp\"\nuser = \"u\"\npath = \"/in\"\nrescan = \"5s\"\n\
         password_env = \"NOPE\"\nhost_key_fingerprint = \"SHA256:short\"\n[format]\nkind = \"csv\"\n",
    )?;
    let text = load().to_string();
    for want in [
        "an sftp source needs `host`",
        "`rescan` applies to `kind = \"local\"` sources only",
        "environment variable `NOPE` is not set",
        "host_key_fingerprint must look like",
        "bad.toml:8:",
    ] {
        assert!(text.contains(want), "missing `{want}` in:\n{text}");
    }

    // And the reverse: an sftp key under a local source.
    std::fs::write(
        root.join("connectors/bad.toml"),
        "program = \"P\"\nmapping = \"acme-hub-status\"\ntime_zone = \"UTC\"\n\
         [source]\nkind = \"local\"\npath = \"in\"\nhost = \"h\"\n[format]\nkind = \"csv\"\n",
    )?;
    let err = load();
    assert!(
        err.to_string()
            .contains("`host` applies to `kind = \"sftp\"` sources only"),
        "{err}"
    );
    Ok(())
}

/// The rig's connector as an X12 278 connector that pushes its
/// acknowledgments to the hub's outbox folder (`ack_outbox`).
fn x12_ack_rig(rig: &SftpRig, outbox: &Path) -> Result<()> {
    std::fs::copy(
        support::repo().join("mappings/x12-278-response.toml"),
        rig.inst.root.join("mappings/x12-278-response.toml"),
    )?;
    let text = rig
        .connector_text(&format!("ack_outbox = \"{}\"\n", outbox.display()))?
        .replace("mapping = \"acme-hub-status\"", "mapping = \"x12-278-response\"")
        .replace("pattern = \"status_*.csv\"", "pattern = \"*.x12\"")
        .replace(
            "[format]\nkind = \"csv\"\n",
            "[format]\nkind = \"x12\"\ntransaction_sets = [\"278\"]\npurposes = [\"11\"]\nacknowledgments = true\n",
        );
    assert!(
        text.contains("kind = \"x12\""),
        "the connector was rewritten: {text}"
    );
    rig.inst.connector(CONNECTOR, &text)
}

/// Copies the X12 fixture `name` into the remote drop folder.
fn put_x12(rig: &SftpRig, name: &str) -> Result<()> {
    std::fs::copy(support::repo().join("fixtures/x12").join(name), rig.remote(name))?;
    Ok(())
}

/// Segments of an X12 text (terminator `~`, line breaks ignored).
fn segs(x12: &str) -> Vec<String> {
    x12.split('~')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledgments_are_pushed_whole_to_the_hubs_outbox_folder() -> Result<()> {
    let rig = SftpRig::start().await?;
    // The outbox does not exist yet: the first push creates it.
    let outbox = rig.tmp.path().join("remote/outbox");
    x12_ack_rig(&rig, &outbox)?;
    let daemon = rig.inst.start()?;
    // One good set and one whose SE01 is wrong (99): accepted in part.
    put_x12(&rig, "278-bad-set-count.x12")?;
    let ta1 = outbox.join("278-bad-set-count.x12.ta1");
    let ack999 = outbox.join("278-bad-set-count.x12.999");
    eventually("the TA1 and the 999 in the hub's outbox", WAIT, || {
        (ta1.is_file() && ack999.is_file()).then_some(())
    })
    .await?;
    rig.wait_webhooks("the good set's webhook", 1, WAIT).await?;
    daemon.stop().await;

    // Interchange accepted, addressed back to the sender, ISA13 echoed in TA101.
    let t = segs(&std::fs::read_to_string(&ta1)?);
    assert!(
        t[0].starts_with("ISA*00*          *00*          *ZZ*HUBSYNC        *ZZ*ACMEPAYER      *"),
        "{t:?}"
    );
    assert!(t[1].starts_with("TA1*000000107*261120*0815*A*000"), "{t:?}");
    // The 999 names the group (AK1 GS06 107) and each set (AK2 ST02), the
    // bad one rejected for its segment count (IK5 R 4), the group partly accepted.
    let n = segs(&std::fs::read_to_string(&ack999)?);
    for want in [
        "AK1*HI*107*005010X217",
        "AK2*278*0001*005010X217",
        "IK5*A",
        "AK2*278*0002*005010X217",
        "IK5*R*4",
        "AK9*P*2*2*1",
    ] {
        assert!(n.iter().any(|s| s == want), "missing {want} in {n:?}");
    }
    let st = n.iter().position(|s| s.starts_with("ST*999*")).context("ST")?;
    let se = n.iter().position(|s| s.starts_with("SE*")).context("SE")?;
    assert_eq!(n[se], format!("SE*{}*0001", se - st + 1), "SE01 counts the set");

    // Nothing half-written is left for the hub to pick up, and nothing is
    // left to push: the spool moved both to sent/.
    let names: Vec<String> = std::fs::read_dir(&outbox)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "only the two acknowledgments: {names:?}");
    let spool = rig.inst.root.join("data/acks").join(CONNECTOR);
    assert_eq!(std::fs::read_dir(spool.join("pending"))?.count(), 0);
    assert_eq!(std::fs::read_dir(spool.join("sent"))?.count(), 2);
    // The operator's copy stays beside the rejects in the local archive.
    let archived = std::fs::read_dir(rig.inst.root.join("data/archive").join(CONNECTOR))?
        .flatten()
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect::<Vec<_>>();
    assert!(
        archived.iter().any(|n| n == "278-bad-set-count.x12.999"),
        "{archived:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgment_the_hub_cannot_take_yet_is_kept_and_pushed_later() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let rig = SftpRig::start().await?;
    // A file where the outbox folder should be: every push is refused.
    let outbox = rig.tmp.path().join("remote/outbox");
    std::fs::write(&outbox, "not a folder")?;
    x12_ack_rig(&rig, &outbox)?;
    let daemon = rig.inst.start()?;
    put_x12(&rig, "278-three-events.x12")?;
    rig.wait_webhooks("the file's webhooks", 3, WAIT).await?;
    let pending = rig.inst.root.join("data/acks").join(CONNECTOR).join("pending");
    eventually("both acknowledgments spooled", WAIT, || {
        (std::fs::read_dir(&pending).ok()?.count() == 2).then_some(())
    })
    .await?;
    // Several polls later they are still owed, not dropped.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(std::fs::read_dir(&pending)?.count(), 2, "kept while refused");
    daemon.stop().await;

    // The hub fixes its folder; the next daemon run pushes what was owed,
    // although no new file arrives.
    std::fs::remove_file(&outbox)?;
    std::fs::create_dir_all(&outbox)?;
    std::fs::set_permissions(&outbox, std::fs::Permissions::from_mode(0o755))?;
    let daemon = rig.inst.start()?;
    let ack999 = outbox.join("278-three-events.x12.999");
    eventually("the owed 999 in the outbox", WAIT, || {
        ack999.is_file().then_some(())
    })
    .await?;
    eventually("the spool emptied", WAIT, || {
        (std::fs::read_dir(&pending).ok()?.count() == 0).then_some(())
    })
    .await?;
    daemon.stop().await;
    let n = segs(&std::fs::read_to_string(&ack999)?);
    assert!(n.iter().any(|s| s == "AK2*278*0001*005010X217"), "{n:?}");
    assert!(
        n.iter().any(|s| s == "IK5*A") && n.iter().any(|s| s == "AK9*A*1*1*1"),
        "{n:?}"
    );
    assert!(outbox.join("278-three-events.x12.ta1").is_file());
    assert_eq!(rig.rx.count(), 3, "the file itself was not processed again");
    Ok(())
}

#[test]
fn ack_outbox_is_refused_where_it_cannot_apply() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let root = tmp.path();
    support::hub::lay_out(root, &["acme-hub-status", "x12-278-response"]);
    std::fs::write(
        root.join("config.toml"),
        "[pseudonymization]\nkey_env = \"TEST_PSEUDO\"\n",
    )?;
    let load = || {
        hubsync::setup::load_with_env(&root.join("config.toml"), &|k| {
            (k == "TEST_PSEUDO").then(|| PSEUDONYM_KEY.to_string())
        })
        .expect_err("bad connector")
        .to_string()
    };
    // A local drop has no hub server to push to.
    std::fs::write(
        root.join("connectors/bad.toml"),
        "program = \"P\"\nmapping = \"x12-278-response\"\ntime_zone = \"UTC\"\n\
         [source]\nkind = \"local\"\npath = \"in\"\nack_outbox = \"/outbox\"\n\
         [format]\nkind = \"x12\"\nacknowledgments = true\n",
    )?;
    let text = load();
    assert!(
        text.contains("bad.toml:7:14")
            && text.contains("`ack_outbox` applies to `kind = \"sftp\"` sources only")
            && text.contains("^"),
        "{text}"
    );
    // A CSV feed is never acknowledged.
    std::fs::write(
        root.join("connectors/bad.toml"),
        "program = \"P\"\nmapping = \"acme-hub-status\"\ntime_zone = \"UTC\"\n\
         [source]\nkind = \"sftp\"\nhost = \"h\"\nuser = \"u\"\npassword_env = \"TEST_PSEUDO\"\n\
         host_key_fingerprint = \"SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"\npath = \"/in\"\n\
         ack_outbox = \"/outbox\"\n[format]\nkind = \"csv\"\n",
    )?;
    let text = load();
    assert!(
        text.contains("bad.toml:11:14") && text.contains("`ack_outbox` applies to X12 connectors only"),
        "{text}"
    );
    // An X12 connector that writes no acknowledgment has none to push.
    std::fs::write(
        root.join("connectors/bad.toml"),
        "program = \"P\"\nmapping = \"x12-278-response\"\ntime_zone = \"UTC\"\n\
         [source]\nkind = \"sftp\"\nhost = \"h\"\nuser = \"u\"\npassword_env = \"TEST_PSEUDO\"\n\
         host_key_fingerprint = \"SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"\npath = \"/in\"\n\
         ack_outbox = \"/in/\"\n[format]\nkind = \"x12\"\n",
    )?;
    let text = load();
    assert!(
        text.contains("`ack_outbox` needs `acknowledgments = true` in [format]")
            && text.contains("`ack_outbox` must not be the drop folder itself"),
        "{text}"
    );
    Ok(())
}
