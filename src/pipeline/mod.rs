//! One file through parse → map → diff → outbox, committed chunk by chunk.
//!
//! Two halves run side by side, so both cores work:
//!
//! - the **producer** (a blocking thread) streams records, evaluates the
//!   mapping into fingerprints, filters unchanged milestones through the
//!   in-memory [`StateIndex`], and materializes only the candidates;
//! - the **committer** (async) resolves candidates against the store and
//!   writes ledger progress, state, case sequences, outbox rows, delivery rows
//!   and rejects in ONE transaction per chunk.
//!
//! The ledger row's `records_done` is the checkpoint: after a crash, the file
//! (still in the drop folder) is found again by its sha256, and the records
//! before the checkpoint are skipped. Nothing is sent twice because nothing
//! is sent that is not committed, and nothing is lost because the file leaves
//! the drop folder only after its last chunk commits.
//!
//! On a shared store (several instances, one PostgreSQL) a file is processed
//! only under its ledger lease ([`Claim`]), renewed while the file is open and
//! checked by every chunk commit; and the in-memory index is trusted only
//! while no other instance has written the program's state (see
//! `src/store/design.md`).

mod commit;
mod produce;
mod records;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, Mutex, Notify};
use tokio_util::sync::CancellationToken;

use crate::diff::StateIndex;
use crate::model::{Counts, Provenance};
use crate::parse::ParseError;
use crate::setup::{Config, Connector};
use crate::source::ReadyFile;
use crate::store::{Claim, FileArrival, FileRow, RejectRow, Store, StoreError};
use produce::{produce, Chunk, Finish, Job, ProduceError};
use records::{Next, Records};

/// System errors: the file stays where it is and is retried later.
/// A done file's warnings are stored one per line in its ledger note, so
/// that they can be counted in its reconciliation ([`file_warnings`]).
const WARNING_SEPARATOR: &str = "\n";

/// The warnings a done file was accepted with (envelope versions that
/// disagree, hidden sheets skipped, …); none for a failed file, whose note
/// is why it was refused.
pub fn file_warnings(row: &crate::store::FileRow) -> Vec<&str> {
    match (row.status, &row.error) {
        (crate::store::FileStatus::Done, Some(note)) => note
            .split(WARNING_SEPARATOR)
            .filter(|w| !w.trim().is_empty())
            .collect(),
        _ => Vec::new(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot read the file: {0}")]
    Io(String),
    #[error("stored state is corrupt: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the parsing thread failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error(
        "another instance changed program {program}'s state under this file's in-memory index; \
         the index is reloaded and the file resumes from its checkpoint"
    )]
    StaleIndex { program: String },
}

/// How a file ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOutcome {
    /// Fully processed and committed.
    Done(FileRow),
    /// Seen before (same connector, same sha256): nothing was done.
    Duplicate,
    /// Whole-file error (bad header, malformed content, too many rejects).
    Failed { file_id: i64, reason: String },
    /// Shutdown arrived; the checkpoint is committed and the file stays.
    Interrupted,
    /// Another instance holds the file (or has just finished it): leave it be.
    Elsewhere,
}

/// Shared, lazily loaded state index. `None` means "must be (re)loaded": it
/// is dropped whenever a commit fails, because it may then be ahead of the store.
pub type SharedIndex = Arc<Mutex<Option<CachedIndex>>>;

/// The index, and per program the state generation it is known to reflect
/// (absent: 0). Only a shared store reports generations; when a chunk finds
/// its program at another generation, someone else wrote that state, and from
/// then on that program's skipped milestones are re-checked in the store.
pub struct CachedIndex {
    index: StateIndex,
    generations: HashMap<String, i64>,
}

impl CachedIndex {
    async fn load(store: &Store, cap: usize) -> Result<CachedIndex, StoreError> {
        // Generations first: an index newer than its generations only costs a
        // re-check; the other way round would trust stale entries.
        let generations = store.state_generations().await?;
        let index = StateIndex::new(store.state_index(cap).await?, cap);
        Ok(CachedIndex { index, generations })
    }
}

