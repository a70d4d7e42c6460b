//! The mapping workbench (issue 5): diagnostics with line and column for
//! each class of mistake, dry runs that write nothing, header drift, DST,
//! and reconciliation.

mod support;

use std::path::Path;
use std::time::Duration;

use hubsync::config::diag::Diagnostic;
use support::{repo, Hub, Receiver};

const CONNECTOR: &str = r#"program = "ACME-ONC"
mapping = "m"
time_zone = "America/New_York"
[source]
kind = "local"
path = "drop"
[format]
kind = "csv"
"#;

const MAPPING: &str = r#"version = 1
[columns]
case_id = { header = "Case ID" }
status = { header = "Status" }
when_ = { header = "When" }

[maps.codes]
entries = { REF = "referral.received", BI = "bv.started" }

[[milestones]]
case_id = "$case_id"
code = "map('codes', $status)"
occurred_at = "date($when_, '%m/%d/%Y')"
[milestones.attributes]
payer = "$status"
"#;

const CONFIG: &str = r#"[pseudonymization]
key_env = "HUBSYNC_PSEUDONYM_KEY"
[[subscribers]]
name = "mfr"
url = "http://127.0.0.1:9/"
secret_env = "HUBSYNC_TEST_SECRET"
"#;

/// Loads a project made of (config, connector, mapping) texts and returns
/// its diagnostics (it must fail).
fn diagnostics(config: &str, connector: &str, mapping: &str, env_ok: bool) -> Vec<Diagnostic> {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    std::fs::create_dir_all(root.join("connectors")).expect("mkdir");
    std::fs::create_dir_all(root.join("mappings")).expect("mkdir");
    std::fs::write(root.join("config.toml"), config).expect("write");
    std::fs::write(root.join("connectors/c.toml"), connector).expect("write");
    std::fs::write(root.join("mappings/m.toml"), mapping).expect("write");
    let env = move |k: &str| -> Option<String> {
        if !env_ok && k == "HUBSYNC_TEST_SECRET" {
            return None;
        }
        Hub::env()(k)
    };
    match hubsync::setup::load_with_env(&root.join("config.toml"), &env) {
        Ok(_) => panic!("expected diagnostics"),
        Err(d) => d.0,
    }
}

/// Asserts exactly one diagnostic, in `file`, at the line and column of
/// `needle` (its first occurrence, offset by `skip` characters), mentioning `what`.
fn assert_at(diags: &[Diagnostic], file: &str, text: &str, needle: &str, skip: usize, what: &str) {
    assert_eq!(diags.len(), 1, "{diags:#?}");
    let d = &diags[0];
    let offset = text
        .find(needle)
        .unwrap_or_else(|| panic!("{needle} not in text"))
        + skip;
    let line = text[..offset].matches('\n').count() + 1;
    let col = offset - text[..offset].rfind('\n').map_or(0, |i| i + 1) + 1;
    assert!(d.path.ends_with(file), "{d}");
    assert_eq!((d.line, d.col), (line, col), "{d}");
    assert!(d.message.contains(what), "expected `{what}` in: {d}");
    assert!(d.to_string().contains('^'), "{d}");
}

/// The stock project with `from` replaced by `to` in the mapping fails with
/// one diagnostic at `needle`, mentioning `what`; returns the diagnostics.
fn mapping_edit_is_diagnosed(from: &str, to: &str, needle: &str, what: &str) -> Vec<Diagnostic> {
    let m = MAPPING.replace(from, to);
    let d = diagnostics(CONFIG, CONNECTOR, &m, true);
    assert_at(&d, "m.toml", &m, needle, 0, what);
    d
}

/// As [`mapping_edit_is_diagnosed`], for an edit of the connector.
fn connector_edit_is_diagnosed(from: &str, to: &str, needle: &str, what: &str) {
    let c = CONNECTOR.replace(from, to);
    let d = diagnostics(CONFIG, &c, MAPPING, true);
    assert_at(&d, "c.toml", &c, needle, 0, what);
}

#[test]
fn toml_syntax_error() {
    mapping_edit_is_diagnosed("version = 1", "version = = 1", "= 1", "");
}

#[test]
fn unknown_key() {
    connector_edit_is_diagnosed("time_zone", "timezone", "timezone", "unknown field `timezone`");
}

