//! No PHI in output: every fixture and the whole malformed corpus go through
//! every command (`check`, `parse`, `map` as JSON and as a table, `ingest`,
//! `test`, `status`, `migrate`, and the daemon `run` with a failing and a
//! succeeding subscriber, its admin API's `/metrics` and `/v1/subscribers`),
//! and all stdout, stderr, the daemon's log (at debug level), the error
//! sidecars and the rejects files are searched for the raw patient ids,
//! names and dates of birth found in the inputs. Sidecars and rejects files
//! must also be owner-only (0600).

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::malformed::*;
use support::{repo, PSEUDONYM_KEY, SECRET};

/// Raw patient identifiers, names and dates of birth in one input file.
fn phi_of(path: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let name = path.to_string_lossy().to_lowercase();
    let bytes = std::fs::read(path).unwrap_or_default();
    let is_phi_header = |h: &str| {
        let h = h.to_lowercase();
        (h.contains("patient") && !h.contains("status"))
            || h.contains("dob")
            || h.contains("birth")
            || h.contains("member")
    };
    if name.ends_with(".csv") {
        let text = String::from_utf8_lossy(&bytes);
        // Lone CRs end lines too (fixtures/malformed/cr_only.csv).
        let mut lines = text.split(['\n', '\r']).filter(|l| !l.is_empty());
        let Some(header) = lines.next() else { return out };
        let cols: Vec<usize> = header
            .split(',')
            .enumerate()
            .filter(|(_, h)| is_phi_header(h))
            .map(|(i, _)| i)
            .collect();
        for l in lines.take(10_000) {
            let f: Vec<&str> = l.split(',').collect();
            for &c in &cols {
                if let Some(v) = f.get(c) {
                    out.insert(v.trim().to_string());
                }
            }
        }
    } else if name.ends_with(".x12") {
        let text = String::from_utf8_lossy(&bytes);
        for seg in text.split(['~', '\n']) {
            let e: Vec<&str> = seg.trim().split('*').collect();
            match e.first().copied() {
                Some("NM1") if e.get(1) == Some(&"IL") || e.get(1) == Some(&"QC") => {
                    for i in [3, 4, 9] {
                        if let Some(v) = e.get(i) {
                            out.insert(v.to_string());
                        }
                    }
                }
                Some("DMG") => {
                    if let Some(v) = e.get(2) {
                        out.insert(v.to_string());
                    }
                }
                _ => {}
            }
        }
    } else if name.ends_with(".xml") {
        let text = String::from_utf8_lossy(&bytes);
        for part in text.split("Patient ref=\"").skip(1) {
            if let Some(v) = part.split('"').next() {
                out.insert(v.to_string());
            }
        }
    } else if name.ends_with(".xlsx") {
        // Cells one by one (a dense range of a sheet with a far cell would
        // need 512 GiB: calamine's worksheet_range is not used on inputs).
        use calamine::Reader;
        if let Ok(mut wb) = calamine::open_workbook::<calamine::Xlsx<_>, _>(path) {
            for sheet in wb.sheet_names().to_vec() {
                let Ok(mut cells) = wb.worksheet_cells_reader(&sheet) else {
                    continue;
                };
                let mut grid: std::collections::BTreeMap<u32, Vec<(u32, String)>> = Default::default();
                // calamine panics on a corrupt workbook (a shared-string
                // index past the table): the cells read before it count.
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    while let Ok(Some(c)) = cells.next_cell() {
                        let (r, col) = c.get_position();
                        if r > 5_000 {
                            break;
                        }
                        grid.entry(r).or_default().push((
                            col,
                            calamine::DataType::as_string(c.get_value()).unwrap_or_default(),
                        ));
                    }
                }));
                let header = grid
                    .iter()
                    .take(20)
                    .find(|(_, cs)| cs.iter().any(|(_, h)| is_phi_header(h)));
                if let Some((&hr, hcells)) = header {
                    let cols: Vec<u32> = hcells
                        .iter()
                        .filter(|(_, h)| is_phi_header(h))
                        .map(|(c, _)| *c)
                        .collect();
                    for (_, cs) in grid.range(hr + 1..) {
                        for (c, v) in cs {
                            if cols.contains(c) {
                                out.insert(v.trim().to_string());
                            }
                        }
                    }
                }
            }
        }
    }
    // Short or generic values would match by accident (and are no identifier).
    out.retain(|v| v.len() >= 5 && !v.chars().all(|c| c == '0') && v.chars().any(|c| c.is_alphanumeric()));
    out
}

/// Whole-token occurrences of `needle` in `hay` (not inside a longer word or number).
fn contains_token(hay: &str, needle: &str) -> bool {
    let mut from = 0;
    while let Some(i) = hay[from..].find(needle) {
        let at = from + i;
        let before = hay[..at].chars().next_back();
        let after = hay[at + needle.len()..].chars().next();
        let edge = |c: Option<char>| c.is_none_or(|c| !c.is_alphanumeric());
        if edge(before) && edge(after) {
            return true;
        }
        from = at + needle.len().max(1);
    }
    false
}