/// Everything needed to process files; cheap to clone.
#[derive(Clone)]
pub struct Pipeline {
    pub store: Store,
    pub config: Arc<Config>,
    pub index: SharedIndex,
    /// Woken after each commit that produced outbox rows.
    pub wakers: Vec<Arc<Notify>>,
    /// Build state without enqueueing webhooks (onboarding a hub's history).
    pub seed: bool,
    /// Wakes the journey clock after a commit that may have armed timers.
    pub timers: Arc<Notify>,
}

impl Pipeline {
    pub fn new(store: Store, config: Arc<Config>, wakers: Vec<Arc<Notify>>) -> Pipeline {
        Pipeline {
            store,
            config,
            index: Arc::new(Mutex::new(None)),
            seed: false,
            wakers,
            timers: Arc::new(Notify::new()),
        }
    }

    /// Loads the state index now (at startup) rather than with the first
    /// file; returns how many entries it holds.
    pub async fn warm(&self) -> Result<usize, PipelineError> {
        let mut guard = self.index.lock().await;
        if guard.is_none() {
            *guard = Some(CachedIndex::load(&self.store, self.config.state_cache_entries).await?);
        }
        Ok(guard.as_ref().map_or(0, |c| c.index.len()))
    }

    /// Processes one complete file. See the module docs for the guarantees.
    pub async fn process(
        &self,
        connector: &Arc<Connector>,
        file: &ReadyFile,
        shutdown: &CancellationToken,
    ) -> Result<FileOutcome, PipelineError> {
        let row = match self
            .store
            .file_claim(&FileArrival {
                connector: &connector.name,
                sha256: &file.sha256,
                name: &file.name,
                size: file.size,
            })
            .await?
        {
            Claim::Owned(row) => row,
            Claim::Done(_) => return Ok(FileOutcome::Duplicate),
            Claim::Busy => return Ok(FileOutcome::Elsewhere),
        };
        // The index is held for the whole file: files are processed one at a
        // time per store writer anyway, and this keeps the producer lock-free.
        let mut guard = self.index.lock().await;
        let CachedIndex {
            index,
            mut generations,
        } = match guard.take() {
            Some(c) => c,
            None => CachedIndex::load(&self.store, self.config.state_cache_entries).await?,
        };
        let heartbeat = self.store.is_shared().then(|| {
            let store = self.store.clone();
            let (file_id, every) = (row.id, self.config.lease / 3);
            tokio::spawn(async move { renew_lease(store, file_id, every).await })
        });
        let (tx, mut rx) = mpsc::channel::<Chunk>(1);
        // Set while the committer waits for work: the producer then hands over
        // the chunk it holds as soon as it holds a delta (see `produce`).
        let committer_idle = Arc::new(AtomicBool::new(false));
        let producer = {
            let committer_idle = committer_idle.clone();
            let connector = connector.clone();
            let config = self.config.clone();
            let file = file.clone();
            let resume = row.records_done;
            let keep_skipped = self.store.is_shared();
            tokio::task::spawn_blocking(move || {
                let mut emit = |c: Chunk| tx.blocking_send(c).map_err(|_| ProduceError::Stopped);
                let job = Job {
                    config: &config,
                    connector: &connector,
                    file: &file,
                    resume_from: resume,
                    coverage: None,
                    keep_skipped,
                    committer_idle: Some(&committer_idle),
                };
                produce(&job, index, &mut emit)
            })
        };
        let provenance = Provenance {
            connector: connector.name.clone(),
            file: file.name.clone(),
            sha256: file.sha256.clone(),
            locator: String::new(),
        };
        let mut outcome = None;
        let mut failure: Option<PipelineError> = None;
        while let Some(chunk) = next_chunk(&mut rx, &committer_idle).await {
            let finish = match &chunk.finish {
                None => None,
                Some(Finish::Done(_)) => Some(None),
                Some(Finish::Failed(r)) => Some(Some(r.clone())),
            };
            if let Err(e) = self
                .commit(connector, row.id, &provenance, chunk, &mut generations)
                .await
            {
                failure = Some(e);
                break;
            }
            match finish {
                Some(None) => outcome = Some(FileOutcome::Done(row.clone())),
                Some(Some(reason)) => {
                    outcome = Some(FileOutcome::Failed {
                        file_id: row.id,
                        reason,
                    })
                }
                None if shutdown.is_cancelled() => {
                    outcome = Some(FileOutcome::Interrupted);
                    break;
                }
                None => {}
            }
        }
        drop(rx);
        let produced = producer.await;
        if let Some(h) = heartbeat {
            h.abort();
        }
        if outcome == Some(FileOutcome::Interrupted) || (outcome.is_none() && failure.is_none()) {
            // Let a peer resume the file now rather than when the lease runs out.
            self.store.file_release(row.id).await?;
        }
        if let Some(e) = failure {
            // The index may hold fingerprints the store never committed.
            *guard = None;
            return Err(e);
        }
        match produced? {
            // A refused file's last chunk dropped milestones the index had
            // already recorded: reload it rather than trust it.
            Ok(_) if matches!(outcome, Some(FileOutcome::Failed { .. })) => *guard = None,
            Ok(index) => *guard = Some(CachedIndex { index, generations }),
            Err(ProduceError::Io(e)) => {
                *guard = None;
                return Err(PipelineError::Io(e));
            }
            Err(ProduceError::Stopped) => *guard = None,
        }
        match outcome {
            Some(FileOutcome::Done(_)) => {
                let done = self
                    .store
                    .file_get(&connector.name, &file.sha256)
                    .await?
                    .unwrap_or(row);
                Ok(FileOutcome::Done(done))
            }
            Some(o) => Ok(o),
            None => Ok(FileOutcome::Interrupted),
        }
    }
}

