//! The daemon: spawns one task per connector (discover → process, in order)
//! and one delivery worker per subscriber, and owns shutdown.
//!
//! Shutdown is injected as a `CancellationToken` (as mini-redis injects a
//! shutdown future): discovery stops, the file being processed stops after its
//! current chunk commits (its checkpoint makes the rest resumable), and
//! delivery workers drain in-flight requests up to the grace deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{AdminError, AdminState};
use crate::config::{Config, Connector, Source};
use crate::deliver::{client_for, http_client, DeliverError, Worker};
use crate::metrics::Metrics;
use crate::pipeline::{FileOutcome, Pipeline};
use crate::source::local::{self, DropFolder};
use crate::store::{Store, StoreError};
use crate::telemetry::{FileDuplicateSkipped, FileFailed, FileProcessed};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    #[error(transparent)]
    Deliver(#[from] DeliverError),
    #[error(transparent)]
    Admin(#[from] AdminError),
}

/// Runs until `shutdown` is cancelled and every task has stopped.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), RuntimeError> {
    let config = Arc::new(config);
    let store = Store::open(&config.store_url).await?;
    let tracker = TaskTracker::new();
    let shared_client = http_client();
    let metrics = Arc::new(Metrics::new(config.subscribers.iter().map(|s| s.name.as_str())));
    let mut wakers = Vec::new();
    let mut wakers_by_name = std::collections::HashMap::new();
    for sub in &config.subscribers {
        let wake = Arc::new(Notify::new());
        wakers.push(wake.clone());
        wakers_by_name.insert(sub.name.clone(), wake.clone());
        let worker = Worker {
            store: store.clone(),
            sub: sub.clone(),
            client: client_for(sub, &shared_client)?,
            wake,
            poll: config.poll_interval,
            metrics: metrics.subscriber(&sub.name),
        };
        let token = shutdown.clone();
        let grace = config.shutdown_grace;
        let name = sub.name.clone();
        tracker.spawn(async move {
            // A store error stops the worker's loop; restart it after a pause
            // rather than let one database hiccup end delivery for good.
            let mut worker = Some(worker);
            while let Some(w) = worker.take() {
                let (store, sub, client, wake, poll, metrics) = (
                    w.store.clone(),
                    w.sub.clone(),
                    w.client.clone(),
                    w.wake.clone(),
                    w.poll,
                    w.metrics.clone(),
                );
                match w.run(token.clone(), grace).await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::error!(subscriber = %name, error = %e, "delivery worker failed; restarting in 5s");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                            _ = token.cancelled() => return,
                        }
                        worker = Some(Worker {
                            store,
                            sub,
                            client,
                            wake,
                            poll,
                            metrics,
                        });
                    }
                }
            }
        });
    }
    if let Some(admin) = &config.admin {
        // Bind now so a taken port fails the start, not a background task.
        let state = AdminState {
            store: store.clone(),
            config: config.clone(),
            metrics: metrics.clone(),
            wakers: wakers_by_name,
            token: admin.token.as_str().into(),
        };
        let (listen, token) = (admin.listen, shutdown.clone());
        tracker.spawn(async move {
            if let Err(e) = crate::admin::serve(listen, state, token).await {
                tracing::error!(error = %e, "admin API stopped");
            }
        });
    }
    {
        let (store, metrics, token) = (store.clone(), metrics.clone(), shutdown.clone());
        let (retention, every) = (config.payload_retention, config.cleaner_interval);
        tracker.spawn(async move { cleaner(store, metrics, retention, every, token).await });
    }
    let pipeline = Pipeline::new(store.clone(), config.clone(), wakers);
    for connector in &config.connectors {
        let Source::Local(src) = &connector.source;
        let folder = DropFolder::new(src.clone());
        folder.prepare()?;
        let (p, c, t) = (pipeline.clone(), connector.clone(), shutdown.clone());
        tracker.spawn(async move { connector_loop(p, c, folder, t).await });
    }
    tracing::info!(connectors = config.connectors.len(), subscribers = config.subscribers.len(), store = %redact_url(&config.store_url), "hubsync running");
    tracker.close();
    shutdown.cancelled().await;
    tracing::info!("shutting down");
    tracker.wait().await;
    store.close().await;
    Ok(())
}

/// Rows the cleaner purges per statement: short write transactions, so
/// pipeline commits are never held up for long.
const PURGE_BATCH: i64 = 5_000;

