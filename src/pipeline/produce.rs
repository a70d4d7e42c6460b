//! The producer half of one file: the **parse → map → diff** steps, on a
//! blocking thread, handing [`Chunk`]s to the committer.
//!
//! Per record the steps are:
//!
//! 1. **parse**: the next header or record from [`Records`], with its locator;
//! 2. **map** ([`map_record`]): every rule of the bound mapping that applies
//!    is walked into a fingerprint (key and content hash), allocating nothing;
//! 3. **diff** ([`Filling::diff`]): the in-memory [`StateIndex`] drops the
//!    milestones it knows unchanged, and only the rest are materialized as
//!    [`Candidate`]s (the only per-record allocation);
//!
//! and a chunk is handed over when it is due ([`Filling::hand_over_if_due`]).
//! A bad record is data: [`Filling::quarantine`] records it with its
//! position and the file goes on, unless the connector's policy refuses it.

use std::sync::atomic::{AtomicBool, Ordering};

use super::records::{part_mapping, Next, Records};
use crate::config::connector::{ExtraColumns, OnRowError};
use crate::diff::{Candidate, StateIndex, Verdict};
use crate::map::expr::Stop;
use crate::map::{Binding, Bound, ContentSink, Coverage, Fingerprint, HashSink};
use crate::parse::{Fields, Locator, ParseError};
use crate::setup::{Config, Connector};
use crate::source::ReadyFile;
use crate::store::{Counts, RejectRow};

/// Candidates per chunk at most: about 1.5 KB each, so a few MB per chunk,
/// and one fsync per few thousand deltas is noise.
const MAX_CHUNK_CANDIDATES: usize = 4096;

pub(super) enum Finish {
    /// Done, with the parser's warnings (hidden sheets skipped, …) joined:
    /// kept in the ledger's error column, which `status` shows for a done
    /// file as its warning.
    Done(Vec<String>),
    Failed(String),
}

/// What the producer hands the committer.
pub(super) struct Chunk {
    /// Checkpoint after this chunk: records fully handled from the file's start.
    pub records_done: u64,
    /// read, rejected, filtered; plus records whose milestones the index
    /// already judged unchanged (in `unchanged`).
    pub counts: Counts,
    pub candidates: Vec<Candidate>,
    /// (key, content) of milestones the index judged unchanged; collected only
    /// on a shared store, where the commit may have to re-check them.
    pub skipped: Vec<(u64, u64)>,
    pub rejects: Vec<RejectRow>,
    pub finish: Option<Finish>,
}

impl Chunk {
    fn new(records_done: u64) -> Chunk {
        Chunk {
            records_done,
            counts: Counts::default(),
            candidates: Vec::new(),
            skipped: Vec::new(),
            rejects: Vec::new(),
            finish: None,
        }
    }

    /// The last chunk of a file refused as a whole. Nothing of the chunk the
    /// refusal interrupts is committed or sent: its candidates are dropped,
    /// and the records that produced them count as rejected (with the file),
    /// so the counts still reconcile. Chunks committed before it stay
    /// committed: a file longer than `chunk_rows` that fails late has already
    /// delivered its first chunks, and the dry run shows exactly those.
    fn refused(mut self, records_done: u64, reason: String) -> Chunk {
        let dropped: std::collections::BTreeSet<u64> = self.candidates.iter().map(|c| c.record).collect();
        self.counts.rejected += dropped.len() as u64;
        self.candidates.clear();
        self.records_done = records_done;
        self.finish = Some(Finish::Failed(reason));
        self
    }
}

pub(super) enum ProduceError {
    Io(String),
    /// The committer went away (shutdown or a failed commit).
    Stopped,
}

/// Where chunks go: the committer's channel, or a dry run's collector.
pub(super) type Emit<'e> = &'e mut dyn FnMut(Chunk) -> Result<(), ProduceError>;

/// One file for the producer.
pub(super) struct Job<'a> {
    pub config: &'a Config,
    pub connector: &'a Connector,
    pub file: &'a ReadyFile,
    /// The checkpoint: records before it were committed by an earlier run.
    pub resume_from: u64,
    /// Value-map usage, collected by dry runs only.
    pub coverage: Option<&'a Coverage>,
    /// Keep the index's "unchanged" verdicts for the commit to re-check (a
    /// shared store, where another instance may have written the state).
    pub keep_skipped: bool,
    /// Set while the committer waits for work (none in a dry run).
    pub committer_idle: Option<&'a AtomicBool>,
}

/// The chunk being filled, and the file's position and reject tally.
struct Filling<'a> {
    job: &'a Job<'a>,
    index: StateIndex,
    chunk: Chunk,
    /// Records seen from the file's start (the next record's ordinal).
    ordinal: u64,
    total_rejects: u64,
}

