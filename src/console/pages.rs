//! The console's pages, as compile-time maud templates. Every page says in
//! plain words what it shows and, when empty, what to do; every time is
//! printed as `YYYY-MM-DD HH:MM UTC` with its age; every status has a word
//! beside its colour.

use std::collections::BTreeMap;

use maud::{html, Markup, DOCTYPE};

use super::chart::{self, Series};
use super::session::Current;
use super::ReplayForm;
use crate::admin::SubscriberView;
use crate::outbox::DeliveryStatus;
use crate::setup::{Connector, Format};
use crate::source::Source;
use crate::store::{
    now_ms, AttemptTally, AuditEntry, CaseRef, DeadLetter, FileStatus, FileSummary, Latency, MessageRow,
    MissingDrop, RejectRow, ReplayCount,
};

/// A file page lists at most this many deltas.
pub const MAX_DELTAS: usize = 500;
/// A subscriber page lists at most this many dead letters.
pub const MAX_DEAD_LETTERS: usize = 200;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Nav {
    Feeds,
    Subscribers,
    Cases,
    Trends,
    Activity,
    None,
}

// ------------------------------------------------------------ helpers

/// Percent-encodes a path segment or query value.
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `2026-11-22 23:40 UTC`.
pub fn utc(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).map_or_else(
        || "unknown time".to_string(),
        |t| t.format("%Y-%m-%d %H:%M UTC").to_string(),
    )
}

/// A duration in words: `45 s`, `12 min`, `3 h 5 min`, `4 days`.
pub fn span(secs: f64) -> String {
    let s = secs.max(0.0) as i64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        3600..=86_399 => match (s % 3600) / 60 {
            0 => format!("{} h", s / 3600),
            m => format!("{} h {m} min", s / 3600),
        },
        _ => match s / 86_400 {
            1 => "1 day".to_string(),
            d => format!("{d} days"),
        },
    }
}

/// A time with its age: `2026-11-22 23:40 UTC (3 h ago)`.
fn when(ms: i64) -> Markup {
    let age = (now_ms() - ms) as f64 / 1000.0;
    let iso = chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    html! {
        time datetime=(iso) { (utc(ms)) }
        @if age >= 0.0 { " " span.ago { "(" (span(age)) " ago)" } }
    }
}

fn latency_text(ms: i64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0).replace(".0 s", " s")
    }
}

/// What a status looks like: a colour class and the word that says it.
#[derive(Clone, Copy)]
enum Tone {
    Ok,
    Warn,
    Bad,
    Info,
    Muted,
}

fn badge(tone: Tone, text: &str) -> Markup {
    let class = match tone {
        Tone::Ok => "badge ok",
        Tone::Warn => "badge warn",
        Tone::Bad => "badge bad",
        Tone::Info => "badge info",
        Tone::Muted => "badge muted",
    };
    html! { span class=(class) { (text) } }
}

fn file_badge(s: FileStatus) -> Markup {
    match s {
        FileStatus::Done => badge(Tone::Ok, "Done"),
        FileStatus::Processing => badge(Tone::Info, "Processing"),
        FileStatus::Failed => badge(Tone::Bad, "Refused"),
    }
}

fn delivery_badge(s: DeliveryStatus) -> Markup {
    match s {
        DeliveryStatus::Delivered => badge(Tone::Ok, "Delivered"),
        DeliveryStatus::Pending => badge(Tone::Info, "Pending"),
        DeliveryStatus::Failed => badge(Tone::Bad, "Failed (dead letter)"),
        DeliveryStatus::Coalesced => badge(Tone::Muted, "Superseded, not sent"),
    }
}

/// `pa.info_requested` → `Prior authorization: info requested`.
pub fn milestone_label(code: &str) -> String {
    let (area, event) = code.split_once('.').unwrap_or((code, ""));
    let area = match area {
        "referral" => "Referral",
        "enrollment" => "Enrollment",
        "consent" => "Consent",
        "intake" => "Intake",
        "bv" => "Benefit verification",
        "pa" => "Prior authorization",
        "appeal" => "Appeal",
        "copay" => "Copay assistance",
        "pap" => "Patient assistance",
        "bridge" => "Bridge supply",
        "triage" => "Triage",
        "sp" => "Specialty pharmacy",
        "fill" => "Fill",
        "dispense" => "Dispense",
        "refill" => "Refill",
        "site_of_care" => "Site of care",
        "patient" => "Patient",
        "therapy" => "Therapy",
        "case" => "Case",
        "adverse_event" => "Adverse event",
        "feed" => "Feed",
        other => other,
    };
    if event.is_empty() {
        area.to_string()
    } else {
        format!("{area}: {}", event.replace('_', " "))
    }
}

fn short_sha(sha: &str) -> String {
    if sha.len() > 12 {
        format!("{}…", &sha[..12])
    } else {
        sha.to_string()
    }
}

fn format_label(f: &Format) -> &'static str {
    match f {
        Format::Csv(_) => "CSV",
        Format::Excel(_) => "Excel",
        Format::X12(_) => "X12",
        Format::Xml(_) => "XML",
    }
}

fn source_label(s: &Source) -> String {
    match s {
        Source::Local(l) => format!("drop folder {}", l.path.display()),
        Source::Sftp(s) => format!("SFTP {}:{}", s.host, s.path),
    }
}

fn case_href(program: &str, case_id: &str) -> String {
    format!("/console/cases?program={}&case_id={}", enc(program), enc(case_id))
}

/// A delivery's last answer in words: the error says the status already
/// when there is one.
fn last_answer(status: Option<i64>, error: Option<&str>) -> String {
    match (status, error) {
        (_, Some(e)) => e.to_string(),
        (Some(s), None) => format!("HTTP {s}"),
        (None, None) => "no answer recorded".to_string(),
    }
}

/// A reject reason with the digits of quoted values masked: a reason may
/// quote the bad value, and a bad value in a patient column (an id, a date
/// of birth) must not reach the page. Codes and formats stay readable.
pub fn masked_reason(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len());
    let mut quoted = false;
    for ch in reason.chars() {
        match ch {
            '\'' => {
                quoted = !quoted;
                out.push(ch);
            }
            c if quoted && c.is_ascii_digit() => out.push('#'),
            c => out.push(c),
        }
    }
    out
}