/// (input, connector) pairs: fixtures through their mapping tests' connector,
/// the malformed corpus through its manifest's.
fn inputs(gen_dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(repo().join("mappings/tests"))
        .expect("mapping tests")
        .flatten()
    {
        if e.path().extension().is_some_and(|x| x == "toml") {
            let t: toml::Value =
                toml::from_str(&std::fs::read_to_string(e.path()).expect("read")).expect("toml");
            let input = repo()
                .join("mappings/tests")
                .join(t["input"].as_str().expect("input"));
            out.push((input, t["connector"].as_str().expect("connector").to_string()));
        }
    }
    let manifest: toml::Value = toml::from_str(
        &std::fs::read_to_string(repo().join("fixtures/malformed/manifest.toml")).expect("manifest"),
    )
    .expect("toml");
    for c in manifest["case"].as_array().expect("cases") {
        let connector = c["connector"].as_str().expect("connector").to_string();
        let path = match (c.get("file"), c.get("generate")) {
            (Some(f), _) => repo().join("fixtures/malformed").join(f.as_str().expect("file")),
            (_, Some(g)) => generate(g.as_str().expect("generator"), gen_dir),
            _ => panic!("manifest case without a file"),
        };
        out.push((path, connector));
    }
    out
}

async fn receiver() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let n = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let app = axum::Router::new().fallback(axum::routing::post(move || {
        let n = n.clone();
        async move {
            // Every third request fails, so failure paths log too.
            if n.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                .is_multiple_of(3)
            {
                axum::http::StatusCode::INTERNAL_SERVER_ERROR
            } else {
                axum::http::StatusCode::NO_CONTENT
            }
        }
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    (
        addr,
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_phi_in_any_output_of_any_command() {
    let ws = workspace();
    let root = ws.path().to_path_buf();
    let gen_dir = tempfile::tempdir().expect("tempdir");
    let inputs = inputs(gen_dir.path());
    assert!(inputs.len() > 60, "{} inputs", inputs.len());
    let mut phi = BTreeSet::new();
    for (p, _) in &inputs {
        phi.extend(phi_of(p));
    }
    // The extractor finds what it should: known values from the fixtures.
    for known in [
        "P9471240",
        "Nakamura",
        "11/13/1944",
        "W100200300",
        "19630519",
        "P-88121",
        "Zabriskie",
        "02/29/1952",
    ] {
        assert!(phi.contains(known), "extractor missed {known}");
    }
    let (rx, rx_task) = receiver().await;
    let admin_port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let config = std::fs::read_to_string(root.join("config.toml"))
        .expect("config")
        .replace("http://127.0.0.1:9000/webhooks", &format!("http://{rx}/webhooks"))
        .replace(
            "retry_schedule = [\"5s\", \"5m\", \"30m\", \"2h\", \"5h\", \"10h\", \"14h\", \"20h\", \"24h\"]",
            "retry_schedule = [\"100ms\", \"100ms\", \"100ms\"]",
        )
        + &format!("\n[admin]\nlisten = \"127.0.0.1:{admin_port}\"\ntoken_env = \"HUBSYNC_LOCAL_SECRET\"\n");
    std::fs::write(root.join("config.toml"), config).expect("config");
    for d in std::fs::read_dir(root.join("connectors"))
        .expect("connectors")
        .flatten()
    {
        let t = std::fs::read_to_string(d.path())
            .expect("connector")
            .replace("settle = \"2s\"", "settle = \"200ms\"");
        std::fs::write(d.path(), t).expect("connector");
    }
    let cfg = root.join("config.toml");
    let mut outputs: Vec<(String, String)> = Vec::new();
    let mut run = |label: String, args: Vec<std::ffi::OsString>| {
        let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        let o = run_limited(&root, &refs);
        assert_limits(&label, &o);
        outputs.push((label, format!("{}\n{}", o.stdout, o.stderr)));
    };
    let os = |s: &str| std::ffi::OsString::from(s);
    run(
        "check".into(),
        vec![os("check"), os("--config"), cfg.clone().into()],
    );
    run(
        "test".into(),
        vec![os("test"), os("--config"), cfg.clone().into()],
    );
    run(
        "migrate".into(),
        vec![os("migrate"), os("--config"), cfg.clone().into()],
    );
    for (p, connector) in &inputs {
        let label = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        for (cmd, extra) in [
            ("parse", vec![]),
            ("map", vec![]),
            ("map", vec![os("--format"), os("table")]),
        ] {
            let mut a = vec![
                os(cmd),
                os("--config"),
                cfg.clone().into(),
                os("--connector"),
                os(connector),
            ];
            a.extend(extra);
            a.push(p.clone().into());
            run(format!("{cmd} {label}"), a);
        }
        let copy = root.join("ingest").join(&label);
        std::fs::create_dir_all(copy.parent().expect("parent")).expect("mkdir");
        std::fs::copy(p, &copy).expect("copy");
        run(
            format!("ingest {label}"),
            vec![
                os("ingest"),
                os("--config"),
                cfg.clone().into(),
                os("--connector"),
                os(connector),
                os("--seed"),
                copy.into(),
            ],
        );
    }
    run(
        "status".into(),
        vec![os("status"), os("--config"), cfg.clone().into()],
    );

    // The daemon, on a fresh store, with every input dropped where it goes.
    std::fs::remove_dir_all(root.join("data")).expect("fresh data dir");
    for (i, (p, connector)) in inputs.iter().enumerate() {
        let dir = root.join("data/drop").join(connector);
        std::fs::create_dir_all(&dir).expect("mkdir drop");
        let ext = p
            .extension()
            .map(|e| e.to_string_lossy().into_owned())
            .unwrap_or_default();
        // Names the connectors' patterns accept (status_*.csv, cases_*.xml, …).
        let name = match connector.as_str() {
            "acme-hub" => format!("status_{i:03}.{ext}"),
            "beacon-xml" => format!("cases_{i:03}.{ext}"),
            _ => format!("f{i:03}.{ext}"),
        };
        std::fs::copy(p, dir.join(name)).expect("drop");
    }
    let log = root.join("daemon.log");
    let logf = std::fs::File::create(&log).expect("log");
    /// Killed on drop, so a failed wait below does not leave a daemon behind.
    struct Daemon(std::process::Child);
    impl Drop for Daemon {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let daemon = std::process::Command::new(env!("CARGO_BIN_EXE_hubsync"))
        .args(["run", "--config"])
        .arg(&cfg)
        .current_dir(&root)
        .env("HUBSYNC_PSEUDONYM_KEY", PSEUDONYM_KEY)
        .env("HUBSYNC_LOCAL_SECRET", SECRET)
        .env("RUST_LOG", "debug,sqlx=warn,hyper=warn,hyper_util=warn,reqwest=warn,h2=warn,rustls=warn,russh=warn,notify=warn,tower=warn")
        .stdout(logf.try_clone().expect("log"))
        .stderr(logf)
        .spawn()
        .map(Daemon)
        .expect("run");
    let t0 = Instant::now();
    loop {
        let left: usize = std::fs::read_dir(root.join("data/drop"))
            .map(|rd| {
                rd.flatten()
                    .map(|d| {
                        std::fs::read_dir(d.path())
                            .map(|f| f.flatten().filter(|e| e.path().is_file()).count())
                            .unwrap_or(0)
                    })
                    .sum()
            })
            .unwrap_or(0);
        if left == 0 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "{left} files never left the drop folders"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let client = reqwest::Client::new();
    for path in ["/metrics", "/v1/subscribers"] {
        let r = client
            .get(format!("http://127.0.0.1:{admin_port}{path}"))
            .bearer_auth(SECRET)
            .send()
            .await
            .expect("admin API");
        outputs.push((format!("GET {path}"), r.text().await.expect("body")));
    }
    drop(daemon);
    rx_task.abort();
    outputs.push((
        "run (daemon log)".into(),
        std::fs::read_to_string(&log).expect("log"),
    ));

    // Sidecars and rejects files: PHI-free too, and owner-only.
    let mut written = Vec::new();
    fn walk(p: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                walk(&e.path(), out);
            } else {
                out.push(e.path());
            }
        }
    }
    walk(&root.join("data"), &mut written);
    let side: Vec<&PathBuf> = written
        .iter()
        .filter(|p| {
            let n = p.to_string_lossy();
            n.ends_with(".error.json") || n.ends_with(".rejects.jsonl")
        })
        .collect();
    assert!(
        side.iter().any(|p| p.to_string_lossy().ends_with(".error.json")),
        "some inputs went to error/"
    );
    assert!(
        side.iter()
            .any(|p| p.to_string_lossy().ends_with(".rejects.jsonl")),
        "some inputs had rejects"
    );
    for p in &side {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} is mode {mode:o}", p.display());
        outputs.push((
            p.display().to_string(),
            std::fs::read_to_string(p).unwrap_or_default(),
        ));
    }

    let mut leaks = Vec::new();
    for (label, text) in &outputs {
        for v in &phi {
            if contains_token(text, v) {
                let at = text.find(v.as_str()).unwrap_or(0);
                let (mut a, mut b) = (at.saturating_sub(80), (at + v.len() + 40).min(text.len()));
                while !text.is_char_boundary(a) {
                    a -= 1;
                }
                while !text.is_char_boundary(b) {
                    b += 1;
                }
                let ctx = &text[a..b];
                leaks.push(format!("{label}: `{v}` in …{ctx}…"));
            }
        }
    }
    eprintln!("searched {} outputs for {} PHI values", outputs.len(), phi.len());
    assert!(leaks.is_empty(), "PHI in output:\n{}", leaks.join("\n"));
}