/// The retention cleaner: every `every`, nulls the bodies of settled
/// messages older than `retention` (ids and metadata stay).
pub async fn cleaner(
    store: Store,
    metrics: Arc<Metrics>,
    retention: Duration,
    every: Duration,
    shutdown: CancellationToken,
) {
    loop {
        let cutoff = crate::store::now_ms() - retention.as_millis() as i64;
        let mut purged = 0u64;
        loop {
            match store.purge_payloads(cutoff, PURGE_BATCH).await {
                Ok(n) => {
                    purged += n;
                    if n < PURGE_BATCH as u64 || shutdown.is_cancelled() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "retention cleaner failed; will try again");
                    break;
                }
            }
        }
        if purged > 0 {
            metrics
                .payloads_purged
                .fetch_add(purged, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(purged, "payloads past retention purged");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// Discovers and processes one connector's files, one at a time, in name order.
async fn connector_loop(
    pipeline: Pipeline,
    connector: Arc<Connector>,
    mut folder: DropFolder,
    shutdown: CancellationToken,
) {
    let Source::Local(src) = &connector.source;
    let rescan = src.rescan;
    // Events are hints; without a watcher the rescan still finds everything.
    let (_watcher, mut events) = match local::watch(folder.path()) {
        Ok((w, rx)) => (Some(w), rx),
        Err(e) => {
            tracing::warn!(connector = %connector.name, error = %e, "no filesystem events; relying on rescans");
            (None, tokio::sync::mpsc::channel(1).1)
        }
    };
    let mut backoff = Duration::from_secs(1);
    loop {
        let mut wait = rescan;
        match folder.scan() {
            Ok((ready, next)) => {
                if let Some(n) = next {
                    wait = wait.min(n);
                }
                for path in ready {
                    if shutdown.is_cancelled() {
                        return;
                    }
                    match handle_file(&pipeline, &connector, &mut folder, &path, &shutdown).await {
                        Ok(()) => backoff = Duration::from_secs(1),
                        Err(e) => {
                            tracing::error!(connector = %connector.name, error = %e, retry_in_s = backoff.as_secs(), "file not processed; will retry");
                            wait = backoff;
                            backoff = (backoff * 2).min(Duration::from_secs(60));
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::error!(connector = %connector.name, error = %e, "cannot scan the drop folder"),
        }
        tokio::select! {
            _ = events.recv() => {
                // Let a burst of events (a file being written) coalesce.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum HandleError {
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    #[error(transparent)]
    Pipeline(#[from] crate::pipeline::PipelineError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

async fn handle_file(
    pipeline: &Pipeline,
    connector: &Arc<Connector>,
    folder: &mut DropFolder,
    path: &std::path::Path,
    shutdown: &CancellationToken,
) -> Result<(), HandleError> {
    let started = Instant::now();
    let file = match folder.ready_file(path) {
        Ok(f) => f,
        // Gone between listing and hashing (moved away by someone): not an error.
        Err(crate::source::SourceError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            return Ok(())
        }
        Err(e) => return Err(e.into()),
    };
    match pipeline.process(connector, &file, shutdown).await? {
        FileOutcome::Done(row) => {
            let archived = folder.archive(&file)?;
            write_rejects(pipeline, row.id, &archived).await?;
            FileProcessed {
                connector: &connector.name,
                file: &file.name,
                counts: &row.counts,
                millis: started.elapsed().as_millis(),
            }
            .emit();
        }
        FileOutcome::Duplicate => {
            folder.archive(&file)?;
            FileDuplicateSkipped {
                connector: &connector.name,
                file: &file.name,
            }
            .emit();
        }
        FileOutcome::Failed { file_id, reason } => {
            pipeline.store.file_fail(file_id, &reason).await?;
            let moved = folder.quarantine(&file, &reason)?;
            write_rejects(pipeline, file_id, &moved).await?;
            FileFailed {
                connector: &connector.name,
                file: &file.name,
                reason: &reason,
            }
            .emit();
        }
        FileOutcome::Interrupted => {
            tracing::info!(connector = %connector.name, file = %file.name, "interrupted; will resume from the checkpoint")
        }
    }
    Ok(())
}

/// Writes `<file>.rejects.jsonl` beside the archived input, from the store
/// (so rejects from before a crash are included).
async fn write_rejects(
    pipeline: &Pipeline,
    file_id: i64,
    beside: &std::path::Path,
) -> Result<(), HandleError> {
    let rejects = pipeline.store.rejects(file_id).await?;
    if rejects.is_empty() {
        return Ok(());
    }
    let mut out = String::new();
    for r in &rejects {
        out.push_str(&serde_json::to_string(r).expect("rejects are plain strings"));
        out.push('\n');
    }
    let path = std::path::PathBuf::from(format!("{}.rejects.jsonl", beside.display()));
    std::fs::write(&path, out).map_err(|e| crate::source::SourceError::io("write", &path, e))?;
    Ok(())
}
