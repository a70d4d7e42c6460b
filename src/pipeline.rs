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

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, Mutex, Notify};
use tokio_util::sync::CancellationToken;

use crate::config::connector::{ExtraColumns, OnRowError};
use crate::diff::{self, Candidate, StateIndex, Verdict};
use crate::map::expr::Stop;
use crate::map::{Binding, FieldPath, Mapping};
use crate::map::{Bound, ContentSink, HashSink};
use crate::model::Provenance;
use crate::outbox;
use crate::parse::csv::CsvReader;
use crate::parse::excel::{ExcelNext, ExcelReader};
use crate::parse::x12::{X12Next, X12Reader};
use crate::parse::xml::XmlReader;
use crate::parse::{Fields, Locator, ParseError, Row};
use crate::setup::{Config, Connector, Format};
use crate::source::ReadyFile;
use crate::store::{
    Claim, Counts, FileRow, FileStatus, Generation, OutboxWrite, RejectRow, StateRow, Store, StoreError,
};

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

/// Candidates per chunk at most: about 1.5 KB each, so a few MB per chunk,
/// and one fsync per few thousand deltas is noise.
const MAX_CHUNK_CANDIDATES: usize = 4096;

enum Finish {
    /// Done, with the parser's warnings (hidden sheets skipped, …) joined:
    /// kept in the ledger's error column, which `status` shows for a done
    /// file as its warning.
    Done(Vec<String>),
    Failed(String),
}

/// What the producer hands the committer.
struct Chunk {
    /// Checkpoint after this chunk: records fully handled from the file's start.
    records_done: u64,
    /// read, rejected, filtered; plus records whose milestones the index
    /// already judged unchanged (in `unchanged`).
    counts: Counts,
    candidates: Vec<Candidate>,
    /// (key, content) of milestones the index judged unchanged; collected only
    /// on a shared store, where the commit may have to re-check them.
    skipped: Vec<(u64, u64)>,
    rejects: Vec<RejectRow>,
    finish: Option<Finish>,
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
            .file_claim(&connector.name, &file.sha256, &file.name, file.size)
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
                produce(
                    &config,
                    &connector,
                    &file,
                    resume,
                    index,
                    None,
                    keep_skipped,
                    Some(&committer_idle),
                    &mut emit,
                )
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

