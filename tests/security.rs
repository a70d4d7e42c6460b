//! The security pass (issue 16), each point through the real binary or the
//! real HTTP stack: subscriber URL policy (at load, and after DNS in a
//! private network namespace), redirects never followed, drop-folder entries
//! that are never followed or read, and the admin API's bounds.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{Hub, Recorder, ADMIN_TOKEN, PSEUDONYM_KEY, SECRET};

/// A child killed when dropped: a failing assertion does not leave a
/// daemon running.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the binary with the hub's environment; stderr goes to `log`.
fn spawn_logged(hub: &Hub, log: &Path, prefix: &[&str]) -> Daemon {
    let logf = std::fs::File::create(log).expect("log file");
    let bin = env!("CARGO_BIN_EXE_hubsync");
    let mut cmd = if prefix.is_empty() {
        Command::new(bin)
    } else {
        let mut c = Command::new(prefix[0]);
        c.args(&prefix[1..]).arg(bin);
        c
    };
    cmd.args(["run", "--config"])
        .arg(hub.root().join("config.toml"))
        .env("HUBSYNC_PSEUDONYM_KEY", PSEUDONYM_KEY)
        .env("HUBSYNC_TEST_SECRET", SECRET)
        .env("HUBSYNC_TEST_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("RUST_LOG", "info,sqlx=warn")
        .stdin(Stdio::null())
        .stdout(logf.try_clone().expect("log handle"))
        .stderr(logf)
        .spawn()
        .map(Daemon)
        .expect("spawn hubsync")
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn stop(d: Daemon) {
    drop(d);
}

#[test]
fn subscriber_urls_are_checked_at_load() {
    let hub = Hub::new("http://127.0.0.1:9/hooks", "", "", 100);
    let check_hub = |hub: &Hub| {
        let out = hub.cli(&["check"]);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let check = || check_hub(&hub);
    let sub = |url: &str| {
        format!("[[subscribers]]\nname = \"mfr\"\nurl = \"{url}\"\nsecret_env = \"HUBSYNC_TEST_SECRET\"\n")
    };
    for url in [
        "http://169.254.169.254/latest/meta-data",
        "http://[fd00:ec2::254]/",
        "http://[fe80::1]:8080/",
    ] {
        hub.set_tail(&sub(url));
        let (ok, err) = check();
        assert!(!ok, "{url} must be refused");
        assert!(
            err.contains("link-local or a cloud metadata address") && err.contains("config.toml:"),
            "{url}: {err}"
        );
    }
    // Allowed when the operator says so.
    hub.set_tail(&sub("http://169.254.169.254/hooks"));
    hub.set_delivery("allow_link_local = true");
    let (ok, err) = check();
    assert!(ok, "{err}");
    // The allow-list.
    let hub = Hub::new("http://127.0.0.1:9/hooks", "", "", 100);
    let check = || check_hub(&hub);
    hub.set_delivery("allowed_hosts = [\"*.example.org\", \"localhost\"]");
    hub.set_tail(&sub("https://hooks.example.org/x"));
    assert!(check().0, "{}", check().1);
    hub.set_tail(&sub("http://127.0.0.1:9/hooks"));
    let (ok, err) = check();
    assert!(
        !ok && err.contains("host `127.0.0.1` is not in [delivery] allowed_hosts"),
        "{err}"
    );
}

/// A name that resolves to a link-local address is refused at connect time.
/// The daemon runs in its own network namespace (only a loopback, which also
/// carries 169.254.10.10) with its own /etc/hosts, so even a broken guard
/// could only reach a listener inside that namespace: the listener records
/// every request's Host, and only the allowed name may appear.
#[test]
fn dns_answers_in_link_local_ranges_are_refused_at_connect_time() {
    let hub = Hub::new("http://127.0.0.1:9/hooks", "", "", 100);
    let root = hub.root();
    // The namespace has its own ports: any one is free there.
    let port = 18_080;
    std::fs::write(
        root.join("hosts"),
        "127.0.0.1 localhost\n127.0.0.1 rx.hubsync.test\n169.254.10.10 meta.hubsync.test\n",
    )
    .expect("hosts");
    let seen = root.join("seen.txt");
    // A listener inside the namespace: answers 204, writes each Host header.
    std::fs::write(
        root.join("listener.py"),
        format!(
            "import http.server\nclass H(http.server.BaseHTTPRequestHandler):\n    def do_POST(self):\n        \
             self.rfile.read(int(self.headers.get('content-length', 0)))\n        \
             open({seen:?}, 'a').write(self.headers.get('host', '') + '\\n')\n        \
             self.send_response(204); self.end_headers()\n    def log_message(self, *a): pass\n\
             http.server.ThreadingHTTPServer(('0.0.0.0', {port}), H).serve_forever()\n",
            seen = seen.display().to_string()
        ),
    )
    .expect("listener");
    hub.set_tail(&format!(
        "[[subscribers]]\nname = \"allowed\"\nurl = \"http://rx.hubsync.test:{port}/hooks\"\nsecret_env = \"HUBSYNC_TEST_SECRET\"\n\
         retry_schedule = [\"200ms\"]\n\
         [[subscribers]]\nname = \"metadata\"\nurl = \"http://meta.hubsync.test:{port}/hooks\"\nsecret_env = \"HUBSYNC_TEST_SECRET\"\n\
         retry_schedule = [\"200ms\", \"200ms\"]\n"
    ));
    let script = format!(
        "set -e; ip link set lo up; ip addr add 169.254.10.10/32 dev lo; mount --bind {hosts} /etc/hosts; \
         python3 {listener} & sleep 0.3; exec \"$@\"",
        hosts = root.join("hosts").display(),
        listener = root.join("listener.py").display()
    );
    let log = root.join("daemon.log");
    let child = spawn_logged(
        &hub,
        &log,
        // A pid namespace too: killing unshare kills the listener with the daemon.
        &[
            "unshare",
            "--net",
            "--mount",
            "--pid",
            "--fork",
            "--kill-child",
            "sh",
            "-c",
            &script,
            "sh",
        ],
    );
    hub.drop_file(
        &support::repo().join("fixtures/acme-hub/status_20261122.csv"),
        "status_20261122.csv",
    );
    let refused = "meta.hubsync.test resolves only to link-local or metadata addresses (169.254.10.10)";
    wait_for("deliveries and the refusal", Duration::from_secs(30), || {
        let hosts = std::fs::read_to_string(&seen).unwrap_or_default();
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        hosts.lines().count() >= 40 && log.contains(refused)
    });
    std::thread::sleep(Duration::from_millis(500));
    stop(child);
    let hosts = std::fs::read_to_string(&seen).unwrap_or_default();
    assert!(
        hosts.lines().all(|h| h == format!("rx.hubsync.test:{port}")),
        "a request went to a refused address: {hosts}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_never_followed() {
    let rx = Recorder::start().await;
    let target = rx.url("/elsewhere");
    rx.respond(move |hit, _| {
        if hit.path == "/hooks" {
            (302, vec![("location".to_string(), target.clone())])
        } else {
            (204, vec![])
        }
    });
    let hub = Hub::new(&rx.url("/hooks"), "retry_schedule = [\"100ms\"]", "", 100);
    let log = hub.root().join("daemon.log");
    let child = spawn_logged(&hub, &log, &[]);
    hub.drop_file(
        &support::repo().join("fixtures/acme-hub/status_20261122.csv"),
        "a.csv",
    );
    rx.wait_hits(5, Duration::from_secs(20)).await;
    // Time for a follow-up request, if one were (wrongly) made.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let store = hub.store().await;
    let stats = store.subscriber_stats().await.expect("stats");
    assert!(stats[0].failed >= 5, "a 3xx is a permanent failure: {stats:?}");
    stop(child);
    let hits = rx.hits();
    assert!(hits.iter().all(|h| h.path == "/hooks"), "a redirect was followed");
    assert!(hits.iter().all(|h| h.answered == 302));
    let log = std::fs::read_to_string(&log).expect("log");
    assert!(log.contains("redirects are not followed"), "{log}");
}

/// Links, FIFOs, directories and odd names in a drop folder are skipped with
/// a log line and never opened; the good file beside them is processed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_folder_skips_links_fifos_directories_and_odd_names() {
    use std::os::unix::fs::symlink;
    let rx = support::Receiver::start().await;
    let hub = Hub::new(&rx.url(), "", "", 100);
    let drop = hub.drop_dir();
    let outside = hub.root().join("outside.csv");
    std::fs::write(
        &outside,
        "Case ID,Patient ID,Status Code,Status Date\nOUT-1,P1,REF,11/20/2026\n",
    )
    .expect("outside");
    symlink(&outside, drop.join("status_link.csv")).expect("symlink");
    symlink("/etc/passwd", drop.join("status_passwd.csv")).expect("symlink");
    let fifo = drop.join("status_fifo.csv");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo")
        .success());
    std::fs::create_dir(drop.join("status_dir.csv")).expect("dir");
    let body = "Case ID,Patient ID,Status Code,Status Date\nODD-1,P2,REF,11/20/2026\n";
    std::fs::write(drop.join("status_..x.csv"), body).expect("dots");
    std::fs::write(drop.join("status_\u{7}bell.csv"), body).expect("control");
    std::fs::write(drop.join("status_\u{1b}[31mred.csv"), body).expect("escape");
    let log = hub.root().join("daemon.log");
    let child = spawn_logged(&hub, &log, &[]);
    hub.drop_file(
        &support::repo().join("fixtures/acme-hub/status_20261122.csv"),
        "status_good.csv",
    );
    wait_for("the good file archived", Duration::from_secs(20), || {
        hub.files_under("archive")
            .iter()
            .any(|p| p.ends_with("status_good.csv"))
    });
    let got = rx.wait_unique(40, Duration::from_secs(20)).await;
    std::thread::sleep(Duration::from_millis(800));
    stop(child);
    assert!(
        got.values().all(|r| {
            let case = r.body["data"]["case_id"].as_str().unwrap_or("");
            case != "OUT-1" && case != "ODD-1"
        }),
        "a skipped entry was read"
    );
    let log = std::fs::read_to_string(&log).expect("log");
    for (entry, why) in [
        ("status_link.csv", "symbolic link"),
        ("status_passwd.csv", "symbolic link"),
        ("status_fifo.csv", "FIFO"),
        ("status_dir.csv", "directory"),
        ("status_..x.csv", "`..`"),
        ("status_\\u{7}bell.csv", "control characters"),
    ] {
        let line = log
            .lines()
            .find(|l| l.contains("drop folder entry skipped") && l.contains(entry))
            .unwrap_or_else(|| panic!("no skip line for {entry}:\n{log}"));
        assert!(line.contains(why), "{line}");
        assert_eq!(
            log.lines()
                .filter(|l| l.contains("drop folder entry skipped") && l.contains(entry))
                .count(),
            1,
            "one line per entry, not one per scan"
        );
    }
    // The raw escape sequence never reaches the log.
    assert!(!log.contains('\u{1b}'), "an escape sequence reached the log");
    // Nothing skipped was moved or touched.
    assert!(outside.exists() && drop.join("status_link.csv").exists() && fifo.exists());
    assert!(drop.join("status_..x.csv").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_bounds_requests_and_takes_the_token_only_from_the_header() {
    let rx = support::Receiver::start().await;
    let hub = Hub::new(&rx.url(), "", "", 100);
    let port = support::free_port();
    let text = std::fs::read_to_string(hub.root().join("config.toml")).expect("config");
    std::fs::write(
        hub.root().join("config.toml"),
        format!("{text}\n[admin]\nlisten = \"127.0.0.1:{port}\"\ntoken_env = \"HUBSYNC_TEST_ADMIN_TOKEN\"\n"),
    )
    .expect("config");
    let log = hub.root().join("daemon.log");
    let child = spawn_logged(&hub, &log, &[]);
    support::wait_admin(port).await;
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let status = |r: reqwest::Response| r.status().as_u16();

    let ok = client
        .get(format!("{base}/v1/subscribers"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("get");
    assert_eq!(status(ok), 200);
    // Wrong tokens, of the same and of other lengths.
    let mut same_len = ADMIN_TOKEN.to_string();
    same_len.replace_range(0..1, "X");
    for t in [same_len.as_str(), "short", &format!("{ADMIN_TOKEN}x"), ""] {
        let r = client
            .get(format!("{base}/v1/subscribers"))
            .bearer_auth(t)
            .send()
            .await
            .expect("get");
        assert_eq!(status(r), 401, "token {t:?}");
    }
    // The token in the query string is refused, never accepted.
    for q in ["token", "access_token", "api_key"] {
        let r = client
            .get(format!("{base}/v1/subscribers?{q}={ADMIN_TOKEN}"))
            .send()
            .await
            .expect("get");
        assert_eq!(status(r), 400, "{q}");
    }
    // Headers past 16 KiB.
    let r = client
        .get(format!("{base}/v1/subscribers"))
        .bearer_auth(ADMIN_TOKEN)
        .header("x-padding", "a".repeat(20 * 1024))
        .send()
        .await
        .expect("get");
    assert_eq!(status(r), 431);
    // A body past 64 KiB, declared and streamed without a length.
    let big = format!(
        "{{\"subscriber\":\"mfr\",\"case\":\"{}\"}}",
        "x".repeat(100 * 1024)
    );
    let r = client
        .post(format!("{base}/v1/replay"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(big.clone())
        .send()
        .await
        .expect("post");
    assert_eq!(status(r), 413);
    // Chunked, with no length to refuse up front: the limit still holds.
    let answer = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let head = format!(
            "POST /v1/replay HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
             Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        s.write_all(head.as_bytes()).expect("head");
        for c in big.as_bytes().chunks(8192) {
            if s.write_all(format!("{:x}\r\n", c.len()).as_bytes()).is_err()
                || s.write_all(c).is_err()
                || s.write_all(b"\r\n").is_err()
            {
                break; // the server may close early
            }
        }
        let _ = s.write_all(b"0\r\n\r\n");
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    })
    .await
    .expect("raw client");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    stop(child);
}

#[test]
fn token_comparison_does_not_depend_on_where_or_whether_lengths_differ() {
    use hubsync::admin::token_matches;
    assert!(token_matches(ADMIN_TOKEN, ADMIN_TOKEN));
    assert!(!token_matches("", ADMIN_TOKEN));
    assert!(!token_matches(&ADMIN_TOKEN[..ADMIN_TOKEN.len() - 1], ADMIN_TOKEN));
    let mut last = ADMIN_TOKEN.to_string();
    last.pop();
    last.push('!');
    assert!(!token_matches(&last, ADMIN_TOKEN));
}