#[test]
fn column_not_in_the_declared_header() {
    let d = mapping_edit_is_diagnosed("date($when_,", "date($whne,", "$whne", "unknown column `$whne`");
    assert!(d[0].hint.as_deref().unwrap_or("").contains("$when_"));
}

#[test]
fn unknown_milestone_code() {
    mapping_edit_is_diagnosed(
        "\"bv.started\"",
        "\"bv.startd\"",
        "bv.startd",
        "unknown milestone code `bv.startd`",
    );
}

#[test]
fn unknown_attribute() {
    mapping_edit_is_diagnosed(
        "payer = \"$status\"",
        "payr = \"$status\"",
        "payr",
        "unknown attribute `payr`",
    );
}

#[test]
fn invalid_date_format() {
    mapping_edit_is_diagnosed("'%m/%d/%Y'", "'%m/%d/%K'", "'%m/%d/%K'", "unknown specifier `%K`");
}

#[test]
fn unknown_time_zone() {
    connector_edit_is_diagnosed(
        "America/New_York",
        "America/NewYork",
        "\"America/NewYork\"",
        "unknown time zone",
    );
}

#[test]
fn unreachable_value_map_entry() {
    let m = MAPPING.replace(
        "entries = { REF",
        "ignore_case = true\nentries = { ref = \"bv.started\", REF",
    );
    let d = diagnostics(CONFIG, CONNECTOR, &m, true);
    assert_eq!(d.len(), 1, "{d:#?}");
    assert!(d[0].message.contains("can never be reached"), "{}", d[0]);
    let line = m
        .lines()
        .position(|l| l.contains("entries = { ref"))
        .expect("line")
        + 1;
    assert_eq!(d[0].line, line);
}

#[test]
fn connector_pointing_to_a_missing_mapping() {
    connector_edit_is_diagnosed(
        "mapping = \"m\"",
        "mapping = \"n\"",
        "\"n\"",
        "no mapping named `n`",
    );
}

#[test]
fn secret_environment_variable_not_set() {
    let d = diagnostics(CONFIG, CONNECTOR, MAPPING, false);
    assert_at(
        &d,
        "config.toml",
        CONFIG,
        "\"HUBSYNC_TEST_SECRET\"",
        0,
        "`HUBSYNC_TEST_SECRET` is not set",
    );
}

#[test]
fn expression_error() {
    let m = MAPPING.replace(
        "code = \"map('codes', $status)\"",
        "code = \"map('codes', $status\"",
    );
    let d = diagnostics(CONFIG, CONNECTOR, &m, true);
    assert_eq!(d.len(), 1, "{d:#?}");
    assert!(d[0].message.contains("expected `)`"), "{}", d[0]);
    let line = m.lines().position(|l| l.starts_with("code = ")).expect("line") + 1;
    assert_eq!(d[0].line, line);
}

fn project(dir: &Path, mapping: &str, connector_extra: &str) -> hubsync::setup::Config {
    std::fs::create_dir_all(dir.join("connectors")).expect("mkdir");
    std::fs::create_dir_all(dir.join("mappings")).expect("mkdir");
    std::fs::write(dir.join("config.toml"), CONFIG).expect("write");
    // Top-level keys go before the tables; a table goes at the end.
    let connector = if connector_extra.trim_start().starts_with('[') {
        format!("{CONNECTOR}\n{connector_extra}")
    } else {
        format!("{connector_extra}\n{CONNECTOR}")
    };
    std::fs::write(dir.join("connectors/c.toml"), connector).expect("write");
    std::fs::write(dir.join("mappings/m.toml"), mapping).expect("write");
    hubsync::setup::load_with_env(&dir.join("config.toml"), &Hub::env()).unwrap_or_else(|d| panic!("{d}"))
}

