//! The `hubsync` command line: raw arguments become validated work in one step.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config;
use crate::deliver::sign;
use crate::store::Store;

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
}

/// Entry point used by `main`.
pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(dispatch(cli))
}

fn load(path: &std::path::Path) -> anyhow::Result<config::Config> {
    match config::load(path) {
        Ok(c) => Ok(c),
        Err(d) => {
            eprintln!("{d}");
            bail!("{}: configuration has errors", path.display())
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Check { config } => {
            let c = load(&config)?;
            let rules: usize = c.connectors.iter().map(|c| c.mapping.rules.len()).sum();
            println!(
                "ok: {} connector(s), {} milestone rule(s), {} subscriber(s)",
                c.connectors.len(),
                rules,
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
        Command::Listen {
            addr,
            secret_env,
            json,
        } => listen(addr, &secret_env, json).await,
        Command::Migrate { config } => {
            let c = load(&config)?;
            let store = Store::open(&c.store_url).await?;
            let v = store.schema_version().await?;
            println!("schema at version {} (this binary supports {})", v.applied, v.supported);
            store.close().await;
            Ok(())
        }
        Command::Status { config, files } => {
            let c = load(&config)?;
            let store = Store::open(&c.store_url).await?;
            println!("FILES (newest first)");
            println!(
                "{:<16} {:<32} {:<10} {:>9} {:>8} {:>9} {:>8} {:>8} {:>7}  reconciles",
                "connector",
                "file",
                "status",
                "read",
                "emitted",
                "unchanged",
                "rejected",
                "filtered",
                "deltas"
            );
            for f in store.files(files).await? {
                let c = f.counts;
                println!(
                    "{:<16} {:<32} {:<10} {:>9} {:>8} {:>9} {:>8} {:>8} {:>7}  {}",
                    f.connector,
                    f.name,
                    f.status.label(),
                    c.read,
                    c.emitted,
                    c.unchanged,
                    c.rejected,
                    c.filtered,
                    c.deltas,
                    if c.reconciles() { "yes" } else { "NO" }
                );
                if let Some(e) = f.error {
                    println!("    error: {e}");
                }
            }
            println!("\nSUBSCRIBERS");
            println!(
                "{:<20} {:>9} {:>10} {:>7} {:>14}",
                "subscriber", "pending", "delivered", "failed", "oldest pending"
            );
            for s in store.subscriber_stats().await? {
                let age = s
                    .oldest_pending_ms
                    .map_or("-".to_string(), |ms| format!("{:.1}s", ms as f64 / 1000.0));
                println!(
                    "{:<20} {:>9} {:>10} {:>7} {:>14}",
                    s.subscriber, s.pending, s.delivered, s.failed, age
                );
            }
            store.close().await;
            Ok(())
        }
    }
}

async fn listen(addr: SocketAddr, secret_env: &str, json: bool) -> anyhow::Result<()> {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode};

    let raw =
        std::env::var(secret_env).with_context(|| format!("environment variable {secret_env} is not set"))?;
    let keys: Vec<Vec<u8>> = raw
        .split_whitespace()
        .map(|s| config::decode_secret(s).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<_>>()?;
    let keys = Arc::new(keys);
    let handler = move |headers: HeaderMap, body: Bytes| {
        let keys = keys.clone();
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
                eprintln!("REFUSED {id}: {e}");
                return StatusCode::UNAUTHORIZED;
            }
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            if json {
                println!("{}", String::from_utf8_lossy(&body));
            } else {
                let d = &v["data"];
                println!(
                    "{id} {:<22} program={} case={} seq={} occurred_at={} change={} {}",
                    v["type"].as_str().unwrap_or("?"),
                    d["program"].as_str().unwrap_or("?"),
                    d["case_id"].as_str().unwrap_or("?"),
                    d["sequence"],
                    d["occurred_at"].as_str().unwrap_or("?"),
                    d["change"]["kind"].as_str().unwrap_or("?"),
                    d["change"]["fields"]
                );
            }
            StatusCode::NO_CONTENT
        }
    };
    let app = axum::Router::new().fallback(axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    eprintln!(
        "listening on http://{} (any path); verifying signatures with ${secret_env}",
        listener.local_addr()?
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