/// The committer's next chunk. Only when none is queued does it say it is
/// idle, so a producer blocked on a full channel does not read a stale "idle"
/// and hand over a one-delta chunk behind a full one.
async fn next_chunk(rx: &mut mpsc::Receiver<Chunk>, idle: &AtomicBool) -> Option<Chunk> {
    let chunk = match rx.try_recv() {
        Ok(c) => Some(c),
        Err(mpsc::error::TryRecvError::Disconnected) => None,
        Err(mpsc::error::TryRecvError::Empty) => {
            idle.store(true, Ordering::Release);
            rx.recv().await
        }
    };
    idle.store(false, Ordering::Release);
    chunk
}

/// Keeps this instance's lease on a file while it is processed, for chunks
/// slower than a lease. Losing it needs no action here: the next chunk commit
/// is fenced by the lease and fails.
async fn renew_lease(store: Store, file_id: i64, every: std::time::Duration) {
    loop {
        tokio::time::sleep(every).await;
        match store.file_renew(file_id).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(
                    file_id,
                    "lost the lease on a file being processed; its next chunk will roll back"
                );
                return;
            }
            Err(e) => tracing::warn!(file_id, error = %e, "cannot renew a file lease; retrying"),
        }
    }
}

/// What a file would produce, computed without a store: every milestone (as
/// if nothing were stored yet) and every reject. Used by golden tests and the
/// dry run.
#[derive(Debug, Default)]
pub struct DryRun {
    pub milestones: Vec<(String, crate::model::Content)>,
    pub rejects: Vec<RejectRow>,
    pub counts: Counts,
    /// Set when the whole file would be refused.
    pub failed: Option<String>,
    /// What the parser warned about (X12 envelope versions that disagree, an
    /// XML file with no records); `status` shows the parser's own after a run.
    pub warnings: Vec<String>,
}