/// Daylight saving: a local time in the spring gap and one in the autumn
/// overlap, under each policy. Output is always RFC 3339 with the offset, and
/// a date-only value stays date-only.
#[test]
fn dst_policies() {
    let mapping = r#"version = 1
[columns]
case_id = { header = "Case ID" }
event = { header = "Event" }
at = { header = "Event Time" }
[[milestones]]
case_id = "$case_id"
code = "'referral.received'"
occurred_at = "datetime($at, '%Y-%m-%d %H:%M:%S')"
"#;
    let data = repo().join("tests/data/dst_events.csv");
    let run = |extra: &str| {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = project(dir.path(), mapping, extra);
        hubsync::pipeline::dry_run(&config, &config.connectors[0], &data).expect("dry run")
    };
    let occurred = |d: &hubsync::pipeline::DryRun| -> Vec<(String, String)> {
        d.milestones
            .iter()
            .map(|(_, c)| (c.case_id.clone(), c.occurred_at.clone()))
            .collect()
    };
    let default = run("");
    let got = occurred(&default);
    // D-5 is date-only: datetime() refuses it (the date-only check is below).
    assert_eq!(
        default
            .rejects
            .iter()
            .map(|r| r.locator.as_str())
            .collect::<Vec<_>>(),
        vec!["line 6"]
    );
    assert!(
        got.contains(&("D-1".into(), "2026-03-08T01:30:00-05:00".into())),
        "{got:?}"
    );
    assert!(
        got.contains(&("D-2".into(), "2026-03-08T03:30:00-04:00".into())),
        "gap shifts forward: {got:?}"
    );
    assert!(
        got.contains(&("D-3".into(), "2026-11-01T01:30:00-04:00".into())),
        "ambiguous takes the earlier: {got:?}"
    );
    assert!(
        got.contains(&("D-4".into(), "2026-07-01T12:00:00-04:00".into())),
        "{got:?}"
    );
    let later = occurred(&run("dst_ambiguous = \"later\""));
    assert!(
        later.contains(&("D-3".into(), "2026-11-01T01:30:00-05:00".into())),
        "{later:?}"
    );
    let strict = run("dst_ambiguous = \"reject\"\ndst_gap = \"reject\"");
    let rejected: Vec<&str> = strict.rejects.iter().map(|r| r.locator.as_str()).collect();
    assert_eq!(
        rejected,
        vec!["line 3", "line 4", "line 6"],
        "{:?}",
        strict.rejects
    );
    assert!(
        strict.rejects[0].reason.contains("does not exist"),
        "{:?}",
        strict.rejects[0]
    );
    assert!(
        strict.rejects[1].reason.contains("ambiguous"),
        "{:?}",
        strict.rejects[1]
    );

    // date() stays date-only: no made-up midnight, no zone shift.
    let date_only = mapping.replace(
        "occurred_at = \"datetime($at, '%Y-%m-%d %H:%M:%S')\"",
        "occurred_at = \"date($at, '%Y-%m-%d %H:%M:%S', '%Y-%m-%d')\"",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let config = project(dir.path(), &date_only, "");
    let d = hubsync::pipeline::dry_run(&config, &config.connectors[0], &data).expect("dry run");
    let last = &d.milestones.last().expect("D-5").1;
    assert_eq!(
        (last.occurred_at.as_str(), last.occurred_precision.as_str()),
        ("2026-07-01", "date")
    );
}

/// Header drift: the extra-column policy decides between mapping the file
/// and refusing it; a duplicated header is always refused.
#[test]
fn header_drift_policies() {
    let mapping = std::fs::read_to_string(repo().join("mappings/acme-hub-status.toml")).expect("mapping");
    let file = repo().join("fixtures/acme-hub/status_drift_extra_column.csv");
    for (policy, refused) in [("ignore", false), ("warn", false), ("reject", true)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = project(
            dir.path(),
            &mapping,
            &format!("[header]\nextra_columns = \"{policy}\"\n"),
        );
        let d = hubsync::pipeline::dry_run(&config, &config.connectors[0], &file).expect("dry run");
        assert_eq!(d.failed.is_some(), refused, "policy {policy}: {:?}", d.failed);
        if refused {
            assert!(d.failed.as_deref().unwrap_or("").contains("Hub Priority"));
            assert!(d.milestones.is_empty(), "a refused file maps nothing");
        } else {
            assert_eq!(d.milestones.len(), 5, "policy {policy}");
        }
    }
}

/// Reconciliation on a file with emitted, unchanged, rejected and filtered
/// records: read = emitted + unchanged + rejected + filtered, in the ledger.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciliation_counts() {
    let rx = Receiver::start().await;
    let hub = Hub::new(&rx.url(), "", "", 1000);
    // Day 1 gives the state; then a file with: 3 changed records (emitted),
    // 1 unchanged, 2 rejected (a bad date, an empty case id) and 1 filtered
    // (an unmapped code under `skip`).
    let mapping = std::fs::read_to_string(hub.root().join("mappings/acme-hub-status.toml"))
        .expect("read")
        .replace(
            "[maps.status_milestone]\non_unmapped = \"reject\"",
            "[maps.status_milestone]\non_unmapped = \"skip\"",
        );
    std::fs::write(hub.root().join("mappings/acme-hub-status.toml"), mapping).expect("write");
    let daemon = hub.start();
    let day1 = repo().join("fixtures/acme-hub/status_20261122.csv");
    hub.drop_file(&day1, "day1.csv");
    hub.wait_drained(Duration::from_secs(20)).await;
    let text = std::fs::read_to_string(&day1).expect("read");
    let mut lines: Vec<String> = text.lines().take(8).map(str::to_string).collect();
    // lines[1..=7] are cases AC-100200..206. Change 3, keep 2, break 2 (+1 skip).
    lines[1] = lines[1].replace("11/02/2026", "11/03/2026");
    lines[2] = lines[2].replace(",BI,", ",BC,");
    lines[3] = lines[3].replace(",BC,11/17/2026", ",BC,11/18/2026");
    lines[6] = lines[6].replace(",SHP,", ",ZZZ,");
    lines[7] = lines[7].replace("AC-100206", "");
    let rejected_line = lines[4].replace(",PAS,11/17/2026", ",PAS,99/99/2026");
    lines[4] = rejected_line;
    lines.push(String::new());
    let day2 = hub.root().join("day2.csv");
    std::fs::write(&day2, lines.join("\r\n") + "\r\n").expect("write");
    hub.drop_file(&day2, "day2.csv");
    hub.wait_drained(Duration::from_secs(20)).await;
    let store = hub.store().await;
    let f = store.files(1).await.expect("files").remove(0);
    assert_eq!(f.name, "day2.csv");
    let c = f.counts;
    assert!(c.reconciles(), "{c:?}");
    assert_eq!(
        (c.read, c.emitted, c.unchanged, c.rejected, c.filtered),
        (7, 3, 1, 2, 1),
        "{c:?}"
    );
    daemon.stop().await;
}

