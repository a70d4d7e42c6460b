//! The `hubsync` command line: raw arguments become validated work in one step.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config;
use crate::deliver::sign;
use crate::setup;
use crate::store::Store;

/// Standard output went away (`hubsync status | head`): the command ends
/// quietly with success, as a reader that has seen enough asks. `println!`
/// would panic instead, because Rust ignores SIGPIPE; the default SIGPIPE is
/// not restored either, since in the daemon a socket write must never kill
/// the process.
#[derive(Debug, thiserror::Error)]
#[error("standard output is closed")]
pub struct OutputClosed;

/// Whether `e` only says that standard output was closed (nothing to report).
pub fn output_closed(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<OutputClosed>())
}

/// Writes to standard output; a closed pipe becomes [`OutputClosed`].
fn write_out(args: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_fmt(args) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(OutputClosed.into()),
        Err(e) => Err(anyhow::Error::new(e).context("writing to standard output")),
    }
}

/// `print!` for commands: returns early with [`OutputClosed`] on a closed pipe.
macro_rules! out {
    ($($arg:tt)*) => { write_out(format_args!($($arg)*))? };
}

/// `println!` for commands: returns early with [`OutputClosed`] on a closed pipe.
macro_rules! outln {
    () => { write_out(format_args!("\n"))? };
    ($($arg:tt)*) => { write_out(format_args!("{}\n", format_args!($($arg)*)))? };
}

/// `eprint!` for progress and diagnostics: a closed standard error loses the
/// message and nothing else (an ingest goes on to its end).
macro_rules! err {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = std::io::stderr().write_fmt(format_args!($($arg)*));
    }};
}

/// `eprintln!` that a closed standard error cannot turn into a panic.
macro_rules! errln {
    ($($arg:tt)*) => { err!("{}\n", format_args!($($arg)*)) };
}