    /// Commits one chunk: the only place a file's output becomes durable.
    async fn commit(
        &self,
        connector: &Connector,
        file_id: i64,
        provenance: &Provenance,
        chunk: Chunk,
        generations: &mut HashMap<String, i64>,
    ) -> Result<(), PipelineError> {
        let mut tx = self.store.begin().await?;
        // First statement: on a shared store this serializes chunk commits of
        // the program, so the state read below is settled.
        let program = connector.program.as_str();
        let generation = tx.lock_program(program).await?;
        let in_sync = match generation {
            Generation::SingleWriter => true,
            Generation::Shared(g) => generations.get(program).copied().unwrap_or(0) == g,
        };
        if !in_sync && !chunk.skipped.is_empty() {
            // Someone else wrote this program's state since the index was
            // loaded: the index's "unchanged" verdicts must be confirmed.
            let mut keys: Vec<u64> = chunk.skipped.iter().map(|(k, _)| *k).collect();
            keys.sort_unstable();
            keys.dedup();
            let stored: std::collections::HashSet<(u64, u64)> =
                tx.state_hashes(&keys).await?.into_iter().collect();
            if chunk.skipped.iter().any(|fp| !stored.contains(fp)) {
                // Rolled back on drop; those records' content was never kept.
                return Err(PipelineError::StaleIndex {
                    program: program.to_string(),
                });
            }
        }
        let mut hashes: Vec<u64> = chunk.candidates.iter().map(|c| c.fp.key).collect();
        hashes.sort_unstable();
        hashes.dedup();
        let stored = if hashes.is_empty() {
            Vec::new()
        } else {
            tx.state_rows(&hashes).await?
        };
        let candidate_records: std::collections::BTreeSet<u64> =
            chunk.candidates.iter().map(|c| c.record).collect();
        let (deltas, _) = diff::resolve(chunk.candidates, &stored)?;

        // Reconcile per record: a record is "emitted" when any of its milestones
        // was a delta, "unchanged" when it produced milestones and none changed.
        let emitted_records: std::collections::BTreeSet<u64> =
            deltas.iter().map(|d| d.candidate.record).collect();
        let mut counts = chunk.counts;
        counts.emitted = emitted_records.len() as u64;
        counts.unchanged += (candidate_records.len() - emitted_records.len()) as u64;
        counts.deltas = deltas.len() as u64;

        // Per-case sequence numbers, in file order.
        let mut per_case: Vec<(&str, &str, i64)> = Vec::new();
        let mut case_slot: HashMap<(&str, &str), usize> = HashMap::new();
        for d in &deltas {
            let c = &d.candidate.content;
            let slot = *case_slot
                .entry((c.program.as_str(), c.case_id.as_str()))
                .or_insert_with(|| {
                    per_case.push((c.program.as_str(), c.case_id.as_str(), 0));
                    per_case.len() - 1
                });
            per_case[slot].2 += 1;
        }
        // Seeding sends nothing, so it consumes no sequence numbers: the first
        // delta a receiver ever sees for a case is its sequence 1.
        let last = if per_case.is_empty() || self.seed {
            Vec::new()
        } else {
            tx.bump_cases(&per_case).await?
        };
        let mut next_seq: Vec<i64> = per_case
            .iter()
            .zip(&last)
            .map(|((_, _, n), last)| last - n + 1)
            .collect();
        next_seq.resize(per_case.len(), 0);

        let timestamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut outbox_rows = Vec::with_capacity(deltas.len());
        let mut state: HashMap<u64, usize> = HashMap::with_capacity(deltas.len());
        let mut state_rows: Vec<StateRow> = Vec::with_capacity(deltas.len());
        for d in &deltas {
            let c = &d.candidate.content;
            let slot = case_slot[&(c.program.as_str(), c.case_id.as_str())];
            let seq = next_seq[slot];
            next_seq[slot] += 1;
            let source = Provenance {
                locator: d.candidate.locator.clone(),
                ..provenance.clone()
            };
            // One serialization of the content serves both writes: the
            // state row keeps it (for field-level diffs), the outbox body
            // embeds it.
            let content_json = serde_json::to_string(c)?;
            let body = outbox::render_from_content_json(&content_json, d, &source, seq, &timestamp);
            let subscribers = self
                .config
                .subscribers
                .iter()
                .filter(|s| s.wants(&connector.name, &c.program, c.milestone.as_str()))
                .map(|s| s.name.clone())
                .collect();
            outbox_rows.push(OutboxWrite {
                id: outbox::new_webhook_id(),
                connector: connector.name.clone(),
                program: c.program.clone(),
                case_id: c.case_id.clone(),
                milestone: c.milestone.as_str().to_string(),
                seq,
                lane: d.candidate.fp.lane,
                body,
                key_hash: d.candidate.fp.key,
                subscribers,
            });
            let row = StateRow {
                program: c.program.clone(),
                case_id: c.case_id.clone(),
                milestone: c.milestone.as_str().to_string(),
                occurrence: c.occurrence.clone(),
                key_hash: d.candidate.fp.key,
                content_hash: d.candidate.fp.content,
                body: content_json,
            };
            // One upsert per key per statement: the last write in file order wins.
            match state.get(&d.candidate.fp.key).copied().filter(|i| {
                state_rows[*i].case_id == row.case_id
                    && state_rows[*i].milestone == row.milestone
                    && state_rows[*i].occurrence == row.occurrence
                    && state_rows[*i].program == row.program
            }) {
                Some(i) => state_rows[i] = row,
                None => {
                    state.insert(d.candidate.fp.key, state_rows.len());
                    state_rows.push(row);
                }
            }
        }
        let mut bumped = None;
        if !state_rows.is_empty() {
            tx.upsert_state(&state_rows, file_id).await?;
            bumped = Some(tx.bump_program(program).await?);
        }
        // Journey timers arm and settle with the state that moves them; a
        // late awaited milestone's `journey.resumed` joins this chunk's outbox.
        let journey_rows =
            crate::journey::plan::on_chunk(&mut tx, &self.config, connector, &deltas, self.seed).await?;
        if self.seed {
            outbox_rows.clear();
        }
        outbox_rows.extend(journey_rows);
        tx.insert_outbox(&outbox_rows, file_id).await?;
        if !chunk.rejects.is_empty() {
            tx.insert_rejects(file_id, &chunk.rejects).await?;
        }
        let warnings = match &chunk.finish {
            Some(Finish::Done(w)) if !w.is_empty() => Some(w.join(WARNING_SEPARATOR)),
            _ => None,
        };
        let finish = match &chunk.finish {
            None => None,
            Some(Finish::Done(_)) => Some((FileStatus::Done, warnings.as_deref())),
            Some(Finish::Failed(r)) => Some((FileStatus::Failed, Some(r.as_str()))),
        };
        tx.file_progress(file_id, chunk.records_done, &counts, finish)
            .await?;
        tx.commit().await?;
        // In sync and we wrote: the index has our writes, so it stays in sync.
        // Out of sync: leave the old number, so every later chunk re-checks.
        if let (true, Some(Generation::Shared(g))) = (in_sync, bumped) {
            generations.insert(program.to_string(), g);
        }
        if !outbox_rows.is_empty() {
            for w in &self.wakers {
                w.notify_one();
            }
        }
        if !deltas.is_empty() && self.config.journeys.program(program).is_some() {
            // A timer armed here may be due before the clock's next wake-up.
            self.timers.notify_one();
        }
        Ok(())
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

enum ProduceError {
    Io(String),
    /// The committer went away (shutdown or a failed commit).
    Stopped,
}

/// The producer: runs on a blocking thread, streams the file and sends chunks.
// Each input is distinct and used directly; a struct would only rename them.
#[allow(clippy::too_many_arguments)]
fn produce(
    config: &Config,
    connector: &Connector,
    file: &ReadyFile,
    resume_from: u64,
    mut index: StateIndex,
    coverage: Option<&crate::map::Coverage>,
    keep_skipped: bool,
    committer_idle: Option<&AtomicBool>,
    emit: &mut dyn FnMut(Chunk) -> Result<(), ProduceError>,
) -> Result<StateIndex, ProduceError> {
    let fail =
        |emit: &mut dyn FnMut(Chunk) -> Result<(), ProduceError>, records_done: u64, reason: String| {
            emit(Chunk {
                records_done,
                counts: Counts::default(),
                candidates: Vec::new(),
                skipped: Vec::new(),
                rejects: Vec::new(),
                finish: Some(Finish::Failed(reason)),
            })
        };
    let mut reader = match Records::open(connector, &file.path) {
        Ok(r) => r,
        Err(ParseError::Io { source, .. }) => return Err(ProduceError::Io(source.to_string())),
        Err(e) => {
            fail(emit, resume_from, e.to_string())?;
            return Ok(index);
        }
    };
    // One bound mapping per part (an Excel sheet rule; otherwise part 0),
    // rebound at each header.
    let mut bounds: Vec<Option<Bound>> = Vec::new();
    let chunk_rows = config.chunk_rows as u64;
    let mut ordinal: u64 = 0;
    let mut chunk = new_chunk(resume_from);
    let mut total_rejects = 0u64;
    // Fingerprints of one record, reused: most records produce one or two.
    let mut fps: Vec<(usize, crate::map::Fingerprint)> = Vec::with_capacity(4);
    let mut hasher = HashSink::new(config.content_seed);
    loop {
        let (locator, part, rejected) = match reader.next() {
            Ok(Some(Next::Header { part, label, header })) => {
                let mapping = part_mapping(connector, part);
                let binding = match header {
                    None => Binding::identity(mapping.columns.len()),
                    Some(h) => match mapping.bind(&h) {
                        Ok(b) => b,
                        Err(e) => {
                            emit(refused(
                                chunk,
                                ordinal.max(resume_from),
                                format!("{}: {label}header: {e}", file.name),
                            ))?;
                            return Ok(index);
                        }
                    },
                };
                if !binding.extras.is_empty() {
                    let extras = format!("`{}`", binding.extras.join("`, `"));
                    match connector.extra_columns {
                        ExtraColumns::Ignore => {}
                        ExtraColumns::Warn => {
                            tracing::warn!(connector = %connector.name, file = %file.name, columns = %extras, "unexpected columns in the header (ignored)")
                        }
                        ExtraColumns::Reject => {
                            emit(refused(
                                chunk,
                                ordinal.max(resume_from),
                                format!(
                                    "{}: {label}header: unexpected column(s) {extras} (header policy: extra_columns = \"reject\")",
                                    file.name
                                ),
                            ))?;
                            return Ok(index);
                        }
                    }
                }
                if bounds.len() <= part {
                    bounds.resize_with(part + 1, || None);
                }
                bounds[part] = Some(Bound {
                    mapping,
                    binding,
                    program: &connector.program,
                    time: connector.time,
                    pseudonymizer: &config.pseudonymizer,
                    content_seed: config.content_seed,
                    coverage,
                });
                continue;
            }
            Ok(Some(Next::Record { locator, part })) => (locator, part, None),
            Ok(Some(Next::Rejected { locator, reason })) => (locator, 0, Some(reason)),
            Ok(None) => break,
            Err(ParseError::Io { source, .. }) => return Err(ProduceError::Io(source.to_string())),
            Err(e) => {
                emit(refused(chunk, ordinal.max(resume_from), e.to_string()))?;
                return Ok(index);
            }
        };
        let this = ordinal;
        ordinal += 1;
        if this < resume_from {
            continue;
        }
        if let Some(c) = coverage {
            c.next_record();
        }
        if rejected.is_none() && reader.is_blank() {
            // A blank line is not a record: count it as filtered so totals reconcile.
            chunk.counts.read += 1;
            chunk.counts.filtered += 1;
            chunk.records_done = ordinal;
            continue;
        }
        let Some(bound) = bounds.get(part).and_then(Option::as_ref) else {
            // Readers send a part's header before its records; a reader that
            // did not is a bug, reported on the file rather than a panic.
            emit(refused(
                chunk,
                this,
                format!("{}: {locator}: a record came before its header", file.name),
            ))?;
            return Ok(index);
        };
        let mapping = bound.mapping;
        chunk.counts.read += 1;
        let fields = reader.fields();
        fps.clear();
        let mut stop: Option<Stop> = rejected.map(|reason| Stop::Reject { column: None, reason });
        let rules: &[crate::map::Rule] = if stop.is_some() { &[] } else { &mapping.rules };
        for (i, rule) in rules.iter().enumerate() {
            let applies = match bound.applies(rule, fields) {
                Ok(a) => a,
                Err(s) => {
                    stop = Some(s);
                    break;
                }
            };
            if !applies {
                continue;
            }
            hasher.reset();
            if let Err(s) = bound.walk(rule, fields, &mut hasher) {
                stop = Some(s);
                break;
            }
            fps.push((i, hasher.finish()));
        }
        match stop {
            Some(Stop::Reject { column, reason }) => {
                chunk.counts.rejected += 1;
                total_rejects += 1;
                let reject = RejectRow {
                    locator: locator.to_string(),
                    column,
                    reason,
                };
                tracing::debug!(file = %file.name, locator = %reject.locator, column = reject.column.as_deref(), reason = %reject.reason, "record rejected");
                let stop_file = match connector.on_row_error {
                    OnRowError::FailFile => Some(format!(
                        "{}: {}: {}{}",
                        file.name,
                        reject.locator,
                        reject
                            .column
                            .as_deref()
                            .map(|c| format!("column `{c}`: "))
                            .unwrap_or_default(),
                        reject.reason
                    )),
                    OnRowError::Quarantine => connector.max_rejects.filter(|m| total_rejects > *m).map(|m| {
                        format!(
                            "{}: more than {m} records rejected; last at {}",
                            file.name, reject.locator
                        )
                    }),
                };
                chunk.rejects.push(reject);
                if let Some(reason) = stop_file {
                    emit(refused(chunk, ordinal, reason))?;
                    return Ok(index);
                }
            }
            Some(Stop::Skip { .. }) => chunk.counts.filtered += 1,
            None if fps.is_empty() => chunk.counts.filtered += 1,
            None => {
                let mut any = false;
                for (rule_idx, fp) in &fps {
                    if index.check(fp) == Verdict::Unchanged {
                        if keep_skipped {
                            chunk.skipped.push((fp.key, fp.content));
                        }
                        continue;
                    }
                    any = true;
                    let mut sink = ContentSink::new();
                    bound
                        .walk(&mapping.rules[*rule_idx], fields, &mut sink)
                        .expect("the same rule on the same record succeeded a moment ago");
                    index.record(fp);
                    chunk.candidates.push(Candidate {
                        record: this,
                        locator: locator.to_string(),
                        fp: *fp,
                        content: sink.content,
                    });
                }
                if !any {
                    chunk.counts.unchanged += 1;
                }
            }
        }
        chunk.records_done = ordinal;
        // A chunk closes on rows (bounding a checkpoint's distance), on
        // candidates (bounding memory: each is a materialized milestone), or
        // as soon as it holds a delta while the committer has nothing to do:
        // the first delta of a file is committed (and its webhook sent) at
        // once rather than after 20k rows, and while the committer is busy
        // chunks grow by themselves (group commit), so a first load still
        // commits in big chunks.
        let hand_over = !chunk.candidates.is_empty()
            && committer_idle.is_some_and(|idle| idle.swap(false, Ordering::AcqRel));
        if hand_over || chunk.counts.read >= chunk_rows || chunk.candidates.len() >= MAX_CHUNK_CANDIDATES {
            emit(std::mem::replace(&mut chunk, new_chunk(ordinal)))?;
        }
    }
    chunk.records_done = ordinal.max(resume_from);
    chunk.finish = Some(Finish::Done(reader.warnings()));
    emit(chunk)?;
    Ok(index)
}

/// The mapping of `part`: an Excel sheet rule's, else the connector's.
fn part_mapping(connector: &Connector, part: usize) -> &Mapping {
    match &connector.format {
        Format::Excel(rules) => rules.get(part).map_or(&connector.mapping, |(_, m)| m),
        _ => &connector.mapping,
    }
}

/// What a record source yields next.
enum Next {
    /// The records that follow belong to `part`; bind its mapping to this
    /// header (`None`: columns are addressed by path, in mapping order).
    Header {
        part: usize,
        /// Prefix for header errors, e.g. "sheet `PA`: ".
        label: String,
        header: Option<Vec<String>>,
    },
    Record {
        locator: Locator,
        part: usize,
    },
    /// A unit the parser refused as a whole (a broken X12 envelope).
    Rejected {
        locator: Locator,
        reason: String,
    },
}

/// The record source of one file: a closed set of formats, so an enum.
enum Records {
    Csv {
        reader: CsvReader,
        rec: csv::ByteRecord,
        header: Option<Vec<String>>,
    },
    Excel(ExcelReader),
    X12 {
        reader: X12Reader,
        row: Row,
        header_sent: bool,
    },
    Xml {
        reader: XmlReader,
        row: Row,
        header_sent: bool,
    },
}

fn paths_of(mapping: &Mapping) -> (Vec<crate::parse::x12::X12Path>, Vec<crate::parse::xml::XmlPath>) {
    let mut x12 = Vec::new();
    let mut xml = Vec::new();
    for c in &mapping.columns {
        match &c.path {
            Some(FieldPath::X12(p)) => x12.push(p.clone()),
            Some(FieldPath::Xml(p)) => xml.push(p.clone()),
            None => {}
        }
    }
    (x12, xml)
}

impl Records {
    fn open(connector: &Connector, path: &std::path::Path) -> Result<Records, ParseError> {
        Ok(match &connector.format {
            Format::Csv(fmt) => {
                let reader = CsvReader::open(path, fmt)?;
                let header = Some(reader.header().to_vec());
                Records::Csv {
                    reader,
                    rec: csv::ByteRecord::new(),
                    header,
                }
            }
            Format::Excel(rules) => Records::Excel(ExcelReader::open(
                path,
                rules.iter().map(|(r, _)| r.clone()).collect(),
            )?),
            Format::X12(fmt) => Records::X12 {
                reader: X12Reader::open(path, fmt, paths_of(&connector.mapping).0)?,
                row: Row::new(),
                header_sent: false,
            },
            Format::Xml(fmt) => Records::Xml {
                reader: XmlReader::open(path, fmt, paths_of(&connector.mapping).1)?,
                row: Row::new(),
                header_sent: false,
            },
        })
    }

    fn next(&mut self) -> Result<Option<Next>, ParseError> {
        match self {
            Records::Csv { reader, rec, header } => {
                if let Some(h) = header.take() {
                    return Ok(Some(Next::Header {
                        part: 0,
                        label: String::new(),
                        header: Some(h),
                    }));
                }
                Ok(reader
                    .next_record(rec)?
                    .map(|locator| match reader.unbalanced_quote(rec) {
                        Some(reason) => Next::Rejected { locator, reason },
                        None => Next::Record { locator, part: 0 },
                    }))
            }
            Records::Excel(r) => Ok(r.read_next()?.map(|n| match n {
                ExcelNext::Header { part, sheet, header } => Next::Header {
                    part,
                    label: format!("sheet `{sheet}`: "),
                    header: Some(header),
                },
                ExcelNext::Record { part, locator } => Next::Record { locator, part },
            })),
            Records::X12 {
                reader,
                row,
                header_sent,
            } => {
                if !*header_sent {
                    *header_sent = true;
                    return Ok(Some(Next::Header {
                        part: 0,
                        label: String::new(),
                        header: None,
                    }));
                }
                Ok(reader.next(row)?.map(|n| match n {
                    X12Next::Record(locator) => Next::Record { locator, part: 0 },
                    X12Next::Rejected { locator, reason } => Next::Rejected { locator, reason },
                }))
            }
            Records::Xml {
                reader,
                row,
                header_sent,
            } => {
                if !*header_sent {
                    *header_sent = true;
                    return Ok(Some(Next::Header {
                        part: 0,
                        label: String::new(),
                        header: None,
                    }));
                }
                Ok(reader.next(row)?.map(|locator| Next::Record { locator, part: 0 }))
            }
        }
    }

    /// What the parser warned about (read to the end): hidden sheets
    /// skipped, a document with no record element under `no_records = "warn"`.
    fn warnings(&self) -> Vec<String> {
        match self {
            Records::Excel(r) => r.warnings().to_vec(),
            Records::Xml { reader, .. } => reader.warnings().to_vec(),
            // Envelope versions that disagree, from pass 1.
            Records::X12 { reader, .. } => reader.verdicts().warnings.clone(),
            Records::Csv { .. } => Vec::new(),
        }
    }

    /// The current record's fields.
    fn fields(&self) -> Fields<'_> {
        match self {
            Records::Csv { rec, .. } => Fields::csv(rec),
            Records::Excel(r) => Fields::Row(r.row()),
            Records::X12 { row, .. } | Records::Xml { row, .. } => Fields::Row(row),
        }
    }

    /// Whether the current record is blank (a blank CSV line). Blank sheet
    /// rows never reach here; X12 and XML records are never blank.
    fn is_blank(&self) -> bool {
        match self {
            Records::Csv { rec, .. } => rec.iter().all(|f| f.iter().all(u8::is_ascii_whitespace)),
            _ => false,
        }
    }
}

/// The last chunk of a file refused as a whole. Nothing of the chunk the
/// refusal interrupts is committed or sent: its candidates are dropped, and
/// the records that produced them count as rejected (with the file), so the
/// counts still reconcile. Chunks committed before it stay committed: a file
/// longer than `chunk_rows` that fails late has already delivered its first
/// chunks, and the dry run shows exactly those.
fn refused(mut chunk: Chunk, records_done: u64, reason: String) -> Chunk {
    let dropped: std::collections::BTreeSet<u64> = chunk.candidates.iter().map(|c| c.record).collect();
    chunk.counts.rejected += dropped.len() as u64;
    chunk.candidates.clear();
    chunk.records_done = records_done;
    chunk.finish = Some(Finish::Failed(reason));
    chunk
}

fn new_chunk(records_done: u64) -> Chunk {
    Chunk {
        records_done,
        counts: Counts::default(),
        candidates: Vec::new(),
        skipped: Vec::new(),
        rejects: Vec::new(),
        finish: None,
    }
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
    match produce(
        config,
        connector,
        &file,
        0,
        StateIndex::new(None, 0),
        coverage,
        false,
        None,
        &mut emit,
    ) {
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