/// `hubsync map` is a dry run: the store file is byte-identical afterwards,
/// and nothing is moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_writes_nothing() {
    let rx = Receiver::start().await;
    let hub = Hub::new(&rx.url(), "", "", 1000);
    let daemon = hub.start();
    hub.drop_file(&repo().join("fixtures/acme-hub/status_20261122.csv"), "day1.csv");
    hub.wait_drained(Duration::from_secs(20)).await;
    daemon.stop().await;
    let db = hub.root().join("data/hubsync.db");
    let before = std::fs::read(&db).expect("db");
    let day2 = repo().join("fixtures/acme-hub/status_20261123.csv");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hubsync"))
        .args(["map", "--connector", "acme-hub", "--config"])
        .arg(&hub.config)
        .arg(&day2)
        .env("HUBSYNC_PSEUDONYM_KEY", support::PSEUDONYM_KEY)
        .env("HUBSYNC_TEST_SECRET", support::SECRET)
        .output()
        .expect("run map");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let statuses: Vec<&str> = lines
        .iter()
        .filter(|l| l["kind"] == "milestone")
        .map(|l| l["entry"]["status"].as_str().expect("status"))
        .collect();
    assert_eq!(statuses.iter().filter(|s| **s == "new").count(), 3, "{stdout}");
    assert_eq!(statuses.iter().filter(|s| **s == "changed").count(), 0);
    let summary = lines.last().expect("summary");
    assert_eq!(summary["summary"]["records"]["emitted"], 3, "{summary}");
    assert!(lines.iter().any(|l| l["kind"] == "coverage"));
    let after = std::fs::read(&db).expect("db");
    assert!(before == after, "the dry run changed the database file");
    assert!(day2.exists());
    let store = hub.store().await;
    assert_eq!(
        store.files(10).await.expect("files").len(),
        1,
        "no ledger row for a dry run"
    );
}

// ------------------------------------- honest exit codes and coverage (issue 13)