#[derive(Debug, Parser)]
#[command(
    name = "hubsync",
    version,
    about = "Hub batch files in, signed milestone webhooks out."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: watch drop folders, process files, deliver webhooks.
    Run {
        #[arg(long, short, default_value = "config.toml")]
        config: PathBuf,
    },
    /// Validate config, connectors and mappings; touches nothing.
    Check {
        #[arg(long, short, default_value = "config.toml")]
        config: PathBuf,
    },
    /// A local receiver that verifies signatures and prints the events it gets.
    Listen {
        #[arg(long, default_value = "127.0.0.1:9000")]
        addr: SocketAddr,
        /// Environment variable holding the whsec_… secret(s).
        #[arg(long, default_value = "HUBSYNC_LOCAL_SECRET")]
        secret_env: String,
        /// Print each body as JSON, one per line.
        #[arg(long)]
        json: bool,
        /// Prefix each line with the receive time (Unix ms): for latency measurements.
        #[arg(long)]
        timestamps: bool,
        /// Print nothing per event; on exit, one line: how many were received
        /// and when the first and last arrived (Unix ms). For throughput
        /// benchmarks, so that the receiver is not the bottleneck.
        #[arg(long, conflicts_with_all = ["json", "timestamps"])]
        quiet: bool,
    },
    /// Process files now, in name (date) order, without the daemon: onboarding
    /// a hub's history, or re-running archived files. Already-processed files
    /// (same sha256) are skipped; Ctrl-C leaves a checkpoint a re-run resumes.
    Ingest {
        #[arg(long, short, default_value = "config.toml")]
        config: PathBuf,
        #[arg(long)]
        connector: String,
        /// Build state without sending webhooks.
        #[arg(long)]
        seed: bool,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Dry run on a real file: the milestones it would emit (new, changed with
    /// a field-level diff, unchanged) against the current state, rejects, and
    /// value-map coverage. Writes nothing.
    Map {
        #[arg(long, short, default_value = "config.toml")]
        config: PathBuf,
        #[arg(long)]
        connector: String,
        /// `json` (JSON lines) or `table`.
        #[arg(long, default_value = "json")]
        format: String,
        file: PathBuf,
    },
    /// Parse a file with a connector's format only (no mapping, no store):
    /// does it parse, how many records and refused envelopes, and how fast.
    /// Exits non-zero if the parser gives up on the file.
    Parse {
        #[arg(long, short, default_value = "config.toml")]
        config: PathBuf,
        #[arg(long)]
        connector: String,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run the mapping tests in `<mappings_dir>/tests/`; non-zero exit on failure.
    Test {
        #[arg(long, short, default_value = "config.toml")]
        config: PathBuf,
        /// Rewrite the expected outputs from the current mappings.
        #[arg(long)]
        update: bool,
    },
    /// Create or upgrade the store's schema (SQLite or PostgreSQL) and report its
    /// version. `run` does this too; this is for doing it ahead of a deploy.
    Migrate {
        #[arg(long, short, default_value = "config.toml")]
        config: PathBuf,
    },
    /// Files with their reconciliation counts, and delivery backlog per subscriber.
    Status {
        #[arg(long, short, default_value = "config.toml")]
        config: PathBuf,
        #[arg(long, default_value_t = 20)]
        files: i64,
    },
    /// Re-send messages to a subscriber with their original webhook-id and
    /// body. Criteria combine; at least one of --since, --until, --case,
    /// --message or --failed-only is required.
    Replay {
        #[arg(long, short, default_value = "config.toml")]
        config: PathBuf,
        #[arg(long)]
        subscriber: String,
        /// Messages committed at or after this time (RFC 3339 or YYYY-MM-DD, UTC).
        #[arg(long)]
        since: Option<String>,
        /// Messages committed before this time.
        #[arg(long)]
        until: Option<String>,
        /// A case id (with --program when case ids repeat across programs).
        #[arg(long = "case")]
        case_id: Option<String>,
        #[arg(long)]
        program: Option<String>,
        /// One message, by webhook-id.
        #[arg(long)]
        message: Option<String>,
        /// Only dead letters.
        #[arg(long)]
        failed_only: bool,
    },
    /// Open journey stalls by program and rule, oldest first, with counts;
    /// `--stats`: time between milestone pairs per program and payer.
    Journeys {
        #[arg(long, short, default_value = "config.toml")]
        config: PathBuf,
        #[arg(long)]
        program: Option<String>,
        /// Stalls listed at most (counts cover all).
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// p50/p90 of referral→BV, PA submitted→decision and approved→shipped.
        #[arg(long)]
        stats: bool,
        /// Statistics over pairs completed in this window (e.g. 30d, 90d).
        #[arg(long, default_value = "90d")]
        window: String,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Re-enable a subscriber that a 410 Gone disabled.
    Enable {
        #[arg(long, short, default_value = "config.toml")]
        config: PathBuf,
        #[arg(long)]
        subscriber: String,
    },
}

/// Entry point used by `main`.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = rt.block_on(dispatch(cli));
    // Background tasks the commands leave behind (a database pool's reaper,
    // a checkpoint) get a moment to stop; none may keep the process alive.
    rt.shutdown_timeout(std::time::Duration::from_secs(2));
    result
}

fn load(path: &std::path::Path) -> anyhow::Result<setup::Config> {
    match setup::load(path) {
        Ok(c) => Ok(c),
        Err(d) => {
            errln!("{d}");
            bail!("{}: configuration has errors", path.display())
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Check { config } => {
            let c = load(&config)?;
            let rules: usize = c.connectors.iter().map(|c| c.mapping.rules.len()).sum();
            outln!(
                "ok: {} connector(s), {} milestone rule(s), {} journey rule(s), {} subscriber(s)",
                c.connectors.len(),
                rules,
                c.journeys.rule_count(),
                c.subscribers.len()
            );
            Ok(())
        }
        Command::Run { config } => {
            let c = load(&config)?;
            crate::telemetry::init(c.log_format == config::LogFormat::Json, c.log_level.as_deref());
            let shutdown = CancellationToken::new();
            let t = shutdown.clone();
            tokio::spawn(async move {
                let _ = tokio::signal::ctrl_c().await;
                t.cancel();
            });
            #[cfg(unix)]
            {
                let t = shutdown.clone();
                if let Ok(mut term) =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                {
                    tokio::spawn(async move {
                        term.recv().await;
                        t.cancel();
                    });
                }
            }
            crate::runtime::run(c, shutdown).await?;
            Ok(())
        }
        Command::Ingest {
            config,
            connector,
            seed,
            files,
        } => ingest(&config, &connector, seed, files).await,
        Command::Parse {
            config,
            connector,
            files,
        } => parse(&config, &connector, &files),
        Command::Map {
            config,
            connector,
            format,
            file,
        } => {
            let c = load(&config)?;
            let Some(conn) = c.connectors.iter().find(|x| x.name == connector) else {
                bail!("no connector named `{connector}`");
            };
            if !matches!(format.as_str(), "table" | "json") {
                bail!("unknown format `{format}` (json or table)");
            }
            let report = crate::workbench::map_file(&c, conn, &file).await?;
            match format.as_str() {
                "table" => out!("{}", report.to_table()),
                _ => out!("{}", report.to_json_lines()),
            }
            for w in &report.warnings {
                errln!("warning: {}: {w}", file.display());
            }
            // A script or CI job must tell a refused file from a good one.
            if let Some(reason) = &report.failed {
                bail!(
                    "{}: the file would be refused (nothing from it would be committed): {reason}",
                    file.display()
                );
            }
            Ok(())
        }
        Command::Test { config, update } => {
            let c = load(&config)?;
            let results = crate::workbench::run_mapping_tests(&c, update)?;
            let failed = results.iter().filter(|r| r.failure.is_some()).count();
            // A refused input is a passing test when the expected output says
            // so (the refusal is what it tests); either way it is said.
            for r in &results {
                if let Some(reason) = &r.refused {
                    let what = if r.failure.is_some() {
                        "refused"
                    } else {
                        "refused, as expected"
                    };
                    errln!("{}: input {what}: {reason}", r.name);
                }
            }
            for r in &results {
                match &r.failure {
                    None if update => outln!("updated {}", r.name),
                    None => outln!("PASS {}", r.name),
                    Some(diff) => outln!("FAIL {}\n{diff}", r.name),
                }
            }
            outln!("{} passed, {} failed", results.len() - failed, failed);
            if failed > 0 {
                bail!("{failed} mapping test(s) failed");
            }
            Ok(())
        }
        Command::Listen {
            addr,
            secret_env,
            json,
            timestamps,
            quiet,
        } => {
            let output = match (quiet, json) {
                (true, _) => ListenOutput::Quiet,
                (false, true) => ListenOutput::Json,
                (false, false) => ListenOutput::Lines,
            };
            listen(addr, &secret_env, output, timestamps).await
        }
        Command::Migrate { config } => {
            let c = load(&config)?;
            let store = Store::open(&c.store_url).await?;
            let v = store.schema_version().await?;
            outln!(
                "schema at version {} (this binary supports {})",
                v.applied,
                v.supported
            );
            store.close().await;
            Ok(())
        }
        Command::Replay {
            config,
            subscriber,
            since,
            until,
            case_id,
            program,
            message,
            failed_only,
        } => {
            let c = load(&config)?;
            if since.is_none() && until.is_none() && case_id.is_none() && message.is_none() && !failed_only {
                bail!("say what to replay: --since/--until, --case, --message or --failed-only");
            }
            let req = crate::admin::ReplayRequest {
                subscriber,
                since,
                until,
                program,
                case_id,
                message_id: message,
                failed_only,
            };
            let filter = crate::admin::replay_filter(&c, &req).map_err(anyhow::Error::msg)?;
            let store = Store::open(&c.store_url).await?;
            let n = store.replay(&filter).await?;
            store.close().await;
            outln!(
                "{} message(s) queued again for `{}` (same webhook-id and body); a running daemon sends them within its poll interval",
                n.replayed, req.subscriber
            );
            if n.purged > 0 {
                outln!(
                    "{} matching message(s) skipped: their payload was purged by retention",
                    n.purged
                );
            }
            Ok(())
        }
        Command::Journeys {
            config,
            program,
            limit,
            stats,
            window,
            json,
        } => journeys(&config, program.as_deref(), limit, stats, &window, json).await,
        Command::Enable { config, subscriber } => {
            let c = load(&config)?;
            if !c.subscribers.iter().any(|s| s.name == subscriber) {
                bail!("no subscriber named `{subscriber}`");
            }
            let store = Store::open(&c.store_url).await?;
            let was = crate::admin::enable_subscriber(&store, &subscriber).await?;
            store.close().await;
            if was {
                outln!("`{subscriber}` re-enabled; a running daemon resumes within its poll interval");
            } else {
                outln!("`{subscriber}` was not disabled");
            }
            Ok(())
        }
        Command::Status { config, files } => {
            let c = load(&config)?;
            let store = Store::open(&c.store_url).await?;
            let recent = store.files(files.max(1000)).await?;
            outln!("CONNECTORS (last file)");
            outln!(
                "{:<16} {:<32} {:<10} {:>9} {:>7}  reconciles",
                "connector",
                "file",
                "status",
                "read",
                "deltas"
            );
            for conn in &c.connectors {
                match recent.iter().find(|f| f.connector == conn.name) {
                    Some(f) => outln!(
                        "{:<16} {:<32} {:<10} {:>9} {:>7}  {}",
                        conn.name,
                        f.name,
                        f.status.label(),
                        f.counts.read,
                        f.counts.deltas,
                        if f.counts.reconciles() { "yes" } else { "NO" }
                    ),
                    None => outln!("{:<16} {:<32}", conn.name, "(no file yet)"),
                }
            }
            outln!("\nFILES (newest first)");
            outln!(
                "{:<16} {:<32} {:<10} {:>9} {:>8} {:>9} {:>8} {:>8} {:>7} {:>8}  reconciles",
                "connector",
                "file",
                "status",
                "read",
                "emitted",
                "unchanged",
                "rejected",
                "filtered",
                "deltas",
                "warnings"
            );
            for f in store.files(files).await? {
                let c = f.counts;
                // A done file's note holds the warnings it was accepted with
                // (envelope versions that disagree, hidden sheets skipped),
                // one per line; a failed file's is why it was refused.
                let warnings = crate::pipeline::file_warnings(&f);
                outln!(
                    "{:<16} {:<32} {:<10} {:>9} {:>8} {:>9} {:>8} {:>8} {:>7} {:>8}  {}",
                    f.connector,
                    f.name,
                    f.status.label(),
                    c.read,
                    c.emitted,
                    c.unchanged,
                    c.rejected,
                    c.filtered,
                    c.deltas,
                    warnings.len(),
                    if c.reconciles() { "yes" } else { "NO" }
                );
                for w in &warnings {
                    outln!("    warning: {w}");
                }
                if let (Some(e), false) = (&f.error, f.status == crate::store::FileStatus::Done) {
                    outln!("    error: {e}");
                }
            }
            outln!("\nSUBSCRIBERS");
            outln!(
                "{:<20} {:>9} {:>14} {:>8} {:>10} {:>12} {:>9}  state",
                "subscriber",
                "pending",
                "oldest pending",
                "failing",
                "delivered",
                "dead letters",
                "coalesced"
            );
            for s in crate::admin::subscriber_views(&store, &c).await? {
                let age = s
                    .oldest_pending_age_s
                    .map_or("-".to_string(), |secs| format!("{secs:.1}s"));
                let state = if s.disabled {
                    format!(
                        "DISABLED ({}); re-enable: hubsync enable --subscriber {}",
                        s.disabled_reason.as_deref().unwrap_or("?"),
                        s.name
                    )
                } else if s.parked {
                    format!(
                        "PARKED by the circuit breaker; next probe {}",
                        s.next_probe_at.as_deref().unwrap_or("?")
                    )
                } else {
                    "active".to_string()
                };
                outln!(
                    "{:<20} {:>9} {:>14} {:>8} {:>10} {:>12} {:>9}  {}",
                    s.name,
                    s.pending,
                    age,
                    s.failing,
                    s.delivered,
                    s.dead_letters,
                    s.coalesced,
                    state
                );
            }
            print_missing_drops(&store).await?;
            print_unmatched_files(&c)?;
            store.close().await;
            Ok(())
        }
    }
}

/// `hubsync journeys`: open stalls, or pair statistics with `--stats`.
async fn journeys(
    config_path: &std::path::Path,
    program: Option<&str>,
    limit: i64,
    stats: bool,
    window: &str,
    json: bool,
) -> anyhow::Result<()> {
    let c = load(config_path)?;
    let store = Store::open(&c.store_url).await?;
    if stats {
        let window = config::duration::parse_duration(window).map_err(anyhow::Error::msg)?;
        let mut rows = crate::timers::view::stats(&store, &c, window).await?;
        if let Some(p) = program {
            rows.retain(|r| r.program == p);
        }
        store.close().await;
        if json {
            outln!("{}", serde_json::to_string_pretty(&rows)?);
            return Ok(());
        }
        outln!(
            "JOURNEY TIMES (pairs completed in the last {}; from stored occurred_at)",
            humantime(window)
        );
        outln!(
            "{:<16} {:<28} {:<24} {:>7} {:>10} {:>10}",
            "program",
            "payer",
            "pair",
            "cases",
            "p50 (h)",
            "p90 (h)"
        );
        for r in rows {
            outln!(
                "{:<16} {:<28} {:<24} {:>7} {:>10.1} {:>10.1}",
                r.program,
                r.payer,
                r.pair,
                r.cases,
                r.p50_hours,
                r.p90_hours
            );
        }
        return Ok(());
    }
    let view = crate::timers::view::stalls(&store, &c, program, limit).await?;
    store.close().await;
    if json {
        outln!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(());
    }
    outln!("OPEN STALLS BY PROGRAM AND RULE (oldest first)");
    outln!("{:<16} {:<32} {:>6}  oldest deadline", "program", "rule", "open");
    for k in &view.counts {
        outln!(
            "{:<16} {:<32} {:>6}  {}",
            k.program,
            k.rule,
            k.open,
            crate::outbox::journey::rfc3339_ms(k.oldest_deadline_ms)
        );
    }
    if view.counts.is_empty() {
        outln!("(none)");
        return Ok(());
    }
    outln!("\nSTALLS (oldest first, at most {limit})");
    outln!(
        "{:<16} {:<32} {:<10} {:<18} {:<26} {:>10}  notified",
        "program",
        "rule",
        "severity",
        "case",
        "deadline",
        "overdue"
    );
    for s in &view.stalls {
        outln!(
            "{:<16} {:<32} {:<10} {:<18} {:<26} {:>10}  {}",
            s.program,
            s.rule,
            s.severity.unwrap_or("?"),
            s.case_id,
            s.deadline_at,
            humantime(std::time::Duration::from_secs(s.overdue_seconds as u64)),
            if s.notified { "yes" } else { "no (recorded only)" }
        );
    }
    Ok(())
}

/// `3d 4h`, `5m 2s`: a duration for people.
fn humantime(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        3600..=86399 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ if s.is_multiple_of(86400) => format!("{}d", s / 86400),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
}

/// Missed feed deadlines (`[expect]` in connector files), newest first.
async fn print_missing_drops(store: &Store) -> anyhow::Result<()> {
    let missing = store.missing_drops(20).await?;
    if missing.is_empty() {
        return Ok(());
    }
    let at = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms).map_or_else(
            || "?".to_string(),
            |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        )
    };
    outln!("\nMISSING DROPS (newest first)");
    outln!(
        "{:<16} {:<22} {:<22} {:<22} notified",
        "connector",
        "expected by",
        "detected",
        "last arrival"
    );
    for m in missing {
        outln!(
            "{:<16} {:<22} {:<22} {:<22} {}",
            m.connector,
            at(m.expected_by_ms),
            at(m.detected_at_ms),
            m.last_arrival_ms.map_or_else(|| "never".to_string(), at),
            if m.webhook_id.is_some() { "yes" } else { "no" }
        );
    }
    Ok(())
}

/// Files in watched folders that no connector's pattern matches: they are
/// never processed, so say so (a re-drop under the wrong name, a typo).
fn print_unmatched_files(c: &setup::Config) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for (folder, watchers) in crate::source::local::folders(c.connectors.iter().map(|c| &c.source)) {
        let names = match crate::source::local::strays(&folder, &watchers) {
            Ok(names) => names,
            // A folder the daemon has not created yet holds nothing.
            Err(crate::source::SourceError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Vec::new()
            }
            Err(e) => return Err(e.into()),
        };
        if !names.is_empty() {
            rows.push((folder, watchers, names));
        }
    }
    if rows.is_empty() {
        return Ok(());
    }
    outln!("\nUNMATCHED FILES (in a watched folder, matching no connector's pattern: never processed)");
    outln!("{:<40} {:>6}  {:<24} names", "folder", "files", "patterns");
    for (folder, watchers, names) in rows {
        let patterns: Vec<&str> = watchers.iter().map(|w| w.pattern.glob().glob()).collect();
        let mut shown = names.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
        if names.len() > 5 {
            shown.push_str(&format!(", … ({} more)", names.len() - 5));
        }
        outln!(
            "{:<40} {:>6}  {:<24} {shown}",
            folder.display(),
            names.len(),
            patterns.join(" ")
        );
    }
    Ok(())
}

