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
use crate::deliver::{client_for, http_client_with, DeliverError, Worker};
use crate::metrics::Metrics;
use crate::pipeline::{FileOutcome, Pipeline};
use crate::setup::{Config, Connector};
use crate::source::local::{self, DropFolder};
use crate::source::sftp::{RemoteFile, Scope, SftpDrop, SftpError};
use crate::source::Source;
use crate::store::{RemoteKey, RemoteStatus};
use crate::store::{Store, StoreError, StoreOptions};
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
    #[error(transparent)]
    Sftp(#[from] SftpError),
    #[error(transparent)]
    Lock(#[from] crate::store::lock::LockError),
}

/// Runs until `shutdown` is cancelled and every task has stopped.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), RuntimeError> {
    let config = Arc::new(config);
    // Before the store is opened: a second daemon on a SQLite file must not
    // even run its migrations. Held until this function returns.
    let _writer = crate::store::lock::acquire(&config.store_url)?;
    let store = Store::open_with(&config.store_url, &StoreOptions { lease: config.lease }).await?;
    let tracker = TaskTracker::new();
    let shared_client = http_client_with(config.subscribers.iter().any(|s| s.allow_link_local));
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
            journal: crate::deliver::journal::dir_for(&config.store_url, &sub.name),
        };
        let token = shutdown.clone();
        let grace = config.shutdown_grace;
        let name = sub.name.clone();
        tracker.spawn(async move {
            // A store error stops the worker's loop; restart it after a pause
            // rather than let one database hiccup end delivery for good.
            loop {
                match worker.clone().run(token.clone(), grace).await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::error!(subscriber = %name, error = %e, "delivery worker failed; restarting in 5s");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                            _ = token.cancelled() => return,
                        }
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
            if let Err(e) = crate::admin::serve(listen, crate::console::app(state), token).await {
                tracing::error!(error = %e, "admin API stopped");
            }
        });
    }
    {
        let (store, metrics, token) = (store.clone(), metrics.clone(), shutdown.clone());
        let (retention, every) = (config.payload_retention, config.cleaner_interval);
        tracker.spawn(async move { cleaner(store, metrics, retention, every, token).await });
    }
    let pipeline = Pipeline::new(store.clone(), config.clone(), wakers.clone());
    {
        // The journey clock: fires stalls from the wall clock (overdue ones
        // at once after a restart).
        let (s, c, armed, w, t) = (
            store.clone(),
            config.clone(),
            pipeline.timers.clone(),
            wakers.clone(),
            shutdown.clone(),
        );
        tracker.spawn(async move { crate::timers::fire::run(s, c, armed, w, t).await });
    }
    // Load the state index before the first file arrives, so the first
    // night's file is as fast as every other one.
    match pipeline.warm().await {
        Ok(n) => tracing::info!(entries = n, "state index loaded"),
        Err(e) => tracing::warn!(error = %e, "state index not loaded; the first file will load it"),
    }
    // The connectors watching each local folder: the first of them reports
    // the folder's files that none of them matches.
    let mut watchers: std::collections::HashMap<_, _> =
        local::folders(config.connectors.iter().map(|c| &c.source))
            .into_iter()
            .collect();
    for connector in &config.connectors {
        let (p, c, t) = (pipeline.clone(), connector.clone(), shutdown.clone());
        match &connector.source {
            Source::Local(src) => {
                let mut folder = DropFolder::new(src.clone());
                if let Some(all) = watchers.remove(src.path.as_path()) {
                    folder.report_strays(all);
                }
                folder.prepare()?;
                let rescan = src.rescan;
                tracker.spawn(async move { connector_loop(p, c, folder, rescan, t).await });
            }
            Source::Sftp(src) => {
                let remote = SftpDrop::new(src.clone());
                remote.prepare()?;
                tracker.spawn(async move { sftp_connector_loop(p, c, remote, t).await });
            }
        }
        if connector.expect.is_some() {
            let (s, cfg, c, w, t) = (
                store.clone(),
                config.clone(),
                connector.clone(),
                wakers.clone(),
                shutdown.clone(),
            );
            tracker.spawn(async move { crate::expect::watch(s, cfg, c, w, t).await });
        }
    }
    tracing::info!(connectors = config.connectors.len(), subscribers = config.subscribers.len(), store = %redact_url(&config.store_url), instance = store.instance(), "hubsync running");
    tracker.close();
    shutdown.cancelled().await;
    tracing::info!("shutting down");
    // Every task stops within the grace (delivery) or at its next chunk
    // boundary (files). Should one not, exit anyway: what it had not
    // committed is redone at the next start, exactly as after a crash, and
    // an operator's Ctrl-C must not hang.
    let bound = config.shutdown_grace + Duration::from_secs(5);
    if tokio::time::timeout(bound, tracker.wait()).await.is_err() {
        tracing::warn!(after = ?bound, "tasks still running after the shutdown grace; exiting without them");
    }
    if tokio::time::timeout(Duration::from_secs(5), store.close())
        .await
        .is_err()
    {
        tracing::warn!("the store did not close within 5 s; exiting");
    }
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
    rescan: Duration,
    shutdown: CancellationToken,
) {
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
                // Scan at once: a done-marker (or the end of an upload) is
                // acted on within milliseconds, not after a debounce. A burst
                // of events (a file being written) still costs few scans: the
                // channel holds one wake-up, and a scan is a directory listing.
                // The pause only keeps a write storm from spinning a core.
                tokio::time::sleep(Duration::from_millis(2)).await;
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

/// X12 connectors with `acknowledgments = true`: a TA1 and a 999 beside the
/// archived (or quarantined) file. Failing to write them is logged, not
/// fatal: the file's milestones are committed already.
fn write_acks(connector: &Connector, file: &std::path::Path) {
    if let crate::setup::Format::X12(fmt) = &connector.format {
        if fmt.acknowledgments {
            if let Err(e) = crate::parse::x12::ack::write_beside(file, fmt) {
                tracing::warn!(connector = %connector.name, error = %e, "cannot write the X12 acknowledgments");
            }
        }
    }
}

/// The TA1 and 999 of `file`, when the connector acknowledges X12.
fn acks_of(connector: &Connector, file: &std::path::Path) -> Option<crate::parse::x12::ack::Acks> {
    match &connector.format {
        crate::setup::Format::X12(fmt) if fmt.acknowledgments => crate::parse::x12::ack::of_file(file, fmt),
        _ => None,
    }
}

/// The operator's copy of a remote file's acknowledgments, in the local
/// archive (or error) folder beside its rejects.
fn write_acks_into(
    connector: &Connector,
    dir: &std::path::Path,
    name: &str,
    acks: &crate::parse::x12::ack::Acks,
) {
    if let Err(e) = crate::parse::x12::ack::write_into(dir, name, acks) {
        tracing::warn!(connector = %connector.name, error = %e, "cannot write the X12 acknowledgments");
    }
}

/// Queues a remote file's acknowledgments for the hub's outbox folder
/// (`ack_outbox`). A spool that cannot be written is logged as an error:
/// the acknowledgments are then only in the local archive folder.
fn spool_acks(
    connector: &Connector,
    remote: &SftpDrop,
    staged: &crate::source::ReadyFile,
    acks: &crate::parse::x12::ack::Acks,
    only_if_new: bool,
) {
    let Some(outbox) = &remote.source().ack_outbox else {
        return;
    };
    let spool = crate::source::spool::Spool::new(&outbox.spool);
    let tag = &staged.sha256[..16.min(staged.sha256.len())];
    if only_if_new && spool.has(tag) {
        return;
    }
    for (name, body) in acks.files(&staged.name) {
        if let Err(e) = spool.queue(tag, &name, body.as_bytes()) {
            tracing::error!(connector = %connector.name, ack = %name, error = %e,
                "cannot spool an acknowledgment for the hub's outbox; it is only in the local archive folder");
        }
    }
}

/// Pushes every spooled acknowledgment to the hub's outbox folder, oldest
/// first. One that the server refuses (a per-file error: permissions, a
/// missing folder) stays spooled, is reported once, and is tried again on
/// the next poll; a connection error ends the round (and reconnects).
async fn push_acks(connector: &Connector, remote: &mut SftpDrop) -> Result<(), SftpError> {
    let Some(outbox) = remote.source().ack_outbox.clone() else {
        return Ok(());
    };
    let spool = crate::source::spool::Spool::new(&outbox.spool);
    let pending = match spool.pending() {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(connector = %connector.name, error = %e, "cannot list the acknowledgment spool");
            return Ok(());
        }
    };
    for p in pending {
        let body = match std::fs::read(&p.path) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(connector = %connector.name, ack = %p.name, error = %e, "cannot read a spooled acknowledgment");
                continue;
            }
        };
        match remote.push(&outbox.remote, &p.name, &body).await {
            Ok(to) => {
                remote.first_push_failure(&p.path, true);
                if let Err(e) = spool.mark_sent(&p) {
                    // Pushed again next poll; the push sees the same bytes
                    // there and does not make a second copy.
                    tracing::warn!(connector = %connector.name, ack = %p.name, error = %e, "acknowledgment pushed but still spooled");
                }
                tracing::info!(connector = %connector.name, to = %to, "acknowledgment pushed to the hub's outbox");
            }
            Err(e) if e.scope() == Scope::File => {
                if remote.first_push_failure(&p.path, false) {
                    tracing::warn!(connector = %connector.name, ack = %p.name, error = %e,
                        "acknowledgment not pushed; it stays spooled and is retried every poll");
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
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
            let Some(archived) = moved_by_peer(folder.archive(&file))? else {
                return Ok(());
            };
            write_rejects(pipeline, row.id, &archived).await?;
            write_acks(connector, &archived);
            FileProcessed {
                connector: &connector.name,
                file: &file.name,
                counts: &row.counts,
                millis: started.elapsed().as_millis(),
            }
            .emit();
        }
        FileOutcome::Duplicate => {
            if moved_by_peer(folder.archive(&file))?.is_none() {
                return Ok(());
            }
            FileDuplicateSkipped {
                connector: &connector.name,
                file: &file.name,
            }
            .emit();
        }
        FileOutcome::Failed { file_id, reason } => {
            pipeline.store.file_fail(file_id, &reason).await?;
            let Some(moved) = moved_by_peer(folder.quarantine(&file, &reason))? else {
                return Ok(());
            };
            write_rejects(pipeline, file_id, &moved).await?;
            write_acks(connector, &moved);
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
        FileOutcome::Elsewhere => {
            tracing::debug!(connector = %connector.name, file = %file.name, "another instance has this file")
        }
    }
    Ok(())
}

/// Instances sharing a drop folder may race to move a file another one just
/// archived (a re-dropped duplicate seen by two): the loser finds it gone,
/// which is no error. `None` when it was gone.
fn moved_by_peer(
    moved: Result<std::path::PathBuf, crate::source::SourceError>,
) -> Result<Option<std::path::PathBuf>, crate::source::SourceError> {
    match moved {
        Ok(p) => Ok(Some(p)),
        Err(crate::source::SourceError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
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
    // Owner-only: a reject's reason is redacted, but the file sits beside
    // the partner file and names its records (docs/durability.md).
    crate::source::write_private(&path, out.as_bytes())
        .map_err(|e| crate::source::SourceError::io("write", &path, e))?;
    Ok(())
}

// ------------------------------------------------------------------ SFTP drops

/// Polls one SFTP drop: connect (with backoff), list, fetch settled files one
/// at a time in path order, process each through the same pipeline as local
/// files. A connection error drops the connection and retries with backoff;
/// a per-file error is reported and the next file goes on; a changed host
/// key stops this connector (and only it).
async fn sftp_connector_loop(
    pipeline: Pipeline,
    connector: Arc<Connector>,
    mut remote: SftpDrop,
    shutdown: CancellationToken,
) {
    let poll = remote.source().poll_interval;
    let mut backoff = Duration::from_secs(1);
    let mut outage = false;
    loop {
        let wait = match sftp_round(&pipeline, &connector, &mut remote, &shutdown).await {
            Ok(wait) => {
                if outage {
                    tracing::info!(connector = %connector.name, "sftp connection restored");
                    outage = false;
                }
                backoff = Duration::from_secs(1);
                wait.min(poll)
            }
            Err(SftpRoundError::Sftp(e)) if e.scope() == Scope::Fatal => {
                tracing::error!(connector = %connector.name, error = %e, "connector stopped");
                remote.disconnect().await;
                return;
            }
            Err(e) => {
                tracing::warn!(connector = %connector.name, error = %e, retry_in_s = backoff.as_secs(), "sftp round failed; reconnecting");
                outage = true;
                remote.disconnect().await;
                let wait = backoff;
                backoff = (backoff * 2).min(Duration::from_secs(300));
                wait
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => {
                remote.disconnect().await;
                return;
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum SftpRoundError {
    #[error(transparent)]
    Sftp(#[from] SftpError),
    #[error(transparent)]
    Handle(#[from] HandleError),
}

/// One poll: returns how long to wait before the next.
async fn sftp_round(
    pipeline: &Pipeline,
    connector: &Arc<Connector>,
    remote: &mut SftpDrop,
    shutdown: &CancellationToken,
) -> Result<Duration, SftpRoundError> {
    remote.connect().await?;
    let (ready, next) = remote.scan().await?;
    let mut wait = next.unwrap_or(Duration::MAX);
    for file in ready {
        if shutdown.is_cancelled() {
            break;
        }
        match handle_remote_file(pipeline, connector, remote, &file, shutdown).await {
            Ok(()) => {}
            Err(SftpRoundError::Sftp(e)) if e.scope() == Scope::File => {
                let first = remote.first_report(&file.path);
                match &e {
                    SftpError::NotFound { .. } => {
                        tracing::info!(connector = %connector.name, file = %file.path, "file vanished between listing and fetch; skipped")
                    }
                    SftpError::Changed { .. } => {
                        tracing::info!(connector = %connector.name, error = %e, "file changed during download; waiting for it to settle again");
                        wait = wait.min(remote.source().settle);
                    }
                    _ if first => {
                        tracing::warn!(connector = %connector.name, file = %file.path, error = %e, "remote file skipped; the connector goes on")
                    }
                    _ => {
                        tracing::debug!(connector = %connector.name, file = %file.path, error = %e, "remote file still skipped")
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
    // Acknowledgments owed to the hub: this round's, and any an earlier
    // round could not push.
    push_acks(connector, remote).await?;
    Ok(wait)
}

/// One settled remote file: once-only by (path, size, mtime) and by sha256.
async fn handle_remote_file(
    pipeline: &Pipeline,
    connector: &Arc<Connector>,
    remote: &mut SftpDrop,
    file: &RemoteFile,
    shutdown: &CancellationToken,
) -> Result<(), SftpRoundError> {
    let key = RemoteKey {
        connector: &connector.name,
        path: &file.path,
        size: file.size,
        mtime: file.mtime,
    };
    let store = &pipeline.store;
    match store.remote_file_status(&key).await.map_err(HandleError::from)? {
        // Committed before: only the tidy-up may be left (it failed, or the
        // connector leaves files in place). Never fetched again.
        Some(RemoteStatus::Done) => {
            tidy_remote(connector, remote, file).await?;
            return Ok(());
        }
        // Refused as a whole before; a corrected upload has a new size or mtime.
        Some(RemoteStatus::Failed) => return Ok(()),
        None => {}
    }
    let started = Instant::now();
    // Shutdown does not wait for a long download: the partial file is
    // removed from staging at the next start and the file fetched again.
    let staged = tokio::select! {
        staged = remote.fetch(file) => staged?,
        _ = shutdown.cancelled() => return Ok(()),
    };
    let outcome = pipeline.process(connector, &staged, shutdown).await;
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            remote.discard(&staged.path);
            return Err(HandleError::from(e).into());
        }
    };
    // The acknowledgments are computed from the staged copy and spooled
    // before the remote-file ledger records the file: a crash in between
    // re-fetches it, and the spool says whether it was acknowledged.
    let acks = match &outcome {
        FileOutcome::Done(_) | FileOutcome::Failed { .. } | FileOutcome::Duplicate => {
            acks_of(connector, &staged.path)
        }
        FileOutcome::Interrupted | FileOutcome::Elsewhere => None,
    };
    if let Some(a) = &acks {
        // A duplicate is acknowledged only when it never was: the file
        // committed just before a crash, before its acknowledgments were spooled.
        let only_if_new = matches!(outcome, FileOutcome::Duplicate);
        spool_acks(connector, remote, &staged, a, only_if_new);
    }
    match outcome {
        FileOutcome::Done(row) => {
            store
                .remote_file_record(&key, &staged.sha256, RemoteStatus::Done)
                .await
                .map_err(HandleError::from)?;
            remote.discard(&staged.path);
            let dir = remote
                .source()
                .archive
                .join(chrono::Utc::now().format("%Y-%m-%d").to_string());
            std::fs::create_dir_all(&dir)
                .map_err(|e| HandleError::from(crate::source::SourceError::io("create", &dir, e)))?;
            write_rejects(pipeline, row.id, &dir.join(&staged.name)).await?;
            if let Some(a) = &acks {
                write_acks_into(connector, &dir, &staged.name, a);
            }
            FileProcessed {
                connector: &connector.name,
                file: &file.path,
                counts: &row.counts,
                millis: started.elapsed().as_millis(),
            }
            .emit();
            tidy_remote(connector, remote, file).await?;
        }
        FileOutcome::Duplicate => {
            store
                .remote_file_record(&key, &staged.sha256, RemoteStatus::Done)
                .await
                .map_err(HandleError::from)?;
            remote.discard(&staged.path);
            FileDuplicateSkipped {
                connector: &connector.name,
                file: &file.path,
            }
            .emit();
            tidy_remote(connector, remote, file).await?;
        }
        FileOutcome::Failed { file_id, reason } => {
            store
                .file_fail(file_id, &reason)
                .await
                .map_err(HandleError::from)?;
            store
                .remote_file_record(&key, &staged.sha256, RemoteStatus::Failed)
                .await
                .map_err(HandleError::from)?;
            let moved = remote.quarantine(&staged, file, &reason)?;
            write_rejects(pipeline, file_id, &moved).await?;
            if let (Some(a), Some(dir)) = (&acks, moved.parent()) {
                let name = moved
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                write_acks_into(connector, dir, &name, a);
            }
            FileFailed {
                connector: &connector.name,
                file: &file.path,
                reason: &reason,
            }
            .emit();
        }
        FileOutcome::Interrupted => {
            // The checkpoint is committed; the next run fetches the file again
            // and resumes from it (same sha256).
            remote.discard(&staged.path);
            tracing::info!(connector = %connector.name, file = %file.path, "interrupted; will resume from the checkpoint")
        }
        FileOutcome::Elsewhere => {
            // Another instance holds this file's lease; it records and tidies it.
            remote.discard(&staged.path);
            tracing::debug!(connector = %connector.name, file = %file.path, "another instance has this file")
        }
    }
    Ok(())
}

/// Applies `after_commit` to a committed remote file. A failure here is a
/// per-file problem (e.g. a read-only account with `after_commit = "archive"`):
/// the file is already in the ledger and is never processed again.
async fn tidy_remote(
    connector: &Connector,
    remote: &mut SftpDrop,
    file: &RemoteFile,
) -> Result<(), SftpError> {
    match remote.after_commit(file).await {
        Ok(Some(to)) => {
            tracing::info!(connector = %connector.name, file = %file.path, to = %to, "remote file archived");
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(e) if e.scope() == Scope::File => {
            if remote.first_report(&file.path) {
                tracing::warn!(connector = %connector.name, file = %file.path, error = %e,
                    "committed, but the remote file could not be tidied; it will not be processed again");
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}