/// Format keys of another kind (`delimiter`, `encoding`, `skip_lines`,
/// `quote` on an Excel connector; `no_records` on a CSV one) are refused by
/// `check`, each at its position.
#[test]
fn format_keys_of_another_kind_are_refused_with_their_position() {
    for (key, value) in [
        ("delimiter", "\";\""),
        ("encoding", "\"windows-1252\""),
        ("skip_lines", "2"),
        ("quote", "\"'\""),
    ] {
        let c = CONNECTOR.replace("kind = \"csv\"", &format!("kind = \"excel\"\n{key} = {value}"));
        let d = diagnostics(CONFIG, &c, MAPPING, true);
        assert_at(
            &d,
            "c.toml",
            &c,
            &format!("{key} = {value}"),
            key.len() + 3,
            &format!("`{key}` applies to kind = \"csv\", not \"excel\""),
        );
    }
    for (key, value, owner) in [
        ("no_records", "\"warn\"", "xml"),
        ("include_hidden_sheets", "true", "excel"),
        ("fill_merged", "[\"Case ID\"]", "excel"),
    ] {
        let c = CONNECTOR.replace("kind = \"csv\"", &format!("kind = \"csv\"\n{key} = {value}"));
        let d = diagnostics(CONFIG, &c, MAPPING, true);
        assert_at(
            &d,
            "c.toml",
            &c,
            &format!("{key} = {value}"),
            key.len() + 3,
            &format!("`{key}` applies to kind = \"{owner}\", not \"csv\""),
        );
    }
}

fn xlsx_hub() -> Hub {
    let hub = Hub::new("http://127.0.0.1:9/", "", "", 1000);
    std::fs::write(
        hub.root().join("connectors/acme-xlsx.toml"),
        "program = \"ACME-ONC\"\nmapping = \"acme-hub-status\"\ntime_zone = \"America/New_York\"\n\
         [source]\nkind = \"local\"\npath = \"drop-xlsx\"\n[format]\nkind = \"excel\"\n",
    )
    .expect("write connector");
    hub
}