/// The producer: streams the file through parse → map → diff and emits
/// chunks; returns the index, which now also knows this file's milestones.
pub(super) fn produce(job: &Job<'_>, index: StateIndex, emit: Emit<'_>) -> Result<StateIndex, ProduceError> {
    let (config, connector, file) = (job.config, job.connector, job.file);
    let mut filling = Filling {
        job,
        index,
        chunk: Chunk::new(job.resume_from),
        ordinal: 0,
        total_rejects: 0,
    };
    let mut reader = match Records::open(connector, &file.path) {
        Ok(r) => r,
        Err(ParseError::Io { source, .. }) => return Err(ProduceError::Io(source.to_string())),
        Err(e) => return filling.refuse(job.resume_from, e.to_string(), emit),
    };
    // One bound mapping per part (an Excel sheet rule; otherwise part 0),
    // rebound at each header.
    let mut bounds: Vec<Option<Bound>> = Vec::new();
    // Fingerprints of one record, reused: most records produce one or two.
    let mut fps: Vec<(usize, Fingerprint)> = Vec::with_capacity(4);
    let mut hasher = HashSink::new(config.content_seed);
    loop {
        // Parse step.
        let at = filling.ordinal.max(job.resume_from);
        let (locator, part, rejected) = match reader.next() {
            Ok(Some(Next::Header { part, label, header })) => {
                match bind(job, part, &label, header) {
                    Ok(bound) => {
                        if bounds.len() <= part {
                            bounds.resize_with(part + 1, || None);
                        }
                        bounds[part] = Some(bound);
                    }
                    Err(reason) => return filling.refuse(at, reason, emit),
                }
                continue;
            }
            Ok(Some(Next::Record { locator, part })) => (locator, part, None),
            Ok(Some(Next::Rejected { locator, reason })) => (locator, 0, Some(reason)),
            Ok(None) => break,
            Err(ParseError::Io { source, .. }) => return Err(ProduceError::Io(source.to_string())),
            Err(e) => return filling.refuse(at, e.to_string(), emit),
        };
        let this = filling.ordinal;
        filling.ordinal += 1;
        if this < job.resume_from {
            continue;
        }
        if let Some(c) = job.coverage {
            c.next_record();
        }
        if rejected.is_none() && reader.is_blank() {
            // A blank line is not a record: count it as filtered so totals reconcile.
            filling.chunk.counts.read += 1;
            filling.chunk.counts.filtered += 1;
            filling.chunk.records_done = filling.ordinal;
            continue;
        }
        let Some(bound) = bounds.get(part).and_then(Option::as_ref) else {
            // Readers send a part's header before its records; a reader that
            // did not is a bug, reported on the file rather than a panic.
            let reason = format!("{}: {locator}: a record came before its header", file.name);
            return filling.refuse(this, reason, emit);
        };
        filling.chunk.counts.read += 1;
        let fields = reader.fields();
        // Map step.
        let stop = map_record(bound, fields, rejected, &mut fps, &mut hasher);
        match stop {
            Some(Stop::Reject { column, reason }) => {
                if let Some(why) = filling.quarantine(&locator, column, reason) {
                    let records_done = filling.ordinal;
                    return filling.refuse(records_done, why, emit);
                }
            }
            Some(Stop::Skip { .. }) => filling.chunk.counts.filtered += 1,
            None if fps.is_empty() => filling.chunk.counts.filtered += 1,
            // Diff step.
            None => filling.diff(this, &locator, bound, fields, &fps),
        }
        filling.chunk.records_done = filling.ordinal;
        filling.hand_over_if_due(emit)?;
    }
    filling.chunk.records_done = filling.ordinal.max(job.resume_from);
    filling.chunk.finish = Some(Finish::Done(reader.warnings()));
    emit(filling.chunk)?;
    Ok(filling.index)
}

/// The map step for a header: binds part `part`'s mapping to it (`None`:
/// columns are addressed by path), applying the connector's header policy.
/// An error is the reason the whole file is refused.
fn bind<'a>(
    job: &Job<'a>,
    part: usize,
    label: &str,
    header: Option<Vec<String>>,
) -> Result<Bound<'a>, String> {
    let (config, connector, file) = (job.config, job.connector, job.file);
    let mapping = part_mapping(connector, part);
    let binding = match header {
        None => Binding::identity(mapping.columns.len()),
        Some(h) => mapping
            .bind(&h)
            .map_err(|e| format!("{}: {label}header: {e}", file.name))?,
    };
    if !binding.extras.is_empty() {
        let extras = format!("`{}`", binding.extras.join("`, `"));
        match connector.extra_columns {
            ExtraColumns::Ignore => {}
            ExtraColumns::Warn => {
                tracing::warn!(connector = %connector.name, file = %file.name, columns = %extras, "unexpected columns in the header (ignored)")
            }
            ExtraColumns::Reject => {
                return Err(format!(
                    "{}: {label}header: unexpected column(s) {extras} (header policy: extra_columns = \"reject\")",
                    file.name
                ))
            }
        }
    }
    Ok(Bound {
        mapping,
        binding,
        program: &connector.program,
        time: connector.time,
        pseudonymizer: &config.pseudonymizer,
        content_seed: config.content_seed,
        coverage: job.coverage,
    })
}