/// Maps `path` with `connector`'s mapping, writing nothing.
pub fn dry_run(
    config: &Config,
    connector: &Connector,
    path: &std::path::Path,
) -> Result<DryRun, PipelineError> {
    dry_run_with(config, connector, path, None)
}

/// [`dry_run`], collecting value-map coverage.
pub fn dry_run_with(
    config: &Config,
    connector: &Connector,
    path: &std::path::Path,
    coverage: Option<&crate::map::Coverage>,
) -> Result<DryRun, PipelineError> {
    let (sha256, size) =
        crate::source::local::hash_file(path).map_err(|e| PipelineError::Io(e.to_string()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let file = ReadyFile {
        path: path.to_path_buf(),
        name,
        size,
        sha256,
        marker: None,
    };
    let mut out = DryRun::default();
    let mut emit = |c: Chunk| {
        out.counts.add(&c.counts);
        out.counts.emitted += c
            .candidates
            .iter()
            .map(|c| c.record)
            .collect::<std::collections::BTreeSet<_>>()
            .len() as u64;
        out.milestones
            .extend(c.candidates.into_iter().map(|c| (c.locator, c.content)));
        out.rejects.extend(c.rejects);
        match c.finish {
            Some(Finish::Failed(r)) => out.failed = Some(r),
            Some(Finish::Done(w)) => out.warnings = w,
            _ => {}
        }
        Ok(())
    };
    // An empty, incomplete index makes every milestone a candidate.
    let job = Job {
        config,
        connector,
        file: &file,
        resume_from: 0,
        coverage,
        keep_skipped: false,
        committer_idle: None,
    };
    match produce(&job, StateIndex::new(None, 0), &mut emit) {
        Ok(_) | Err(ProduceError::Stopped) => {}
        Err(ProduceError::Io(e)) => return Err(PipelineError::Io(e)),
    }
    out.counts.deltas = out.milestones.len() as u64;
    Ok(out)
}

/// What the parser alone yields for a file: [`parse_only`].
#[derive(Debug, Default)]
pub struct ParseCount {
    /// Records the parser produced (CSV lines, sheet rows, X12 or XML records).
    pub records: u64,
    /// Units refused as a whole (a broken X12 envelope), with their reasons;
    /// only the first few reasons are kept.
    pub rejected: u64,
    pub reasons: Vec<(String, String)>,
    /// Headers bound (one per CSV file or sheet).
    pub headers: u64,
    /// Set when the parser gave up on the file.
    pub failed: Option<String>,
    /// Warnings that refuse nothing (X12 envelope versions that disagree).
    pub warnings: Vec<String>,
}

/// Streams `path` through `connector`'s parser only (no mapping, no hashing,
/// no store): does the file parse, and how fast is the parser on its own.
pub fn parse_only(connector: &Connector, path: &std::path::Path) -> Result<ParseCount, PipelineError> {
    const KEEP_REASONS: usize = 10;
    let mut out = ParseCount::default();
    let mut reader = match Records::open(connector, path) {
        Ok(r) => r,
        Err(ParseError::Io { source, .. }) => return Err(PipelineError::Io(source.to_string())),
        Err(e) => {
            out.failed = Some(e.to_string());
            return Ok(out);
        }
    };
    loop {
        match reader.next() {
            Ok(Some(Next::Header { .. })) => out.headers += 1,
            Ok(Some(Next::Record { .. })) => out.records += 1,
            Ok(Some(Next::Rejected { locator, reason })) => {
                out.rejected += 1;
                if out.reasons.len() < KEEP_REASONS {
                    out.reasons.push((locator.to_string(), reason));
                }
            }
            Ok(None) => {
                out.warnings = reader.warnings();
                return Ok(out);
            }
            Err(ParseError::Io { source, .. }) => return Err(PipelineError::Io(source.to_string())),
            Err(e) => {
                out.failed = Some(e.to_string());
                return Ok(out);
            }
        }
    }
}