/// What `hubsync listen` prints per event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListenOutput {
    Lines,
    Json,
    /// Nothing per event: a count and the first and last arrival at exit.
    Quiet,
}

/// Events received by a quiet listener: count, first and last arrival (Unix ms).
#[derive(Default)]
struct Tally {
    count: std::sync::atomic::AtomicU64,
    first_ms: std::sync::atomic::AtomicI64,
    last_ms: std::sync::atomic::AtomicI64,
}

async fn listen(
    addr: SocketAddr,
    secret_env: &str,
    output: ListenOutput,
    timestamps: bool,
) -> anyhow::Result<()> {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode};
    use std::sync::atomic::Ordering::Relaxed;

    let raw =
        std::env::var(secret_env).with_context(|| format!("environment variable {secret_env} is not set"))?;
    let keys: Vec<Vec<u8>> = raw
        .split_whitespace()
        .map(|s| crate::deliver::sign::decode_secret(s).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<_>>()?;
    let keys = Arc::new(keys);
    // Set when printing fails (a closed pipe): the server stops with it.
    let stop = CancellationToken::new();
    let stopped: Arc<std::sync::Mutex<Option<anyhow::Error>>> = Arc::default();
    let tally: Arc<Tally> = Arc::default();
    let (stop_handler, stopped_handler, tally_handler) = (stop.clone(), stopped.clone(), tally.clone());
    let handler = move |headers: HeaderMap, body: Bytes| {
        let (keys, stop, stopped, tally) = (
            keys.clone(),
            stop_handler.clone(),
            stopped_handler.clone(),
            tally_handler.clone(),
        );
        async move {
            let h = |n: &str| {
                headers
                    .get(n)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string()
            };
            let (id, ts, sig) = (h("webhook-id"), h("webhook-timestamp"), h("webhook-signature"));
            let now = chrono::Utc::now().timestamp();
            if let Err(e) = sign::verify(&keys, &id, &ts, &sig, &body, now, 300) {
                errln!("REFUSED {id}: {e}");
                return StatusCode::UNAUTHORIZED;
            }
            if output == ListenOutput::Quiet {
                let now = chrono::Utc::now().timestamp_millis();
                if tally.count.fetch_add(1, Relaxed) == 0 {
                    tally.first_ms.store(now, Relaxed);
                }
                tally.last_ms.fetch_max(now, Relaxed);
                return StatusCode::NO_CONTENT;
            }
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            let stamp = if timestamps {
                format!("{} ", chrono::Utc::now().timestamp_millis())
            } else {
                String::new()
            };
            let kind = v["type"].as_str().unwrap_or("?");
            let printed = if output == ListenOutput::Json {
                write_out(format_args!("{stamp}{}\n", String::from_utf8_lossy(&body)))
            } else if kind.starts_with("journey.") {
                let d = &v["data"];
                write_out(format_args!(
                    "{stamp}{id} {kind:<22} program={} case={} seq={} rule={} severity={} trigger={} deadline_at={} late_by={}s\n",
                    d["program"].as_str().unwrap_or("?"),
                    d["case_id"].as_str().unwrap_or("?"),
                    d["sequence"],
                    d["rule"]["name"].as_str().unwrap_or("?"),
                    d["rule"]["severity"].as_str().unwrap_or("?"),
                    d["trigger"]["milestone"].as_str().unwrap_or("?"),
                    d["deadline_at"].as_str().unwrap_or("?"),
                    d["late_by_seconds"]
                ))
            } else {
                let d = &v["data"];
                write_out(format_args!(
                    "{stamp}{id} {:<22} program={} case={} seq={} occurred_at={} change={} {}\n",
                    v["type"].as_str().unwrap_or("?"),
                    d["program"].as_str().unwrap_or("?"),
                    d["case_id"].as_str().unwrap_or("?"),
                    d["sequence"],
                    d["occurred_at"].as_str().unwrap_or("?"),
                    d["change"]["kind"].as_str().unwrap_or("?"),
                    d["change"]["fields"]
                ))
            };
            if let Err(e) = printed {
                // Nobody sees the events any more: stop listening, and do
                // not acknowledge an event that was not shown.
                stopped
                    .lock()
                    .expect("no panic while holding it")
                    .get_or_insert(e);
                stop.cancel();
                return StatusCode::SERVICE_UNAVAILABLE;
            }
            StatusCode::NO_CONTENT
        }
    };
    let app = axum::Router::new().fallback(axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    errln!(
        "listening on http://{} (any path); verifying signatures with ${secret_env}",
        listener.local_addr()?
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = stop.cancelled() => {}
            }
        })
        .await?;
    if output == ListenOutput::Quiet {
        outln!(
            "received {} events; first at {} ms, last at {} ms",
            tally.count.load(Relaxed),
            tally.first_ms.load(Relaxed),
            tally.last_ms.load(Relaxed)
        );
    }
    let failed = stopped.lock().expect("no panic while holding it").take();
    failed.map_or(Ok(()), Err)
}