/// The map step for a record: walks every rule that applies into `fps`
/// (rule index, fingerprint). `Some` is why the record yields nothing: a
/// reject (the parser's, or a rule's) or a filter.
fn map_record(
    bound: &Bound<'_>,
    fields: Fields<'_>,
    rejected: Option<String>,
    fps: &mut Vec<(usize, Fingerprint)>,
    hasher: &mut HashSink,
) -> Option<Stop> {
    fps.clear();
    if let Some(reason) = rejected {
        return Some(Stop::Reject { column: None, reason });
    }
    for (i, rule) in bound.mapping.rules.iter().enumerate() {
        match bound.applies(rule, fields) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(stop) => return Some(stop),
        }
        hasher.reset();
        if let Err(stop) = bound.walk(rule, fields, hasher) {
            return Some(stop);
        }
        fps.push((i, hasher.finish()));
    }
    None
}

impl Filling<'_> {
    /// Records a rejected record with its position. `Some` is the reason the
    /// connector's policy now refuses the whole file.
    fn quarantine(&mut self, locator: &Locator, column: Option<String>, reason: String) -> Option<String> {
        let (connector, file) = (self.job.connector, self.job.file);
        self.chunk.counts.rejected += 1;
        self.total_rejects += 1;
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
            OnRowError::Quarantine => connector
                .max_rejects
                .filter(|m| self.total_rejects > *m)
                .map(|m| {
                    format!(
                        "{}: more than {m} records rejected; last at {}",
                        file.name, reject.locator
                    )
                }),
        };
        self.chunk.rejects.push(reject);
        stop_file
    }

    /// The diff step: milestones the index knows unchanged are dropped (and
    /// kept for a re-check on a shared store); the others are materialized.
    fn diff(
        &mut self,
        record: u64,
        locator: &Locator,
        bound: &Bound<'_>,
        fields: Fields<'_>,
        fps: &[(usize, Fingerprint)],
    ) {
        let mut any = false;
        for (rule_idx, fp) in fps {
            if self.index.check(fp) == Verdict::Unchanged {
                if self.job.keep_skipped {
                    self.chunk.skipped.push((fp.key, fp.content));
                }
                continue;
            }
            any = true;
            let mut sink = ContentSink::new();
            bound
                .walk(&bound.mapping.rules[*rule_idx], fields, &mut sink)
                .expect("the same rule on the same record succeeded a moment ago");
            self.index.record(fp);
            self.chunk.candidates.push(Candidate {
                record,
                locator: locator.to_string(),
                fp: *fp,
                content: sink.content,
            });
        }
        if !any {
            self.chunk.counts.unchanged += 1;
        }
    }

    /// Hands the chunk over when it is due. A chunk closes on rows (bounding
    /// a checkpoint's distance), on candidates (bounding memory: each is a
    /// materialized milestone), or as soon as it holds a delta while the
    /// committer has nothing to do: the first delta of a file is committed
    /// (and its webhook sent) at once rather than after 20k rows, and while
    /// the committer is busy chunks grow by themselves (group commit), so a
    /// first load still commits in big chunks.
    fn hand_over_if_due(&mut self, emit: Emit<'_>) -> Result<(), ProduceError> {
        let chunk = &self.chunk;
        let hand_over = !chunk.candidates.is_empty()
            && self
                .job
                .committer_idle
                .is_some_and(|idle| idle.swap(false, Ordering::AcqRel));
        if hand_over
            || chunk.counts.read >= self.job.config.chunk_rows as u64
            || chunk.candidates.len() >= MAX_CHUNK_CANDIDATES
        {
            emit(std::mem::replace(&mut self.chunk, Chunk::new(self.ordinal)))?;
        }
        Ok(())
    }

    /// Ends the file as refused: the chunk in hand becomes its last, with
    /// `records_done` as its checkpoint.
    fn refuse(self, records_done: u64, reason: String, emit: Emit<'_>) -> Result<StateIndex, ProduceError> {
        emit(self.chunk.refused(records_done, reason))?;
        Ok(self.index)
    }
}
