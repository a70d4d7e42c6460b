//! The malformed-file corpus (`fixtures/malformed/`): every file has its
//! expected outcome in `fixtures/malformed/manifest.toml` (refused with which
//! reason, or which records are read and rejected), checked through the real
//! binary (`hubsync map`, a dry run of parse + mapping). Each run is a child
//! process with limits: it must not panic, must finish within 10 s, and its
//! peak RSS (`wait4` rusage of that child) must stay under 256 MB.
//!
//! Big and binary files (a 10 MB line, corrupt and lying zips, a sheet
//! declaring a million cells, deep XML) are generated here at test time;
//! the manifest names their generator instead of a file.

mod support;

use support::malformed::*;
use support::repo;

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    case: Vec<Case>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// A file in fixtures/malformed/, or
    file: Option<String>,
    /// a generator below (the file is made in a temp folder).
    generate: Option<String>,
    connector: String,
    /// What the file is and why a hub might send it.
    about: String,
    /// A substring of the refusal reason; absent: the file is not refused.
    refused: Option<String>,
    /// Records read (before any refusal).
    read: Option<u64>,
    /// Milestones produced.
    milestones: Option<u64>,
    /// Rejected records, each `"<locator>: <reason substring>"`.
    #[serde(default)]
    rejected: Vec<String>,
}

// ------------------------------------------------------------------ test

#[test]
fn every_malformed_file_has_its_declared_outcome_within_limits() {
    let dir = repo().join("fixtures/malformed");
    let manifest: Manifest =
        toml::from_str(&std::fs::read_to_string(dir.join("manifest.toml")).expect("manifest"))
            .unwrap_or_else(|e| panic!("manifest.toml: {e}"));
    let ws = workspace();
    let gen_dir = tempfile::tempdir().expect("tempdir");
    // Every committed file is declared.
    let declared: Vec<&str> = manifest.case.iter().filter_map(|c| c.file.as_deref()).collect();
    for e in std::fs::read_dir(&dir).expect("dir").flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n != "manifest.toml" && n != "README.md" {
            assert!(
                declared.contains(&n.as_str()),
                "{n} has no entry in manifest.toml"
            );
        }
    }
    for g in GENERATORS {
        assert!(
            manifest.case.iter().any(|c| c.generate.as_deref() == Some(g)),
            "generator {g} has no entry"
        );
    }
    let mut failures = Vec::new();
    for case in &manifest.case {
        assert!(!case.about.is_empty());
        let (path, label) = match (&case.file, &case.generate) {
            (Some(f), None) => (dir.join(f), f.clone()),
            (None, Some(g)) => (generate(g, gen_dir.path()), format!("<{g}>")),
            _ => panic!("a case has exactly one of file, generate: {case:?}"),
        };
        let o = run_limited(
            ws.path(),
            &[
                "map".as_ref(),
                "--config".as_ref(),
                ws.path().join("config.toml").as_os_str(),
                "--connector".as_ref(),
                case.connector.as_ref(),
                path.as_os_str(),
            ],
        );
        assert_limits(&label, &o);
        eprintln!(
            "{label}: exit {}, {:?}, peak RSS {} MB",
            o.status,
            o.elapsed,
            o.max_rss_kb / 1024
        );
        let lines: Vec<serde_json::Value> = o
            .stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{label}: not JSON ({e}): {l}")))
            .collect();
        let Some(summary) = lines
            .iter()
            .find(|l| l["kind"] == "summary")
            .map(|l| &l["summary"])
        else {
            failures.push(format!("{label}: no summary (exit {}): {}", o.status, o.stderr));
            continue;
        };
        let refused = summary["file_refused"].as_str();
        let rejects: Vec<String> = lines
            .iter()
            .filter(|l| l["kind"] == "reject")
            .map(|l| {
                format!(
                    "{}: {}",
                    l["reject"]["locator"].as_str().unwrap_or(""),
                    l["reject"]["reason"].as_str().unwrap_or("")
                )
            })
            .collect();
        if std::env::var("MALFORMED_PRINT").is_ok() {
            let rj = &rejects;
            eprintln!(
                "OUTCOME {label} refused={refused:?} read={} milestones={} rejected={rj:?}",
                summary["records"]["read"],
                lines.iter().filter(|l| l["kind"] == "milestone").count()
            );
        }
        match (&case.refused, refused) {
            (None, Some(r)) => failures.push(format!("{label}: refused unexpectedly: {r}")),
            (Some(want), None) => failures.push(format!("{label}: not refused (want `{want}`)")),
            (Some(want), Some(r)) if !r.contains(want.as_str()) => {
                failures.push(format!("{label}: refused with `{r}`, want `{want}`"))
            }
            _ => {}
        }
        if let Some(read) = case.read {
            let got = summary["records"]["read"].as_u64().unwrap_or(0);
            if got != read {
                failures.push(format!("{label}: read {got} records, want {read}"));
            }
        }
        if let Some(m) = case.milestones {
            let got = lines.iter().filter(|l| l["kind"] == "milestone").count() as u64;
            if got != m {
                failures.push(format!("{label}: {got} milestones, want {m}"));
            }
        }
        let matches = rejects.len() == case.rejected.len()
            && case.rejected.iter().zip(&rejects).all(|(want, got)| {
                let (loc, why) = want.split_once(": ").unwrap_or((want, ""));
                got.starts_with(&format!("{loc}: ")) && got.contains(why)
            });
        if !matches {
            failures.push(format!("{label}: rejects {rejects:?}, want {:?}", case.rejected));
        }
    }
    assert!(
        failures.is_empty(),
        "outcomes differ from manifest.toml:\n{}",
        failures.join("\n")
    );
}

#[test]
fn the_test_zip_tools_round_trip() {
    let bytes = workbook(&[XROW]).save_to_buffer().expect("xlsx");
    let entries = unzip_stored(&bytes);
    let sheet = entries
        .iter()
        .find(|(n, _)| n == "xl/worksheets/sheet1.xml")
        .expect("sheet");
    assert!(String::from_utf8_lossy(&sheet.1).contains("<sheetData>"));
    let again = unzip_stored(&zip_stored(&entries, None));
    assert_eq!(again, entries);
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
}