fn parse(config_path: &std::path::Path, connector: &str, files: &[PathBuf]) -> anyhow::Result<()> {
    let c = load(config_path)?;
    let Some(conn) = c.connectors.iter().find(|x| x.name == connector) else {
        bail!("no connector named `{connector}`");
    };
    let mut failed: Vec<String> = Vec::new();
    for path in files {
        let size = std::fs::metadata(path)
            .with_context(|| format!("{}", path.display()))?
            .len();
        let t0 = std::time::Instant::now();
        let count = crate::pipeline::parse_only(conn, path)?;
        let secs = t0.elapsed().as_secs_f64().max(1e-9);
        outln!(
            "{}: {} records, {} refused, {size} bytes in {secs:.3}s ({:.1} MB/s, {:.0} records/s)",
            path.display(),
            count.records,
            count.rejected,
            size as f64 / 1e6 / secs,
            count.records as f64 / secs
        );
        for (locator, reason) in &count.reasons {
            outln!("  refused at {locator}: {reason}");
        }
        for w in &count.warnings {
            outln!("  warning: {w}");
        }
        if let Some(reason) = count.failed {
            outln!("  FAILED: {reason}");
            failed.push(path.display().to_string());
        }
    }
    if !failed.is_empty() {
        bail!("{} file(s) refused: {}", failed.len(), failed.join(", "));
    }
    Ok(())
}