fn csrf_field(current: &Current) -> Markup {
    html! { input type="hidden" name="csrf" value=(current.csrf); }
}

// ------------------------------------------------------------ layout

fn layout(current: Option<&Current>, nav: Nav, title: &str, refresh: bool, body: Markup) -> Markup {
    let item = |n: Nav, href: &str, label: &str| {
        html! {
            li { a href=(href) aria-current=[(n == nav).then_some("page")] { (label) } }
        }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) " · hubsync console" }
                link rel="stylesheet" href="/console/static/console.css";
                script src="/console/static/console.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to the content" }
                header.top {
                    div.bar {
                        a.brand href="/console/feeds" { "hubsync" span { " console" } }
                        @if let Some(cur) = current {
                            nav aria-label="Sections" {
                                ul {
                                    (item(Nav::Feeds, "/console/feeds", "Feeds"))
                                    (item(Nav::Subscribers, "/console/subscribers", "Subscribers"))
                                    (item(Nav::Cases, "/console/cases", "Cases"))
                                    (item(Nav::Trends, "/console/trends", "Trends"))
                                    (item(Nav::Activity, "/console/activity", "Activity"))
                                }
                            }
                            form.who method="post" action="/console/logout" {
                                span { "Signed in as " strong { (cur.operator) } }
                                (csrf_field(cur))
                                button.link type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main #main data-refresh=[refresh.then_some("15")] {
                    @if let Some(msg) = current.and_then(|c| c.flash.as_deref()) {
                        p.flash role="status" { (msg) }
                    }
                    (body)
                }
                footer {
                    "All times are UTC. Patients appear only as pseudonymous references; names, dates of birth and hub patient ids never reach this console."
                    @if refresh { " " span #refreshed { "This page refreshes itself every 15 s." } }
                }
            }
        }
    }
}

pub fn error_page(title: &str, detail: &str) -> Markup {
    layout(
        None,
        Nav::None,
        title,
        false,
        html! {
            h1 { (title) }
            p { (detail) }
            p { a href="/console/feeds" { "Back to the console" } }
        },
    )
}

pub fn login(csrf: &str, message: Option<&str>, error: Option<&str>, operator: &str) -> Markup {
    layout(
        None,
        Nav::None,
        "Log in",
        false,
        html! {
            section.login {
                h1 { "Log in to the hubsync console" }
                p { "The console shows every feed, subscriber and case this hubsync handles, and lets you replay webhooks. Your name is recorded with each action you take." }
                @if let Some(m) = message { p.flash role="status" { (m) } }
                @if let Some(e) = error { p.alert role="alert" { (e) } }
                form method="post" action="/console/login" {
                    input type="hidden" name="csrf" value=(csrf);
                    label for="operator" { "Your name" }
                    input #operator name="operator" type="text" required maxlength="64" autocomplete="name" value=(operator);
                    label for="token" { "Admin token" }
                    input #token name="token" type="password" required autocomplete="current-password";
                    p.hint { "The admin API's bearer token: the value of the environment variable that " code { "token_env" } " names in the " code { "[admin]" } " table of the config." }
                    button.primary type="submit" { "Log in" }
                }
            }
        },
    )
}

// ------------------------------------------------------------ feeds

fn counts_cells(f: &FileSummary) -> Markup {
    let c = &f.file.counts;
    html! {
        td.num { (c.read) }
        td.num { (c.emitted) }
        td.num { (c.unchanged) }
        td.num { (c.rejected) }
        td.num { (c.filtered) }
        td.num { (c.deltas) }
        td {
            @match f.file.status {
                FileStatus::Done if c.reconciles() => (badge(Tone::Ok, "Yes")),
                FileStatus::Done => (badge(Tone::Bad, "No")),
                FileStatus::Processing => span.muted { "in progress" },
                FileStatus::Failed => span.muted { "—" },
            }
        }
    }
}

fn counts_head() -> Markup {
    heads(&[
        Num("Read"),
        Num("Emitted"),
        Num("Unchanged"),
        Num("Rejected"),
        Num("Filtered"),
        Num("Deltas"),
        Text("Reconciles"),
    ])
}