fn run(hub: &Hub, args: &[&str]) -> std::process::Output {
    hub.command(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run hubsync")
}

/// A workbook refused part-way (calamine panics on row 4, after rows 2 and
/// 3 were read): `map` reports no milestone from it (what `run` would commit:
/// nothing), exits non-zero and says why in one line, with no panic message
/// or backtrace; `parse` also exits non-zero and names the file.
#[test]
fn a_workbook_refused_part_way_maps_nothing_and_fails_the_command() {
    let hub = xlsx_hub();
    let gen = tempfile::tempdir().expect("tempdir");
    let file = support::malformed::generate("shared_string_out_of_range", gen.path());
    let f = file.to_str().expect("utf-8 path");
    let out = run(&hub, &["map", "--connector", "acme-xlsx", f]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        !out.status.success(),
        "exit 0 on a refused file:\n{stdout}\n{stderr}"
    );
    assert!(
        !stdout.lines().any(|l| l.contains("\"kind\":\"milestone\"")),
        "milestones from a refused file:\n{stdout}"
    );
    let summary = stdout.lines().last().expect("a summary line");
    assert!(
        summary.contains("\"file_refused\":\"shared_string_out_of_range.xlsx"),
        "{summary}"
    );
    assert!(summary.contains("\"emitted\":0"), "{summary}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one clear line:\n{stderr}");
    assert!(
        lines[0].starts_with("error: ")
            && lines[0].contains("would be refused")
            && lines[0].contains("shared-string index"),
        "{stderr}"
    );

    let out = run(&hub, &["parse", "--connector", "acme-xlsx", f]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("1 file(s) refused") && stderr.contains("shared_string_out_of_range.xlsx"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    // A good file still exits 0.
    let good = repo().join("fixtures/acme-hub/status_20261122.csv");
    let out = run(
        &hub,
        &["map", "--connector", "acme-hub", good.to_str().expect("utf-8")],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Coverage: an Excel connector's sheets each have their own mapping, and
/// their maps may share a name; each map is reported under its mapping, and
/// a code counts once per record however often the record looks it up.
/// Before, the PA sheet's `codes` map was not listed and its codes were
/// credited to (or missing from) the other mapping's `codes`.
#[test]
fn coverage_is_per_mapping_and_per_record() {
    let hub = Hub::new("http://127.0.0.1:9/", "", "", 1000);
    let root = hub.root();
    std::fs::write(
        root.join("connectors/wb.toml"),
        "program = \"ACME-ONC\"\nmapping = \"refs\"\ntime_zone = \"America/New_York\"\n\
         [source]\nkind = \"local\"\npath = \"drop-wb\"\n[format]\nkind = \"excel\"\n\
         [[format.sheets]]\nname = \"Referrals\"\n[[format.sheets]]\nname = \"PA\"\nmapping = \"pa\"\n",
    )
    .expect("connector");
    let mapping = |code_col: &str, entries: &str, extra: &str| {
        format!(
            "version = 1\n[columns]\ncase_id = {{ header = \"Case\" }}\ncode = {{ header = \"{code_col}\" }}\n\
             when_ = {{ header = \"When\" }}\n[maps.codes]\nentries = {{ {entries} }}\n\
             [[milestones]]\ncase_id = \"$case_id\"\ncode = \"map('codes', $code)\"\n\
             occurred_at = \"date($when_, '%Y-%m-%d')\"\n{extra}"
        )
    };
    std::fs::write(
        root.join("mappings/refs.toml"),
        mapping(
            "Status",
            "REF = \"referral.received\", Approved = \"pa.pended\"",
            "",
        ),
    )
    .expect("refs");
    std::fs::write(
        root.join("mappings/pa.toml"),
        mapping(
            "Decision",
            "Approved = \"pa.approved\", Denied = \"pa.denied\"",
            "[milestones.attributes]\nx_again = \"map('codes', $code)\"\n",
        ),
    )
    .expect("pa");
    let file = root.join("wb.xlsx");
    let mut wb = rust_xlsxwriter::Workbook::new();
    let refs = wb.add_worksheet().set_name("Referrals").expect("sheet");
    refs.write(0, 0, "Case").expect("cell");
    refs.write(0, 1, "Status").expect("cell");
    refs.write(0, 2, "When").expect("cell");
    refs.write(1, 0, "C-1").expect("cell");
    refs.write(1, 1, "REF").expect("cell");
    refs.write(1, 2, "2026-11-20").expect("cell");
    let pa = wb.add_worksheet().set_name("PA").expect("sheet");
    pa.write(0, 0, "Case").expect("cell");
    pa.write(0, 1, "Decision").expect("cell");
    pa.write(0, 2, "When").expect("cell");
    pa.write(1, 0, "C-1").expect("cell");
    pa.write(1, 1, "Approved").expect("cell");
    pa.write(1, 2, "2026-11-21").expect("cell");
    wb.save(&file).expect("save");

    let out = run(&hub, &["map", "--connector", "wb", file.to_str().expect("utf-8")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let coverage: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
        .filter(|l| l["kind"] == "coverage")
        .map(|l| l["coverage"].clone())
        .collect();
    let of = |mapping: &str| {
        coverage
            .iter()
            .find(|c| c["mapping"] == mapping && c["map"] == "codes")
            .unwrap_or_else(|| panic!("no coverage for {mapping}: {coverage:?}"))
    };
    let pa = of("pa");
    assert_eq!(pa["used"], serde_json::json!({"Approved": 1}), "{pa}");
    assert_eq!(pa["unused"], serde_json::json!(["Denied"]), "{pa}");
    let refs = of("refs");
    assert_eq!(refs["used"], serde_json::json!({"REF": 1}), "{refs}");
    assert_eq!(refs["unused"], serde_json::json!(["Approved"]), "{refs}");
}

/// Shifted columns put a date of birth where the status code belongs: the
/// coverage's unmapped codes show its shape, never the value.
#[test]
fn unmapped_codes_are_masked_by_shape() {
    let hub = Hub::new("http://127.0.0.1:9/", "", "", 1000);
    let text = std::fs::read_to_string(repo().join("fixtures/acme-hub/status_20261122.csv")).expect("read");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    // Header: Case ID,Patient ID,Patient Last Name,Patient DOB,Status Code,...
    // One record shifted one column left from DOB on: DOB lands in Status Code.
    let fields: Vec<&str> = lines[1].split(',').collect();
    let mut shifted: Vec<&str> = fields[..3].to_vec();
    shifted.extend(["ZZ", "02/29/1952"]);
    shifted.extend(&fields[5..]);
    lines[1] = shifted.join(",");
    let file = hub.root().join("shifted.csv");
    std::fs::write(&file, lines.join("\n") + "\n").expect("write");
    let out = run(
        &hub,
        &["map", "--connector", "acme-hub", file.to_str().expect("utf-8")],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("02/29/1952"), "a DOB verbatim:\n{stdout}");
    assert!(
        stdout.contains("\"unmapped\":{\"<2 digits/2 digits/4 digits>\":1}"),
        "{stdout}"
    );
    let out = run(
        &hub,
        &[
            "map",
            "--connector",
            "acme-hub",
            "--format",
            "table",
            file.to_str().expect("utf-8"),
        ],
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        !table.contains("02/29/1952") && table.contains("unmapped codes: <2 digits/2 digits/4 digits>×1"),
        "{table}"
    );
}

/// `fill_merged` names headers the mapping reads: a typo is a diagnostic,
/// not a fill that silently never happens.
#[test]
fn fill_merged_names_a_header_of_the_mapping() {
    let c = CONNECTOR.replace("kind = \"csv\"", "kind = \"excel\"\nfill_merged = [\"Case Idd\"]");
    let d = diagnostics(CONFIG, &c, MAPPING, true);
    assert_at(
        &d,
        "c.toml",
        &c,
        "[\"Case Idd\"]",
        0,
        "`fill_merged` names `Case Idd`, which is not a header of mapping `m`",
    );
}

/// `hubsync test`: a mapping test whose expected output is the refusal
/// passes (the refusal is what it tests), and stderr names each refused
/// input; a refusal the expected output does not declare fails the run.
#[test]
fn mapping_tests_name_refused_inputs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    for sub in ["connectors", "mappings", "mappings/tests"] {
        std::fs::create_dir_all(root.join(sub)).expect("mkdir");
        for e in std::fs::read_dir(repo().join(sub)).expect("read dir").flatten() {
            if e.path().is_file() {
                std::fs::copy(e.path(), root.join(sub).join(e.file_name())).expect("copy");
            }
        }
    }
    std::fs::copy(repo().join("config.example.toml"), root.join("config.toml")).expect("config");
    // Inputs are relative to the test files: point them at the repo's fixtures.
    for e in std::fs::read_dir(root.join("mappings/tests"))
        .expect("tests")
        .flatten()
    {
        if e.path().extension().is_some_and(|x| x == "toml") {
            let t = std::fs::read_to_string(e.path()).expect("read");
            let fixed = t.replace("../../fixtures/", &format!("{}/fixtures/", repo().display()));
            std::fs::write(e.path(), fixed).expect("write");
        }
    }
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_hubsync"))
            .args(["test", "--config"])
            .arg(root.join("config.toml"))
            .env("HUBSYNC_PSEUDONYM_KEY", support::PSEUDONYM_KEY)
            .env("HUBSYNC_LOCAL_SECRET", support::SECRET)
            .output()
            .expect("run test")
    };
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{}\n{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        stderr.contains("excel-summit_corrupt: input refused, as expected:"),
        "{stderr}"
    );
    // Expect a good output from the corrupt workbook: the refusal is now a failure.
    let good = std::fs::read_to_string(root.join("mappings/tests/excel-summit_weekly.expected.jsonl"))
        .expect("read");
    std::fs::write(
        root.join("mappings/tests/excel-summit_corrupt.expected.jsonl"),
        good,
    )
    .expect("write");
    let out = run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("excel-summit_corrupt: input refused:"),
        "{stderr}"
    );
    assert!(stderr.contains("1 mapping test(s) failed"), "{stderr}");
}

/// The shipped PA-decision rules split on `x_review_type`, which the 278
/// mapping reads from UM06: an expedited review (U) arms the 72-hour rule,
/// a standard one (no UM06) the 7-day rule; never both, never neither.
#[test]
fn the_278_review_type_picks_the_pa_decision_window() {
    let journey_of = |fixture: &str| -> Vec<(String, String)> {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_hubsync"))
            .args(["map", "--config"])
            .arg(repo().join("config.example.toml"))
            .args(["--connector", "payer-278"])
            .arg(repo().join("fixtures/x12").join(fixture))
            .env("HUBSYNC_PSEUDONYM_KEY", support::PSEUDONYM_KEY)
            .env("HUBSYNC_LOCAL_SECRET", support::SECRET)
            .output()
            .expect("run map");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["kind"] == "journey")
            .map(|v| {
                let j = &v["journey"];
                (
                    j["rule"].as_str().unwrap_or("").to_string(),
                    j["case_id"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    };
    assert_eq!(
        journey_of("278-pended-urgent.x12"),
        [(
            "pa-decision-overdue-urgent".to_string(),
            "TRK-PEND-URGENT-1".to_string()
        )]
    );
    assert_eq!(
        journey_of("278-pended.x12"),
        [(
            "pa-decision-overdue-standard".to_string(),
            "TRK-PEND-1".to_string()
        )]
    );
}