async fn ingest(
    config_path: &std::path::Path,
    connector: &str,
    seed: bool,
    mut files: Vec<PathBuf>,
) -> anyhow::Result<()> {
    use crate::pipeline::{FileOutcome, Pipeline};
    let c = load(config_path)?;
    crate::telemetry::init(false, Some("warn"));
    let Some(conn) = c.connectors.iter().find(|x| x.name == connector).cloned() else {
        bail!("no connector named `{connector}`");
    };
    // `ingest` runs the pipeline with its own state index: a writer, like the daemon.
    let _writer = crate::store::lock::acquire(&c.store_url)?;
    let store = Store::open_with(&c.store_url, &crate::store::StoreOptions { lease: c.lease }).await?;
    let mut pipeline = Pipeline::new(store.clone(), Arc::new(c), Vec::new());
    pipeline.seed = seed;
    let shutdown = CancellationToken::new();
    let t = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        t.cancel();
    });
    let t0 = std::time::Instant::now();
    let entries = pipeline.warm().await?;
    errln!(
        "state index: {entries} entries loaded in {:.2}s",
        t0.elapsed().as_secs_f64()
    );
    // Hub files carry their date in the name; name order is date order.
    files.sort();
    let total_bytes: u64 = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let started = std::time::Instant::now();
    let (mut rows, mut done_bytes) = (0u64, 0u64);
    let mut refused: Vec<String> = Vec::new();
    for (i, path) in files.iter().enumerate() {
        if shutdown.is_cancelled() {
            errln!("interrupted: re-run the same command to resume");
            break;
        }
        let t0 = std::time::Instant::now();
        let (sha256, size) = crate::source::local::hash_file(path)?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let file = crate::source::ReadyFile {
            path: path.clone(),
            name: name.clone(),
            size,
            sha256,
            marker: None,
        };
        // A live progress line on terminals: the ledger's checkpoint is the
        // truth of how far the file is, so the pipeline needs no callback.
        let ticker = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
            let (store, connector, sha, label) = (
                store.clone(),
                conn.name.clone(),
                file.sha256.clone(),
                format!("[{}/{}] {name}", i + 1, files.len()),
            );
            let (rows_before, bytes_before, started) = (rows, done_bytes, started);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    if let Ok(Some(f)) = store.file_get(&connector, &sha).await {
                        let elapsed = started.elapsed().as_secs_f64();
                        let total = rows_before + f.records_done;
                        let eta = if bytes_before > 0 {
                            format!(
                                "{:.0}s",
                                elapsed * total_bytes.saturating_sub(bytes_before) as f64
                                    / bytes_before as f64
                            )
                        } else {
                            "?".to_string()
                        };
                        err!(
                            "\r{label}: {} rows ({:.0} rows/s overall), ETA {eta}   ",
                            f.records_done,
                            total as f64 / elapsed.max(1e-9)
                        );
                    }
                }
            })
        });
        let outcome = pipeline.process(&conn, &file, &shutdown).await;
        if let Some(t) = ticker {
            t.abort();
            err!("\r\x1b[2K");
        }
        let outcome = outcome?;
        done_bytes += size;
        let secs = t0.elapsed().as_secs_f64();
        let line = match outcome {
            FileOutcome::Done(row) => {
                rows += row.counts.read;
                let c = row.counts;
                let warning = row.error.map(|w| format!(" (warning: {w})")).unwrap_or_default();
                format!(
                    "{name}: {} rows in {secs:.2}s ({:.0} rows/s): {} deltas, {} unchanged, {} rejected, {} filtered{warning}",
                    c.read, c.read as f64 / secs.max(1e-9), c.deltas, c.unchanged, c.rejected, c.filtered
                )
            }
            FileOutcome::Duplicate => format!("{name}: already processed (same sha256), skipped"),
            FileOutcome::Failed { file_id, reason } => {
                store.file_fail(file_id, &reason).await?;
                refused.push(name.clone());
                format!("{name}: FAILED: {reason}")
            }
            FileOutcome::Interrupted => format!("{name}: interrupted at its checkpoint"),
            FileOutcome::Elsewhere => format!("{name}: another instance is processing it, skipped"),
        };
        let elapsed = started.elapsed().as_secs_f64();
        let eta = if done_bytes > 0 {
            elapsed * (total_bytes.saturating_sub(done_bytes)) as f64 / done_bytes as f64
        } else {
            0.0
        };
        errln!(
            "[{}/{}] {line}  (total {rows} rows, {:.0} rows/s, ETA {eta:.0}s)",
            i + 1,
            files.len(),
            rows as f64 / elapsed.max(1e-9)
        );
    }
    if let Some(kb) = peak_rss_kb() {
        errln!("peak RSS: {:.1} MiB", kb as f64 / 1024.0);
    }
    store.close().await;
    if !refused.is_empty() {
        bail!("{} file(s) refused: {}", refused.len(), refused.join(", "));
    }
    Ok(())
}

/// The process's peak resident set size (Linux `VmHWM`).
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