/// A column heading; numeric columns are right-aligned like their cells.
enum Col {
    Text(&'static str),
    Num(&'static str),
}
use Col::{Num, Text};

/// A table's column headings, in order.
fn heads(cols: &[Col]) -> Markup {
    html! {
        @for c in cols {
            @match c {
                Text(t) => th scope="col" { (t) },
                Num(t) => th.num scope="col" { (t) },
            }
        }
    }
}

fn missing_table(missing: &[MissingDrop], latest: &BTreeMap<&str, i64>) -> Markup {
    html! {
        table {
            thead { tr { (heads(&[Text("Feed"), Text("Expected by"), Text("Noticed"), Text("Now"), Text("Subscribers told")])) } }
            tbody {
                @for m in missing {
                    tr {
                        td { a href={ "/console/feeds/" (enc(&m.connector)) } { (m.connector) } }
                        td { (utc(m.expected_by_ms)) }
                        td { (utc(m.detected_at_ms)) }
                        td {
                            @match latest.get(m.connector.as_str()).filter(|t| **t > m.expected_by_ms) {
                                Some(t) => { (badge(Tone::Warn, "Late")) " a file came at " (utc(*t)) }
                                None => { (badge(Tone::Bad, "Missing")) " no file since" }
                            }
                        }
                        td { @if m.webhook_id.is_some() { "Yes (feed.missing)" } @else { "No" } }
                    }
                }
            }
        }
    }
}

pub fn feeds(
    current: &Current,
    latest: &[(&Connector, Option<FileSummary>)],
    failed: &[FileSummary],
    missing: &[MissingDrop],
) -> Markup {
    let arrivals: BTreeMap<&str, i64> = latest
        .iter()
        .filter_map(|(c, f)| f.as_ref().map(|f| (c.name.as_str(), f.started_at_ms)))
        .collect();
    layout(
        Some(current),
        Nav::Feeds,
        "Feeds",
        true,
        html! {
            h1 { "Feeds" }
            p.lede { "Each feed is one hub connector. A healthy feed has its latest file done, and every row read is accounted for: emitted, unchanged, rejected or filtered." }
            @if latest.is_empty() {
                p.empty { "No connector is configured. Add a connector file to the connectors folder and restart hubsync." }
            } @else {
                div.scroll { table {
                    thead { tr { (heads(&[Text("Feed"), Text("Latest file"), Text("Arrived"), Text("Status")])) (counts_head()) } }
                    tbody {
                        @for (c, f) in latest {
                            tr {
                                th scope="row" {
                                    a href={ "/console/feeds/" (enc(&c.name)) } { (c.name) }
                                    div.sub { (c.program) " · " (format_label(&c.format)) }
                                }
                                @match f {
                                    Some(f) => {
                                        td { a href={ "/console/files/" (f.file.id) } { (f.file.name) } }
                                        td { (when(f.started_at_ms)) }
                                        td { (file_badge(f.file.status)) }
                                        (counts_cells(f))
                                    }
                                    None => {
                                        td colspan="10" .empty-cell { "No file yet. hubsync is watching the " (source_label(&c.source)) "; the first file the hub drops appears here." }
                                    }
                                }
                            }
                        }
                    }
                } }
            }
            h2 { "Files that need attention" }
            @if failed.is_empty() {
                p.empty { "No file was refused in the last 30 days. A refused file (wrong header, unreadable, too many bad rows) is moved to the error folder and listed here with the reason." }
            } @else {
                p { "These files were refused as a whole and moved to the error folder. Fix the cause with the hub, then drop the file again." }
                div.scroll { table {
                    thead { tr { (heads(&[Text("Feed"), Text("File"), Text("Arrived"), Text("Reason")])) } }
                    tbody {
                        @for f in failed {
                            tr {
                                td { (f.file.connector) }
                                td { a href={ "/console/files/" (f.file.id) } { (f.file.name) } }
                                td { (when(f.started_at_ms)) }
                                td.reason { (f.file.error.as_deref().unwrap_or("no reason recorded")) }
                            }
                        }
                    }
                } }
            }
            h2 { "Missed and late drops" }
            @if missing.is_empty() {
                p.empty { "No deadline was missed. A connector with an " code { "[expect]" } " table has a daily deadline; a file that does not arrive by then is listed here." }
            } @else {
                div.scroll { (missing_table(missing, &arrivals)) }
            }
        },
    )
}

pub fn feed(
    current: &Current,
    c: &Connector,
    files: &[FileSummary],
    missing: &[MissingDrop],
    trend_since_ms: i64,
) -> Markup {
    let arrivals: BTreeMap<&str, i64> = files
        .first()
        .map(|f| (c.name.as_str(), f.started_at_ms))
        .into_iter()
        .collect();
    let mut recent: Vec<FileSummary> = files
        .iter()
        .filter(|f| f.started_at_ms >= trend_since_ms)
        .cloned()
        .collect();
    recent.reverse();
    layout(
        Some(current),
        Nav::Feeds,
        &c.name,
        true,
        html! {
            p.crumbs { a href="/console/feeds" { "Feeds" } " › " (c.name) }
            h1 { "Feed " (c.name) }
            dl.facts {
                dt { "Program" } dd { (c.program) }
                dt { "Format" } dd { (format_label(&c.format)) }
                dt { "Source" } dd { (source_label(&c.source)) }
                dt { "Deadline" } dd {
                    @match &c.expect {
                        Some(e) => { "daily by " (e.daily_by.format("%H:%M")) " (" (c.time.tz.name()) ")" }
                        None => { "none set" }
                    }
                }
            }
            h2 { "Rows and deltas per file, last 30 days" }
            (feed_chart(&c.name, &recent))
            h2 { "Files, newest first" }
            @if files.is_empty() {
                p.empty { "No file yet. hubsync is watching the " (source_label(&c.source)) "; the first file the hub drops appears here." }
            } @else {
                div.scroll { table {
                    thead { tr { (heads(&[Text("File"), Text("Arrived"), Text("Status")])) (counts_head()) } }
                    tbody {
                        @for f in files {
                            tr {
                                td { a href={ "/console/files/" (f.file.id) } { (f.file.name) } }
                                td { (when(f.started_at_ms)) }
                                td { (file_badge(f.file.status)) }
                                (counts_cells(f))
                            }
                        }
                    }
                } }
            }
            @if !missing.is_empty() {
                h2 { "Missed and late drops" }
                div.scroll { (missing_table(missing, &arrivals)) }
            }
        },
    )
}

fn feed_chart(name: &str, files: &[FileSummary]) -> Markup {
    if files.is_empty() {
        return html! { p.empty { "No file arrived in the last 30 days, so there is nothing to chart." } };
    }
    let day = |f: &FileSummary| f.started_at_ms.div_euclid(super::DAY_MS);
    // Day labels, or day and time when a day has several files.
    let several = files.windows(2).any(|w| day(&w[0]) == day(&w[1]));
    let fmt = if several { "%m-%d %H:%M" } else { "%m-%d" };
    let labels: Vec<String> = files
        .iter()
        .map(|f| {
            chrono::DateTime::from_timestamp_millis(f.started_at_ms)
                .map_or_else(String::new, |t| t.format(fmt).to_string())
        })
        .collect();
    let rows: Vec<f64> = files.iter().map(|f| f.file.counts.read as f64).collect();
    let deltas: Vec<f64> = files.iter().map(|f| f.file.counts.deltas as f64).collect();
    let last = files.last().map(|f| &f.file.counts);
    let summary = format!(
        "{name}: {} file(s) in the last 30 days; the latest had {} rows and {} deltas.",
        files.len(),
        last.map_or(0, |c| c.read),
        last.map_or(0, |c| c.deltas)
    );
    chart::bars(
        &summary,
        &labels,
        &[
            Series {
                name: "rows read",
                class: "s1",
                values: rows,
            },
            Series {
                name: "deltas sent",
                class: "s2",
                values: deltas,
            },
        ],
        "",
    )
}

pub fn file(current: &Current, f: &FileSummary, rejects: &[RejectRow], deltas: &[MessageRow]) -> Markup {
    let c = &f.file.counts;
    layout(
        Some(current),
        Nav::Feeds,
        &f.file.name,
        false,
        html! {
            p.crumbs {
                a href="/console/feeds" { "Feeds" } " › "
                a href={ "/console/feeds/" (enc(&f.file.connector)) } { (f.file.connector) } " › "
                (f.file.name)
            }
            h1 { "File " (f.file.name) " " (file_badge(f.file.status)) }
            dl.facts {
                dt { "Feed" } dd { (f.file.connector) }
                dt { "Arrived" } dd { (when(f.started_at_ms)) }
                dt { "Finished" } dd { @match f.finished_at_ms { Some(t) => (when(t)), None => "not yet" } }
                dt { "Size" } dd { (f.size) " bytes" }
                dt { "SHA-256" } dd { code title=(f.file.sha256) { (short_sha(&f.file.sha256)) } }
            }
            // A done file's note holds its warnings (envelope versions that
            // disagree, hidden sheets skipped, …), one per line; a failed
            // file's is why it was refused.
            @let warnings = crate::pipeline::file_warnings(&f.file);
            @for w in &warnings {
                p.alert role="status" { strong { "Warning: " } (w) }
            }
            @if let (Some(e), false) = (&f.file.error, f.file.status == FileStatus::Done) {
                p.alert role="alert" { strong { "Refused: " } (e) }
            }
            p.lede {
                "Read " (c.read) " rows: " (c.emitted) " produced milestones (" (c.deltas) " deltas sent), "
                (c.unchanged) " unchanged since the last file, " (c.rejected) " rejected, " (c.filtered) " filtered out"
                @if !warnings.is_empty() { "; accepted with " (warnings.len()) " warning(s)" }
                ". "
                @if c.reconciles() { "Every row is accounted for." } @else { strong { "The counts do not add up: report this." } }
            }
            h2 { "Rejected rows (" (rejects.len()) ")" }
            @if rejects.is_empty() {
                p.empty { "No row was rejected." }
            } @else {
                p { "Each rejected row is quarantined with its position and reason; the rest of the file went on. Values are not shown here: open the file's " code { ".rejects.jsonl" } " beside it in the archive folder." }
                div.scroll { table {
                    thead { tr { (heads(&[Text("Position"), Text("Column"), Text("Reason")])) } }
                    tbody {
                        @for r in rejects {
                            tr { td { (r.locator) } td { (r.column.as_deref().unwrap_or("—")) } td.reason { (masked_reason(&r.reason)) } }
                        }
                    }
                } }
            }
            h2 { "Deltas sent (" (c.deltas) ")" }
            @if deltas.is_empty() {
                p.empty { "This file changed nothing: no milestone was new or different." }
            } @else {
                @if (c.deltas as usize) > deltas.len() { p { "The first " (deltas.len()) " are listed." } }
                div.scroll { table {
                    thead { tr { (heads(&[Text("Case"), Text("Milestone"), Text("Change"), Num("Sequence"), Text("Delivery")])) } }
                    tbody {
                        @for m in deltas {
                            @let e = MilestoneEntry::from_row(m.clone());
                            tr {
                                td { a href=(case_href(&m.program, &m.case_id)) { (m.case_id) } }
                                td { (milestone_label(&m.milestone)) }
                                td { (e.change_text()) }
                                td.num { (m.sequence) }
                                td { (deliveries_inline(&m.deliveries)) }
                            }
                        }
                    }
                } }
            }
        },
    )
}

fn deliveries_inline(d: &[crate::store::DeliveryRow]) -> Markup {
    html! {
        @if d.is_empty() { span.muted { "no subscriber wanted it" } }
        @for x in d {
            span.dl { (x.subscriber) " " (delivery_badge(x.status)) }
        }
    }
}

// ------------------------------------------------------------ subscribers

fn state_badge(v: &SubscriberView) -> Markup {
    if v.disabled {
        badge(Tone::Bad, "Disabled")
    } else if v.parked {
        badge(Tone::Warn, "Paused by the circuit breaker")
    } else if v.failing > 0 {
        badge(Tone::Warn, "Active, retrying")
    } else {
        badge(Tone::Ok, "Active")
    }
}

fn failure_rate(t: &AttemptTally) -> String {
    if t.attempts == 0 {
        "no attempts".to_string()
    } else {
        format!(
            "{:.1}% ({} of {})",
            100.0 * t.failed as f64 / t.attempts as f64,
            t.failed,
            t.attempts
        )
    }
}

pub fn subscribers(current: &Current, views: &[SubscriberView], tallies: &[AttemptTally]) -> Markup {
    layout(
        Some(current),
        Nav::Subscribers,
        "Subscribers",
        true,
        html! {
            h1 { "Subscribers" }
            p.lede { "Each subscriber is a webhook endpoint that receives milestones. Backlog is what waits to be sent; a dead letter is a message that failed for good and can be replayed." }
            @if views.is_empty() {
                p.empty { "No subscriber is configured. Add a " code { "[[subscribers]]" } " table to the config and restart hubsync." }
            } @else {
                div.scroll { table {
                    thead { tr { (heads(&[Text("Subscriber"), Text("State"), Num("Backlog"), Text("Oldest waiting"), Num("Retrying"), Text("Failed attempts, last 24 h"), Num("Delivered"), Num("Dead letters")])) } }
                    tbody {
                        @for v in views {
                            @let t = tallies.iter().find(|t| t.subscriber == v.name).cloned().unwrap_or_default();
                            tr {
                                th scope="row" { a href={ "/console/subscribers/" (enc(&v.name)) } { (v.name) } }
                                td { (state_badge(v)) }
                                td.num { (v.pending) }
                                td { @match v.oldest_pending_age_s { Some(s) => (span(s)), None => "nothing waiting" } }
                                td.num { (v.failing) }
                                td { (failure_rate(&t)) }
                                td.num { (v.delivered) }
                                td.num { @if v.dead_letters > 0 { strong.bad-text { (v.dead_letters) } } @else { "0" } }
                            }
                        }
                    }
                } }
            }
        },
    )
}

pub fn subscriber(current: &Current, v: &SubscriberView, t: &AttemptTally, dead: &[DeadLetter]) -> Markup {
    let action = format!("/console/subscribers/{}", enc(&v.name));
    layout(
        Some(current),
        Nav::Subscribers,
        &v.name,
        true,
        html! {
            p.crumbs { a href="/console/subscribers" { "Subscribers" } " › " (v.name) }
            h1 { "Subscriber " (v.name) " " (state_badge(v)) }
            @if v.disabled {
                div.alert role="alert" {
                    p { strong { "Nothing is being sent. " } "The endpoint answered 410 Gone (" (v.disabled_reason.as_deref().unwrap_or("no reason given")) "), which means it asked to stop receiving. Its messages wait, none is lost. Re-enable it once the receiver is back." }
                    form method="post" action={ (action) "/enable" } {
                        (csrf_field(current))
                        button.primary type="submit" { "Re-enable " (v.name) "…" }
                    }
                }
            }
            @if v.parked {
                p.warning role="status" { "The circuit breaker paused delivery after repeated failures. hubsync tries one message every few seconds and resumes on the first success" @if let Some(at) = &v.next_probe_at { " (next try " (at) ")" } "." }
            }
            div.cards {
                div.card { div.k { "Backlog" } div.v { (v.pending) } div.s { "messages waiting" } }
                div.card { div.k { "Oldest waiting" } div.v { @match v.oldest_pending_age_s { Some(s) => (span(s)), None => "—" } } div.s { "since its commit" } }
                div.card {
                    div.k { "Failed attempts" }
                    @if t.attempts == 0 { div.v { "—" } div.s { "no attempt in the last 24 h" } }
                    @else {
                        div.v { (format!("{:.1}%", 100.0 * t.failed as f64 / t.attempts as f64)) }
                        div.s { (t.failed) " of " (t.attempts) ", last 24 h" }
                    }
                }
                div.card { div.k { "Delivered" } div.v { (v.delivered) } div.s { (v.coalesced) " superseded, not sent" } }
                div.card { div.k { "Dead letters" } div.v { (v.dead_letters) } div.s { "failed for good" } }
            }
            h2 { "Dead letters" }
            @if dead.is_empty() {
                p.empty { "No dead letters. When a message fails for good (retries used up, or a permanent error), it is kept here to be replayed." }
            } @else {
                p { "These messages failed for good. Fix the receiver, then replay them: each is sent again with its original webhook-id and body, so the receiver can de-duplicate." }
                div.scroll { table {
                    thead { tr { (heads(&[Text("Committed"), Text("Case"), Text("Milestone"), Num("Attempts"), Text("Last answer")])) th scope="col" { span.visually-hidden { "Action" } } } }
                    tbody {
                        @for d in dead.iter().take(MAX_DEAD_LETTERS) {
                            tr {
                                td { (utc(d.created_at_ms)) }
                                td { a href=(case_href(&d.program, &d.case_id)) { (d.case_id) } }
                                td { (milestone_label(&d.milestone)) }
                                td.num { (d.attempts) }
                                td.reason { (last_answer(d.last_status, d.last_error.as_deref())) }
                                td {
                                    form method="post" action={ (action) "/replay" } {
                                        (csrf_field(current))
                                        input type="hidden" name="message_id" value=(d.id);
                                        button type="submit" aria-label={ "Replay the " (milestone_label(&d.milestone)) " message of case " (d.case_id) } { "Replay…" }
                                    }
                                }
                            }
                        }
                    }
                } }
            }
            h2 { "Replay a time range" }
            p { "Send again every delivered or failed message committed in a time range (UTC). You will see how many match before anything is sent." }
            form.inline method="post" action={ (action) "/replay" } {
                (csrf_field(current))
                div { label for="since" { "From (UTC)" } input #since name="since" type="datetime-local"; }
                div { label for="until" { "Until (UTC)" } input #until name="until" type="datetime-local"; }
                div.check { input #failed_only name="failed_only" type="checkbox" value="on"; label for="failed_only" { "Only dead letters" } }
                div { button type="submit" { "Review replay…" } }
            }
        },
    )
}

pub fn confirm_replay(current: &Current, name: &str, f: &ReplayForm, what: &str, n: ReplayCount) -> Markup {
    let back = format!("/console/subscribers/{}", enc(name));
    layout(
        Some(current),
        Nav::Subscribers,
        "Confirm replay",
        false,
        html! {
            p.crumbs { a href="/console/subscribers" { "Subscribers" } " › " a href=(back) { (name) } " › replay" }
            h1 { "Replay to " (name) "?" }
            p { "You asked for: " (what) "." }
            @if n.replayed == 0 {
                p.empty { "No delivered or failed message matches, so there is nothing to replay. (Messages still waiting are sent anyway.)" }
                p { a href=(back) { "Back to " (name) } }
            } @else {
                p.lede {
                    strong { (n.replayed) @if n.replayed == 1 { " message" } @else { " messages" } }
                    " will be sent to " (name) " again, with the original webhook-id and body. The receiver may see them a second time; it de-duplicates by webhook-id."
                }
                @if n.purged > 0 {
                    p.warning { (n.purged) " more match but cannot be replayed: retention purged their payload." }
                }
                form.confirm method="post" action={ (back) "/replay" } {
                    (csrf_field(current))
                    input type="hidden" name="message_id" value=(f.message_id);
                    input type="hidden" name="since" value=(f.since);
                    input type="hidden" name="until" value=(f.until);
                    @if f.failed_only.is_some() { input type="hidden" name="failed_only" value="on"; }
                    input type="hidden" name="confirm" value="yes";
                    div.actions {
                        button.primary type="submit" { "Yes, replay " (n.replayed) @if n.replayed == 1 { " message" } @else { " messages" } }
                        a.button href=(back) { "Cancel" }
                    }
                }
            }
        },
    )
}

pub fn confirm_enable(current: &Current, v: &SubscriberView) -> Markup {
    let back = format!("/console/subscribers/{}", enc(&v.name));
    layout(
        Some(current),
        Nav::Subscribers,
        "Confirm re-enable",
        false,
        html! {
            p.crumbs { a href="/console/subscribers" { "Subscribers" } " › " a href=(back) { (v.name) } " › re-enable" }
            h1 { "Re-enable " (v.name) "?" }
            @if v.disabled {
                p.lede { "It was disabled because the endpoint answered 410 Gone (" (v.disabled_reason.as_deref().unwrap_or("no reason given")) "). Once re-enabled, its " (v.pending) " waiting messages are sent, oldest first per case." }
            } @else {
                p.lede { (v.name) " is not disabled; confirming changes nothing." }
            }
            form.confirm method="post" action={ (back) "/enable" } {
                (csrf_field(current))
                input type="hidden" name="confirm" value="yes";
                div.actions {
                    button.primary type="submit" { "Yes, re-enable" }
                    a.button href=(back) { "Cancel" }
                }
            }
        },
    )
}

// ------------------------------------------------------------ cases

/// The case search form's choices and values.
pub struct CaseSearch {
    pub programs: Vec<String>,
    pub program: Option<String>,
    pub case_id: Option<String>,
}

fn search_form(s: &CaseSearch) -> Markup {
    html! {
        form.inline.search method="get" action="/console/cases" role="search" {
            div {
                label for="program" { "Program" }
                select #program name="program" {
                    @for p in &s.programs {
                        option value=(p) selected[s.program.as_deref() == Some(p.as_str())] { (p) }
                    }
                }
            }
            div {
                label for="case_id" { "Case id" }
                input #case_id name="case_id" type="search" required placeholder="e.g. AC-100203" value=(s.case_id.as_deref().unwrap_or(""));
            }
            div { button.primary type="submit" { "Show the journey" } }
        }
    }
}

pub fn cases(current: &Current, s: &CaseSearch, recent: &[CaseRef]) -> Markup {
    layout(
        Some(current),
        Nav::Cases,
        "Cases",
        false,
        html! {
            h1 { "Cases" }
            p.lede { "A case is one patient's journey on one therapy in one program. Find it by the hub's case id to see every milestone in order, where each came from, and which subscriber got it." }
            (search_form(s))
            h2 { "Recently changed cases" }
            @if recent.is_empty() {
                p.empty { "No milestone yet. When a hub file is processed, the cases it changed appear here." }
            } @else {
                div.scroll { table {
                    thead { tr { (heads(&[Text("Case"), Text("Program"), Text("Latest milestone"), Text("When")])) } }
                    tbody {
                        @for c in recent {
                            tr {
                                td { a href=(case_href(&c.program, &c.case_id)) { (c.case_id) } }
                                td { (c.program) }
                                td { (milestone_label(&c.milestone)) }
                                td { (when(c.created_at_ms)) }
                            }
                        }
                    }
                } }
            }
        },
    )
}

/// One entry of a case's journey, in order. Milestones today; stalls (a
/// case waiting too long at a step, from journey rules, issue 15) become a
/// second variant rendered by [`entry`] with its own marker.
pub enum Entry {
    Milestone(Box<MilestoneEntry>),
    /// A journey rule's deadline passed on this case (open, resumed or
    /// cancelled since), with the rule's severity (`None`: the rule is no
    /// longer loaded).
    Stall(Box<crate::journey::timer::TimerRow>, Option<&'static str>),
}

/// A forwarded milestone with what its stored body says (while retention
/// keeps it): when it happened, status, what changed, where it came from.
pub struct MilestoneEntry {
    pub row: MessageRow,
    pub occurred_at: Option<String>,
    pub status: Option<String>,
    pub sub_status: Option<String>,
    pub change_kind: Option<String>,
    pub change_fields: Vec<String>,
    pub locator: Option<String>,
    pub reasons: Vec<String>,
}

impl MilestoneEntry {
    fn from_row(mut row: MessageRow) -> MilestoneEntry {
        let body: Option<serde_json::Value> = row.body.take().and_then(|b| serde_json::from_str(&b).ok());
        let data = body.as_ref().map(|b| &b["data"]);
        let s = |f: &dyn Fn(&serde_json::Value) -> &serde_json::Value| {
            data.and_then(|d| f(d).as_str()).map(str::to_string)
        };
        MilestoneEntry {
            occurred_at: s(&|d| &d["occurred_at"]),
            status: s(&|d| &d["status"]),
            sub_status: s(&|d| &d["sub_status"]),
            change_kind: s(&|d| &d["change"]["kind"]),
            change_fields: data
                .and_then(|d| d["change"]["fields"].as_array())
                .map(|a| a.iter().filter_map(|f| f.as_str().map(str::to_string)).collect())
                .unwrap_or_default(),
            locator: s(&|d| &d["source"]["locator"]),
            reasons: data
                .and_then(|d| d["reasons"].as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|r| {
                            let code = r["code"].as_str()?;
                            Some(match r["system"].as_str() {
                                Some(sys) => format!("{code} ({sys})"),
                                None => code.to_string(),
                            })
                        })
                        .collect()
                })
                .unwrap_or_default(),
            row,
        }
    }

    fn change_text(&self) -> String {
        match (self.change_kind.as_deref(), self.change_fields.is_empty()) {
            (Some("created"), _) => "new milestone".to_string(),
            (Some("updated"), false) => format!("updated ({} changed)", self.change_fields.join(", ")),
            (Some("updated"), true) => "updated".to_string(),
            (Some(other), _) => other.to_string(),
            (None, _) => "payload purged by retention".to_string(),
        }
    }
}

/// A case's timeline rows as journey entries, in sequence order, with the
/// stalls of its journey timers placed where they were found, each with its
/// rule's severity from `journeys`.
pub fn timeline(
    rows: Vec<MessageRow>,
    timers: Vec<crate::journey::timer::TimerRow>,
    journeys: &crate::journey::Journeys,
) -> Vec<Entry> {
    let stall = |t: crate::journey::timer::TimerRow| {
        let severity = journeys
            .program(&t.timer.program)
            .and_then(|p| p.rule(&t.timer.rule))
            .map(|r| r.severity.as_str());
        Entry::Stall(Box::new(t), severity)
    };
    let mut stalls: Vec<_> = timers.into_iter().filter(|t| t.fired_at_ms.is_some()).collect();
    stalls.sort_by_key(|t| t.fired_at_ms);
    let mut stalls = stalls.into_iter().peekable();
    let mut out = Vec::new();
    for r in rows {
        while let Some(t) = stalls.next_if(|t| t.fired_at_ms.is_some_and(|f| f < r.created_at_ms)) {
            out.push(stall(t));
        }
        out.push(Entry::Milestone(Box::new(MilestoneEntry::from_row(r))));
    }
    out.extend(stalls.map(stall));
    out
}

fn entry(current: &Current, e: &Entry) -> Markup {
    match e {
        Entry::Milestone(m) => milestone_entry(current, m),
        Entry::Stall(t, severity) => stall_entry(t, *severity),
    }
}

fn stall_entry(t: &crate::journey::timer::TimerRow, severity: Option<&str>) -> Markup {
    use crate::journey::timer::TimerStatus;
    let open = t.status == TimerStatus::Stalled;
    html! {
        li class=(if open { "step bad stall" } else { "step stall" }) {
            div.head {
                h3 { "Stalled: " (t.timer.rule) }
                code.code { "journey rule" }
            }
            p.meta {
                @match severity {
                    Some(s) => { "Severity " strong { (s) } " · " }
                    None => { "Rule no longer loaded · " }
                }
                "Waiting since " (milestone_label(&t.timer.trigger_milestone)) " (" (t.timer.trigger_occurred_at) ")"
                " · deadline " (utc(t.timer.deadline_ms))
                @if let Some(f) = t.fired_at_ms { " · found " (utc(f)) }
            }
            p.meta {
                @match t.status {
                    TimerStatus::Stalled => { strong { "Open" } " — nothing awaited has arrived yet." }
                    TimerStatus::Resumed => {
                        "Resumed by " (milestone_label(t.settled_by.as_deref().unwrap_or("?")))
                        @if let Some(s) = t.settled_at_ms { " at " (utc(s)) }
                    }
                    TimerStatus::Cancelled => { "Cancelled by " (t.settled_by.as_deref().unwrap_or("a removed rule")) }
                    TimerStatus::Armed | TimerStatus::Cleared => { "" }
                }
                " · "
                @if t.stalled_webhook.is_some() { "journey.stalled sent" } @else { "recorded, not sent (past the horizon, or no subscriber)" }
            }
        }
    }
}

fn milestone_entry(current: &Current, m: &MilestoneEntry) -> Markup {
    let r = &m.row;
    let failed = r.deliveries.iter().any(|d| d.status == DeliveryStatus::Failed);
    let tone = if failed { "step bad" } else { "step" };
    html! {
        li class=(tone) {
            div.head {
                h3 { (milestone_label(&r.milestone)) }
                code.code { (r.milestone) }
                span.seq { "#" (r.sequence) }
            }
            p.meta {
                @match &m.occurred_at { Some(t) => { "Happened " (t) }, None => { "Date not kept (payload purged)" } }
                @if let Some(s) = &m.status { " · case status " (s) }
                @if let Some(s) = &m.sub_status { " (" (s) ")" }
                " · " (m.change_text())
            }
            @if !m.reasons.is_empty() { p.meta { "Reasons: " (m.reasons.join(", ")) } }
            p.prov {
                "From "
                @match &r.file { Some(f) => { strong { (f) } } None => { "a feed event" } }
                @if let Some(l) = &m.locator { ", " (l) }
                " (" (r.connector) ")"
                @if let Some(sha) = &r.sha256 { " · sha256 " code title=(sha) { (short_sha(sha)) } }
                " · committed " (utc(r.created_at_ms))
            }
            ul.deliveries {
                @if r.deliveries.is_empty() { li.muted { "No subscriber wanted it." } }
                @for d in &r.deliveries {
                    li {
                        strong { (d.subscriber) } " " (delivery_badge(d.status))
                        @if let Some(t) = d.delivered_at_ms { " " (utc(t)) " (" (latency_text(t - r.created_at_ms)) " after commit)" }
                        @if d.status != DeliveryStatus::Delivered && d.attempts > 0 {
                            " · " (d.attempts) " attempt(s), last: " (last_answer(d.last_status, d.last_error.as_deref()))
                        }
                        @if d.status == DeliveryStatus::Failed {
                            form.inline-action method="post" action={ "/console/subscribers/" (enc(&d.subscriber)) "/replay" } {
                                (csrf_field(current))
                                input type="hidden" name="message_id" value=(r.id);
                                button type="submit" { "Replay to " (d.subscriber) "…" }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub fn case(current: &Current, s: &CaseSearch, entries: &[Entry]) -> Markup {
    let program = s.program.as_deref().unwrap_or("");
    let case_id = s.case_id.as_deref().unwrap_or("");
    layout(
        Some(current),
        Nav::Cases,
        &format!("Case {case_id}"),
        false,
        html! {
            p.crumbs { a href="/console/cases" { "Cases" } " › " (program) " › " (case_id) }
            h1 { "Case " (case_id) }
            (search_form(s))
            @if entries.is_empty() {
                p.empty { "No milestone for case " strong { (case_id) } " in program " strong { (program) } ". Check the case id as the hub writes it (it is case-sensitive), or pick another program." }
            } @else {
                p.lede { (entries.len()) " milestone(s) in the order receivers got them. Each shows the file and row it came from and what each subscriber did with it." }
                ol.journey {
                    @for e in entries { (entry(current, e)) }
                }
            }
        },
    )
}

// ------------------------------------------------------------ trends

pub fn trends(
    current: &Current,
    feeds: &[(String, Vec<FileSummary>)],
    subs: &[(String, Vec<Latency>)],
    since_ms: i64,
) -> Markup {
    layout(
        Some(current),
        Nav::Trends,
        "Trends",
        false,
        html! {
            h1 { "Trends, last 30 days" }
            p.lede { "Since " (utc(since_ms)) ". Rows and deltas per file show whether a hub's files look as usual; delivery latency is the time from a file's commit to the receiver's 2xx." }
            h2 { "Rows and deltas per file" }
            @if feeds.is_empty() { p.empty { "No connector is configured." } }
            div.grid {
                @for (name, files) in feeds {
                    section.panel {
                        h3 { a href={ "/console/feeds/" (enc(name)) } { (name) } }
                        (feed_chart(name, files))
                    }
                }
            }
            h2 { "Delivery latency per subscriber" }
            @if subs.is_empty() { p.empty { "No subscriber is configured." } }
            div.grid {
                @for (name, lat) in subs {
                    section.panel {
                        h3 { a href={ "/console/subscribers/" (enc(name)) } { (name) } }
                        (latency_panel(name, lat))
                    }
                }
            }
        },
    )
}

fn latency_panel(name: &str, lat: &[Latency]) -> Markup {
    if lat.is_empty() {
        return html! { p.empty { "Nothing delivered in the last 30 days." } };
    }
    let mut all: Vec<i64> = lat.iter().map(|l| l.latency_ms.max(0)).collect();
    all.sort_unstable();
    let p50 = chart::percentile(&all, 50.0).unwrap_or(0);
    let p99 = chart::percentile(&all, 99.0).unwrap_or(0);
    let mut by_day: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for l in lat {
        by_day
            .entry(l.delivered_at_ms.div_euclid(super::DAY_MS))
            .or_default()
            .push(l.latency_ms.max(0));
    }
    let mut labels = Vec::new();
    let (mut d50, mut d99) = (Vec::new(), Vec::new());
    for (day, mut v) in by_day {
        v.sort_unstable();
        labels.push(
            chrono::DateTime::from_timestamp_millis(day * super::DAY_MS)
                .map_or_else(String::new, |t| t.format("%m-%d").to_string()),
        );
        d50.push(chart::percentile(&v, 50.0).unwrap_or(0) as f64);
        d99.push(chart::percentile(&v, 99.0).unwrap_or(0) as f64);
    }
    let summary = format!(
        "{name}: delivery latency p50 {}, p99 {} over {} deliveries",
        latency_text(p50),
        latency_text(p99),
        all.len()
    );
    // Seconds on the axis once the slowest day is past a second.
    let in_secs = d99.iter().any(|v| *v >= 1000.0);
    let scale = |v: &[f64]| -> Vec<f64> { v.iter().map(|x| if in_secs { x / 1000.0 } else { *x }).collect() };
    html! {
        p.figures {
            span { "p50 " strong { (latency_text(p50)) } }
            span { "p99 " strong { (latency_text(p99)) } }
            span.muted { (all.len()) " deliveries" @if all.len() as i64 >= super::LATENCY_SAMPLE { " (the latest)" } }
        }
        (chart::bars(&summary, &labels, &[
            Series { name: "p50 per day", class: "s1", values: scale(&d50) },
            Series { name: "p99 per day", class: "s2", values: scale(&d99) },
        ], if in_secs { " s" } else { " ms" }))
        details {
            summary { "Per day" }
            table.compact {
                thead { tr { (heads(&[Text("Day (UTC)"), Num("p50"), Num("p99")])) } }
                tbody {
                    @for (i, l) in labels.iter().enumerate() {
                        tr { td { (l) } td.num { (latency_text(d50[i] as i64)) } td.num { (latency_text(d99[i] as i64)) } }
                    }
                }
            }
        }
    }
}

// ------------------------------------------------------------ activity

pub fn activity(current: &Current, entries: &[AuditEntry]) -> Markup {
    layout(
        Some(current),
        Nav::Activity,
        "Activity",
        false,
        html! {
            h1 { "Activity" }
            p.lede { "Every action taken in this console, newest first: who (the name given at login), what, and on which subscriber. The same lines go to hubsync's log." }
            @if entries.is_empty() {
                p.empty { "No action yet. Replays and re-enables taken on the Subscribers pages are recorded here." }
            } @else {
                div.scroll { table {
                    thead { tr { (heads(&[Text("When"), Text("Who"), Text("Action"), Text("Subscriber"), Text("Details")])) } }
                    tbody {
                        @for e in entries {
                            tr {
                                td { (utc(e.at_ms)) }
                                td { (e.operator) }
                                td { (e.action) }
                                td { @if e.target.is_empty() { "—" } @else { (e.target) } }
                                td.reason { (e.detail) }
                            }
                        }
                    }
                } }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_spans_read_plainly() {
        assert_eq!(
            milestone_label("pa.info_requested"),
            "Prior authorization: info requested"
        );
        assert_eq!(milestone_label("bv.completed"), "Benefit verification: completed");
        assert_eq!(span(42.0), "42 s");
        assert_eq!(span(3.0 * 3600.0 + 300.0), "3 h 5 min");
        assert_eq!(span(2.0 * 86_400.0), "2 days");
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(enc("AC 1/2"), "AC%201%2F2");
        assert_eq!(latency_text(1500), "1.5 s");
        assert_eq!(latency_text(2000), "2 s");
        assert_eq!(
            masked_reason("date '11/13/1944' does not match %m/%d/%Y; code 'XXX'"),
            "date '##/##/####' does not match %m/%d/%Y; code 'XXX'"
        );
    }

    fn message(seq: i64, at: i64, code: &str) -> MessageRow {
        MessageRow {
            id: format!("msg_{seq}"),
            pos: seq,
            connector: "acme-hub".into(),
            program: "P".into(),
            case_id: "C-1".into(),
            milestone: code.into(),
            sequence: seq,
            created_at_ms: at,
            file: Some("f.csv".into()),
            sha256: None,
            body: None,
            deliveries: vec![],
        }
    }

    #[test]
    fn stalls_sit_in_the_timeline_where_they_were_found() {
        use crate::journey::timer::{Timer, TimerRow, TimerStatus};
        let stall = |status, fired: Option<i64>| TimerRow {
            id: 1,
            timer: Timer {
                program: "P".into(),
                case_id: "C-1".into(),
                rule: "approved-not-dispensed".into(),
                trigger_milestone: "pa.approved".into(),
                trigger_occurrence: String::new(),
                trigger_occurred_at: "2026-11-30".into(),
                connector: "acme-hub".into(),
                armed_at_ms: 1_000,
                deadline_ms: 4_000,
            },
            status,
            fired_at_ms: fired,
            settled_at_ms: None,
            settled_by: None,
            stalled_webhook: None,
            resumed_webhook: None,
        };
        let entries = timeline(
            vec![
                message(1, 1_000, "pa.approved"),
                message(2, 9_000, "dispense.shipped"),
            ],
            vec![
                stall(TimerStatus::Stalled, Some(5_000)),
                // Armed or cleared timers never stalled: not in the journey.
                stall(TimerStatus::Cleared, None),
            ],
            &crate::journey::Journeys::default(),
        );
        let kinds: Vec<&str> = entries
            .iter()
            .map(|e| match e {
                Entry::Milestone(_) => "milestone",
                Entry::Stall(..) => "stall",
            })
            .collect();
        assert_eq!(kinds, ["milestone", "stall", "milestone"]);
        assert!(
            matches!(entries[1], Entry::Stall(_, None)),
            "no rule loaded: no severity"
        );
        let html = stall_entry(&stall(TimerStatus::Stalled, Some(5_000)), Some("high")).into_string();
        assert!(html.contains("Stalled: approved-not-dispensed"), "{html}");
        assert!(html.contains("Open"), "{html}");
        assert!(html.contains("Severity <strong>high</strong>"), "{html}");
        assert!(html.contains("recorded, not sent"), "{html}");
    }
}
